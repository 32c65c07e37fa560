package rpc

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/retry"
	"github.com/logitpair/logitpair/pkg/worker"
)

// CoordClient reaches the coordinator over gRPC. It implements
// worker.Coordinator (Report, WaitStep) and has helpers for the rest of the
// API. Errors are *RemoteError (status.Code works on them).
type CoordClient struct {
	c coordinatorv1.CoordinatorClient
	// target is the connection's target (a *grpc.ClientConn's), for
	// messages; "" when unknown.
	target string
}

var _ worker.Coordinator = (*CoordClient)(nil)

// NewCoordClient returns a client over conn (a *grpc.ClientConn, or
// anything else that carries the calls).
func NewCoordClient(conn grpc.ClientConnInterface) *CoordClient {
	c := &CoordClient{c: coordinatorv1.NewCoordinatorClient(conn)}
	if t, ok := conn.(interface{ Target() string }); ok {
		c.target = t.Target()
	}
	return c
}

// at is " at TARGET" for messages, or "" when the target is unknown.
func (c *CoordClient) at() string {
	if c.target == "" {
		return ""
	}
	return " at " + c.target
}

// Report implements worker.Coordinator: ReportStep with the step's terms
// and timings.
func (c *CoordClient) Report(ctx context.Context, step int64, slot int, terms objective.Terms, t worker.Timing) (bool, worker.StepState, error) {
	ack, err := c.c.ReportStep(ctx, &coordinatorv1.StepReport{
		Step: step, Slot: int32(slot),
		Loss: terms.Loss, CleanCe: terms.CleanCE, AdvCe: terms.AdvCE, Pair: terms.Pair,
		CleanAcc: terms.CleanAcc, AdvAcc: terms.AdvAcc, LogitNorm: terms.LogitNorm,
		AttackSeconds: t.Attack.Seconds(), ObjectiveSeconds: t.Compute.Seconds(), CommSeconds: t.Comm.Seconds(),
	})
	if err != nil {
		return false, worker.StepState{}, fromStatus(err)
	}
	return ack.GetAccepted(), worker.StepState{Step: ack.GetCurrentStep(), Generation: ack.GetGeneration(), Done: ack.GetDone()}, nil
}

// waitRetry is the least pause before asking again after an early answer
// that came back at once (a coordinator that is not running its loop), and
// the first pause after UNAVAILABLE, doubling (with jitter) to waitRetryMax.
const (
	waitRetry    = 100 * time.Millisecond
	waitRetryMax = 2 * time.Second
)

// WaitStep implements worker.Coordinator: it blocks while the global step
// is step in generation gen (−1, −1: the current state as soon as the
// coordinator knows it), asking the server again after each of its early
// (capped) answers and, after a growing pause, after UNAVAILABLE (a
// coordinator that is recovering, not running yet, or unreachable), until
// ctx ends.
func (c *CoordClient) WaitStep(ctx context.Context, step, gen int64) (worker.StepState, error) {
	bo := retry.New(waitRetry, waitRetryMax)
	for {
		t0 := time.Now()
		r, err := c.c.WaitStep(ctx, &coordinatorv1.WaitStepRequest{Step: step + 1, Generation: gen})
		if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
			if retry.Sleep(ctx, bo.Next()) == nil {
				continue
			}
		}
		if err != nil {
			return worker.StepState{}, fromStatus(err)
		}
		bo.Reset()
		st := worker.StepState{Step: r.GetCurrentStep(), Generation: r.GetGeneration(), Done: r.GetDone(), Paused: r.GetPaused(), Reason: r.GetReason()}
		if st.Step != step || st.Generation != gen || st.Done {
			return st, nil
		}
		if time.Since(t0) < waitRetry {
			if err := retry.Sleep(ctx, waitRetry); err != nil {
				return st, err
			}
		}
	}
}

// Join asks for a slot (role RoleWorker or RoleParamServer; preferred −1
// for any worker slot, the shard's index for a shard; address: the shard's
// host:port).
func (c *CoordClient) Join(ctx context.Context, role string, preferred int, address, node string) (*coordinatorv1.JoinResponse, error) {
	r, err := c.c.Join(ctx, &coordinatorv1.JoinRequest{Role: role, PreferredSlot: int32(preferred), Address: address, NodeName: node})
	return r, fromStatus(err)
}

// GetAssignment returns role's slot's current assignment.
func (c *CoordClient) GetAssignment(ctx context.Context, role string, slot int) (*coordinatorv1.Assignment, error) {
	r, err := c.c.GetAssignment(ctx, &coordinatorv1.AssignmentRequest{Role: role, Slot: int32(slot)})
	return r, fromStatus(err)
}

// Leave releases role's slot.
func (c *CoordClient) Leave(ctx context.Context, role string, slot int) error {
	_, err := c.c.Leave(ctx, &coordinatorv1.LeaveRequest{Role: role, Slot: int32(slot)})
	return fromStatus(err)
}

// Status describes the cluster.
func (c *CoordClient) Status(ctx context.Context) (*coordinatorv1.ClusterStatus, error) {
	r, err := c.c.Status(ctx, &coordinatorv1.StatusRequest{})
	return r, fromStatus(err)
}
