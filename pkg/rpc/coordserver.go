package rpc

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/worker"
)

// DefaultWaitCap bounds one WaitStep call on the server; the caller asks
// again (CoordClient does so by itself).
const DefaultWaitCap = 30 * time.Second

// CoordServer serves logitpair.coordinator.v1.Coordinator: membership from
// a coordinator.Membership, the global step from a coordinator.Coordinator.
type CoordServer struct {
	coordinatorv1.UnimplementedCoordinatorServer

	coord    *coordinator.Late
	members  *coordinator.Membership
	waitCap  time.Duration
	onReport func(step int64, slot int, terms objective.Terms, t worker.Timing)
}

// CoordServerOption configures a CoordServer.
type CoordServerOption func(*CoordServer)

// WithWaitCap bounds each WaitStep call (default DefaultWaitCap): at the
// cap the server answers with the current state and the caller asks again.
func WithWaitCap(d time.Duration) CoordServerOption {
	return func(s *CoordServer) {
		if d > 0 {
			s.waitCap = d
		}
	}
}

// WithOnReport sets a hook that sees every report the coordinator
// processed, accepted into the step or not (its step, slot, objective terms
// and timings), for metrics. It runs inside the ReportStep call and must not
// block.
func WithOnReport(fn func(step int64, slot int, terms objective.Terms, t worker.Timing)) CoordServerOption {
	return func(s *CoordServer) { s.onReport = fn }
}

