package rpc

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/retry"
	"github.com/logitpair/logitpair/pkg/worker"
)

// The client side of membership: joining the coordinator (Join), a worker
// joining again for its own slot when the coordinator forgot it
// (RejoiningCoordinator), and a shard joining a restarted coordinator again
// (KeepShardJoined).

// JoinRequest is what a member asks the coordinator for.
type JoinRequest struct {
	// Role is RoleWorker or RoleParamServer.
	Role string
	// Preferred is a worker's preferred slot (−1: any) or a shard's index.
	Preferred int
	// Address is the host:port a shard serves on ("" for a worker).
	Address string
	// Node is the member's name (logs, status).
	Node string
}

// Join's retry policy: jittered backoff from joinRetry doubling to
// joinRetryMax while the coordinator does not answer, each attempt bounded
// by joinAttempt, a log line at most every joinLogEvery.
const (
	joinRetry    = 300 * time.Millisecond
	joinRetryMax = 5 * time.Second
	joinAttempt  = 10 * time.Second
	joinLogEvery = 10 * time.Second
)

// Join joins the coordinator through cc, retrying (pkg/retry: jittered,
// capped backoff) while it does not answer or refuses for a reason that may
// pass (it may start after this process, or be restarting), until ctx
// ends. A refusal that retrying cannot change — PERMISSION_DENIED,
// UNAUTHENTICATED (the credentials are wrong) or INVALID_ARGUMENT (the
// request is) — ends it at once. The error names the coordinator and the
// last cause.
func Join(ctx context.Context, cc *CoordClient, req JoinRequest, log *zap.Logger) (*coordinatorv1.JoinResponse, error) {
	if log == nil {
		log = zap.NewNop()
	}
	bo, lim := retry.New(joinRetry, joinRetryMax), retry.NewLimiter(joinLogEvery)
	for {
		jctx, cancel := context.WithTimeout(ctx, joinAttempt)
		resp, err := cc.Join(jctx, req.Role, req.Preferred, req.Address, req.Node)
		cancel()
		if err == nil {
			return resp, nil
		}
		if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated || c == codes.InvalidArgument {
			return nil, fmt.Errorf("joining the coordinator%s: %w", cc.at(), err)
		}
		if ok, _ := lim.Allow(); ok {
			log.Info("joining the coordinator", zap.String("coordinator", cc.target), zap.Int("attempts", bo.Failures()+1), zap.Error(err))
		}
		if serr := bo.Wait(ctx); serr != nil {
			return nil, fmt.Errorf("joining the coordinator%s: %w (last error: %v)", cc.at(), serr, err)
		}
	}
}

// RejoiningCoordinator is the coordinator as a worker reaches it
// (worker.Coordinator): when the coordinator no longer holds the worker's
// slot (NOT_FOUND: a restarted coordinator forgot it, or the coordinator
// dropped this worker while it was only slow — a loaded machine misses
// gossip probes), the worker joins again asking for the same slot, then
// retries. Another worker holding the slot by now stops this one
// (worker.ErrFatal). It is safe for concurrent use: concurrent callers that
// find the slot gone re-join once.
type RejoiningCoordinator struct {
	*CoordClient
	slot int
	node string
	log  *zap.Logger

	mu      sync.Mutex   // one re-join at a time
	rejoins atomic.Int64 // successful re-joins
	lost    atomic.Bool  // another worker holds the slot now
}

var _ worker.Coordinator = (*RejoiningCoordinator)(nil)

// NewRejoiningCoordinator returns cc as the worker holding slot, which
// joined with node as its name, reaches it.
func NewRejoiningCoordinator(cc *CoordClient, slot int, node string, log *zap.Logger) *RejoiningCoordinator {
	if log == nil {
		log = zap.NewNop()
	}
	return &RejoiningCoordinator{CoordClient: cc, slot: slot, node: node, log: log}
}

// Slot returns the worker's slot.
func (r *RejoiningCoordinator) Slot() int { return r.slot }

// Lost reports whether a re-join found the slot held by another worker: the
// slot is not this worker's to give back (Leave) any more.
func (r *RejoiningCoordinator) Lost() bool { return r.lost.Load() }

// Report implements worker.Coordinator, joining again for the slot once on
// NOT_FOUND.
func (r *RejoiningCoordinator) Report(ctx context.Context, step int64, slot int, terms objective.Terms, t worker.Timing) (bool, worker.StepState, error) {
	seen := r.rejoins.Load()
	ok, st, err := r.CoordClient.Report(ctx, step, slot, terms, t)
	if status.Code(err) != codes.NotFound {
		return ok, st, err
	}
	if err := r.rejoin(ctx, seen); err != nil {
		return false, st, err
	}
	return r.CoordClient.Report(ctx, step, slot, terms, t)
}

// rejoin joins the coordinator again for the slot, unless another caller
// did since this one saw seen re-joins (a second Join for a slot this worker
// holds again would be given another slot).
func (r *RejoiningCoordinator) rejoin(ctx context.Context, seen int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rejoins.Load() != seen {
		return nil
	}
	resp, err := r.CoordClient.Join(ctx, RoleWorker, r.slot, "", r.node)
	if err != nil {
		return fmt.Errorf("joining the coordinator again: %w", err)
	}
	if got := int(resp.GetSlot()); got != r.slot {
		r.lost.Store(true)
		_ = r.CoordClient.Leave(ctx, RoleWorker, got)
		return fmt.Errorf("%w: the coordinator gave slot %d to another worker", worker.ErrFatal, r.slot)
	}
	r.rejoins.Add(1)
	r.log.Info("joined the coordinator again (it had released this worker's slot)", zap.Int("slot", r.slot))
	return nil
}

// KeepShardJoined keeps shard index, serving at address, joined to the
// coordinator until ctx ends: every period it reads its assignment and,
// when the coordinator does not list it at address (a restarted
// coordinator forgot it), joins again. The membership table counts a
// shard's second join as a restart only within one coordinator's lifetime,
// and here the shard kept its state. This is a periodic check (one small
// call per period), not a retry loop: a failed attempt waits for the next
// period.
func KeepShardJoined(ctx context.Context, cc *CoordClient, index int, address, node string, period time.Duration, log *zap.Logger) {
	if log == nil {
		log = zap.NewNop()
	}
	retry.Every(ctx, period, func(cctx context.Context) {
		a, err := cc.GetAssignment(cctx, RoleParamServer, index)
		if err != nil || index >= len(a.GetShards()) || a.GetShards()[index].GetAddress() != address {
			if _, err := cc.Join(cctx, RoleParamServer, index, address, node); err == nil {
				log.Info("joined the coordinator again (it restarted)")
			}
		}
	})
}