// NewCoordServer returns a server over the coordinator c will hold and the
// membership table m. c may be unset (or nil) while the coordinator cannot
// be built yet (it needs the shards, which join first): Join,
// GetAssignment and Leave work without it, ReportStep, WaitStep and Status
// answer UNAVAILABLE until c is set.
func NewCoordServer(c *coordinator.Late, m *coordinator.Membership, opts ...CoordServerOption) *CoordServer {
	s := &CoordServer{coord: c, members: m, waitCap: DefaultWaitCap}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Register registers s on r (a *grpc.Server).
func (s *CoordServer) Register(r grpc.ServiceRegistrar) {
	coordinatorv1.RegisterCoordinatorServer(r, s)
}

func (s *CoordServer) coordinator() (*coordinator.Coordinator, error) {
	c := s.coord.Get()
	if c == nil {
		return nil, status.Error(codes.Unavailable, "the coordinator is not running yet (waiting for the shards)")
	}
	return c, nil
}

// stepAndGeneration is the coordinator's step and generation, or (0, 0)
// before it runs.
func (s *CoordServer) stepAndGeneration() (int64, int64) {
	if c := s.coord.Get(); c != nil {
		st := c.Status()
		return st.Step, st.Generation
	}
	return 0, 0
}

// Join admits a worker (a slot: its preferred one if free, else the lowest
// free one; RESOURCE_EXHAUSTED when all are held) or a shard (slot =
// preferred_slot = its index; address required; a second join of the same
// index is a restart and triggers coordinator.MembershipConfig's
// OnShardRestart).
func (s *CoordServer) Join(_ context.Context, req *coordinatorv1.JoinRequest) (*coordinatorv1.JoinResponse, error) {
	var slot int
	switch req.GetRole() {
	case RoleWorker:
		var err error
		if slot, err = s.members.JoinWorker(int(req.GetPreferredSlot()), req.GetNodeName()); err != nil {
			return nil, membershipStatus(err, codes.InvalidArgument)
		}
		if c := s.coord.Get(); c != nil {
			c.SetLive(slot, true)
		}
	case RoleParamServer:
		slot = int(req.GetPreferredSlot())
		if _, err := s.members.JoinShard(slot, req.GetAddress(), req.GetNodeName()); err != nil {
			if errors.Is(err, coordinator.ErrBadIndex) {
				return nil, status.Errorf(codes.InvalidArgument, "%v (set preferred_slot to the shard's index)", err)
			}
			return nil, membershipStatus(err, codes.InvalidArgument)
		}
	default:
		return nil, badRole(req.GetRole())
	}
	a, err := s.assignment(req.GetRole(), slot)
	if err != nil {
		return nil, err
	}
	return &coordinatorv1.JoinResponse{Slot: int32(slot), Assignment: a}, nil
}

// GetAssignment returns a member's current assignment (NOT_FOUND for a
// worker slot that is not held or a shard that does not exist).
func (s *CoordServer) GetAssignment(_ context.Context, req *coordinatorv1.AssignmentRequest) (*coordinatorv1.Assignment, error) {
	return s.assignment(req.GetRole(), int(req.GetSlot()))
}

// assignment is role's slot's assignment, starting at the coordinator's
// step, its generation added to the shard map's (so that it grows on a
// rollback too).
func (s *CoordServer) assignment(role string, slot int) (*coordinatorv1.Assignment, error) {
	step, gen := s.stepAndGeneration()
	var a coordinator.Assignment
	var err error
	switch role {
	case RoleWorker:
		a, err = s.members.WorkerAssignment(slot, step, gen)
	case RoleParamServer:
		a, err = s.members.ShardAssignment(slot, step, gen)
	default:
		return nil, badRole(role)
	}
	if err != nil {
		return nil, membershipStatus(err, codes.NotFound)
	}
	return assignmentMsg(a), nil
}

// ReportStep is done(step, slot): coordinator.Report for a held worker slot
// (NOT_FOUND otherwise).
func (s *CoordServer) ReportStep(_ context.Context, req *coordinatorv1.StepReport) (*coordinatorv1.StepAck, error) {
	c, err := s.coordinator()
	if err != nil {
		return nil, err
	}
	slot := int(req.GetSlot())
	if err := s.members.CheckHeld(slot); err != nil {
		return nil, membershipStatus(err, codes.NotFound)
	}
	accepted, cur, gen, err := c.Report(req.GetStep(), slot)
	if errors.Is(err, coordinator.ErrRecovering) {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if s.onReport != nil {
		s.onReport(req.GetStep(), slot, objective.Terms{
			Loss: req.GetLoss(), CleanCE: req.GetCleanCe(), AdvCE: req.GetAdvCe(), Pair: req.GetPair(),
			CleanAcc: req.GetCleanAcc(), AdvAcc: req.GetAdvAcc(), LogitNorm: req.GetLogitNorm(),
		}, worker.Timing{Attack: seconds(req.GetAttackSeconds()), Compute: seconds(req.GetObjectiveSeconds()), Comm: seconds(req.GetCommSeconds())})
	}
	s.members.Seen(slot, req.GetStep())
	return &coordinatorv1.StepAck{Step: req.GetStep(), Accepted: accepted, CurrentStep: cur, Generation: gen, Done: c.Status().Done}, nil
}

// WaitStep returns once the global step is at least req.step, the
// coordinator's generation differs from req.generation, or the run is done;
// at the server's cap it returns the current state early. Until the
// coordinator has recovered the global step (coordinator.Ready) it waits,
// and at the cap answers UNAVAILABLE: the step it has is not yet the real
// one.
func (s *CoordServer) WaitStep(ctx context.Context, req *coordinatorv1.WaitStepRequest) (*coordinatorv1.WaitStepResponse, error) {
	c, err := s.coordinator()
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, s.waitCap)
	defer cancel()
	select {
	case <-c.Ready():
	case <-wctx.Done():
		if ctx.Err() != nil {
			return nil, statusErr(ctx.Err())
		}
		return nil, status.Error(codes.Unavailable, coordinator.ErrRecovering.Error())
	}
	st := c.Status()
	for st.Step < req.GetStep() && st.Generation == req.GetGeneration() && !st.Done {
		next, err := c.WaitStep(wctx, st.Step, st.Generation)
		if err != nil {
			if ctx.Err() != nil {
				return nil, statusErr(ctx.Err())
			}
			st = next // the server's cap: an early answer
			break
		}
		if next.Step == st.Step && next.Generation == st.Generation && !next.Done {
			st = next // the coordinator stopped: answer rather than spin
			break
		}
		st = next
	}
	return &coordinatorv1.WaitStepResponse{CurrentStep: st.Step, Paused: st.Paused, Reason: st.Reason, Generation: st.Generation, Done: st.Done}, nil
}

// Leave frees a worker's slot (and marks it dead for the coordinator, so it
// does not wait for the failure detector) or marks a shard as gone.
func (s *CoordServer) Leave(_ context.Context, req *coordinatorv1.LeaveRequest) (*coordinatorv1.LeaveResponse, error) {
	slot := int(req.GetSlot())
	switch req.GetRole() {
	case RoleWorker:
		if !s.members.Release(slot) {
			return nil, status.Errorf(codes.NotFound, "worker slot %d is not held", slot)
		}
		if c := s.coord.Get(); c != nil {
			c.SetLive(slot, false)
		}
	case RoleParamServer:
		if !s.members.LeaveShard(slot) {
			return nil, status.Errorf(codes.NotFound, "shard %d has not joined", slot)
		}
	default:
		return nil, badRole(req.GetRole())
	}
	return &coordinatorv1.LeaveResponse{}, nil
}

// Status describes the cluster: the coordinator's state and the members.
func (s *CoordServer) Status(context.Context, *coordinatorv1.StatusRequest) (*coordinatorv1.ClusterStatus, error) {
	c, err := s.coordinator()
	if err != nil {
		return nil, err
	}
	st := c.Status()
	return &coordinatorv1.ClusterStatus{
		Step: st.Step, LiveWorkers: int32(st.LiveWorkers), Required: int32(st.Required), Paused: st.Paused,
		PauseReason: st.Reason, Members: membersMsg(s.members.Members()), LastCheckpointStep: st.LastCheckpoint,
	}, nil
}

func seconds(s float64) time.Duration {
	if !(s >= 0) || s > 1e9 { // NaN, negative or absurd: no timing
		return 0
	}
	return time.Duration(s * float64(time.Second))
}
