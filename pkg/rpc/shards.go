package rpc

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/worker"
)

// Shards that move: a restarted shard may listen at another address, so
// neither the coordinator nor a worker holds a connection to "shard k";
// they look its address up on every call (CoordinatorShard in the
// coordinator's membership table, WorkerShards in the worker's assignment,
// which it reads again after a failure) and keep one connection per address
// in a ConnPool.

// ConnPool keeps one client connection per address, all dialed with the
// same options. It is safe for concurrent use.
type ConnPool struct {
	opts  []grpc.DialOption
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewConnPool returns an empty pool that dials with opts.
func NewConnPool(opts ...grpc.DialOption) *ConnPool {
	return &ConnPool{opts: opts, conns: map[string]*grpc.ClientConn{}}
}

// Get returns the connection to addr, creating it on first use (grpc
// connects lazily: a peer that is down shows as UNAVAILABLE on the call).
func (p *ConnPool) Get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, p.opts...)
	if err != nil {
		return nil, err
	}
	p.conns[addr] = cc
	return cc, nil
}

// Close closes every connection.
func (p *ConnPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, cc := range p.conns {
		cc.Close()
		delete(p.conns, addr)
	}
}

// ShardAddresses says where shard k serves now ("" before it joined);
// coordinator.Membership implements it.
type ShardAddresses interface {
	ShardAddress(k int) (string, error)
}

var _ ShardAddresses = (*coordinator.Membership)(nil)

// CoordinatorShard is shard k as the coordinator reaches it: at whatever
// address it last joined with. It implements coordinator.ShardClient,
// worker.Shard (the whole-model checkpoint pulls parameters) and FetchState.
type CoordinatorShard struct {
	k     int
	addrs ShardAddresses
	conns *ConnPool
}

var (
	_ coordinator.ShardClient = (*CoordinatorShard)(nil)
	_ worker.Shard            = (*CoordinatorShard)(nil)
)

// NewCoordinatorShard returns shard k, found in addrs and dialed through
// conns.
func NewCoordinatorShard(k int, addrs ShardAddresses, conns *ConnPool) *CoordinatorShard {
	return &CoordinatorShard{k: k, addrs: addrs, conns: conns}
}

func (s *CoordinatorShard) client() (*PSClient, error) {
	addr, err := s.addrs.ShardAddress(s.k)
	if err != nil {
		return nil, err
	}
	if addr == "" {
		return nil, fmt.Errorf("shard %d has not joined yet", s.k)
	}
	cc, err := s.conns.Get(addr)
	if err != nil {
		return nil, err
	}
	return NewPSClient(cc, s.k), nil
}

// Apply implements coordinator.ShardClient.
func (s *CoordinatorShard) Apply(ctx context.Context, step int64, w []int, lrScale float64) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	return c.Apply(ctx, step, w, lrScale)
}

// Version implements coordinator.ShardClient.
func (s *CoordinatorShard) Version(ctx context.Context) (int64, error) {
	c, err := s.client()
	if err != nil {
		return 0, err
	}
	return c.Version(ctx)
}

// Checkpoint implements coordinator.ShardClient.
func (s *CoordinatorShard) Checkpoint(ctx context.Context, step int64, keep []int64) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	return c.Checkpoint(ctx, step, keep)
}

// Restore implements coordinator.ShardClient.
func (s *CoordinatorShard) Restore(ctx context.Context, step int64) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	return c.Restore(ctx, step)
}

// Held implements coordinator.ShardClient.
func (s *CoordinatorShard) Held(ctx context.Context) ([]int64, error) {
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	return c.Held(ctx)
}

// FetchState is PSClient.FetchState.
func (s *CoordinatorShard) FetchState(ctx context.Context, step int64) (string, []optim.NamedState, error) {
	c, err := s.client()
	if err != nil {
		return "", nil, err
	}
	return c.FetchState(ctx, step)
}

// Pull implements worker.Shard.
func (s *CoordinatorShard) Pull(ctx context.Context, step int64) ([]float32, []float32, error) {
	c, err := s.client()
	if err != nil {
		return nil, nil, err
	}
	return c.Pull(ctx, step)
}

// Push implements worker.Shard.
func (s *CoordinatorShard) Push(ctx context.Context, step int64, w int, g, b []float32) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	return c.Push(ctx, step, w, g, b)
}

// WorkerShards are the shards as a worker reaches them: at the addresses of
// its assignment, which it reads again from the coordinator after a shard
// answered UNAVAILABLE (a restarted shard may listen elsewhere) and after
// the worker re-joined. When the coordinator no longer holds the worker's
// slot (NOT_FOUND: it restarted, or dropped this worker), the worker joins
// again for the same slot (RejoiningCoordinator) instead of asking forever.
// It is safe for concurrent use.
type WorkerShards struct {
	coord *RejoiningCoordinator
	conns *ConnPool
	opts  []PSClientOption

	mu    sync.Mutex
	a     *coordinatorv1.Assignment
	seen  int64 // coord's rejoins when a was read
	stale bool
}

// NewWorkerShards returns the shards of assignment a (the one the worker
// joined with) as coord's worker reaches them, dialed through conns, each
// through a PSClient made with opts (e.g. WithWireFormat) and the worker's
// slot.
func NewWorkerShards(coord *RejoiningCoordinator, a *coordinatorv1.Assignment, conns *ConnPool, opts ...PSClientOption) *WorkerShards {
	return &WorkerShards{coord: coord, conns: conns, opts: opts, a: a, seen: coord.rejoins.Load()}
}

// Shard returns shard k (worker.Shard).
func (s *WorkerShards) Shard(k int) worker.Shard { return &workerShard{k: k, shards: s} }

// Invalidate makes the next call read the assignment again.
func (s *WorkerShards) Invalidate() {
	s.mu.Lock()
	s.stale = true
	s.mu.Unlock()
}

// address returns shard k's address, reading the assignment again first
// when it is stale.
func (s *WorkerShards) address(ctx context.Context, k int) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stale || s.coord.rejoins.Load() != s.seen {
		seen := s.coord.rejoins.Load()
		a, err := s.coord.GetAssignment(ctx, RoleWorker, s.coord.slot)
		if status.Code(err) == codes.NotFound {
			if jerr := s.coord.rejoin(ctx, seen); jerr != nil {
				return "", jerr
			}
			seen = s.coord.rejoins.Load()
			a, err = s.coord.GetAssignment(ctx, RoleWorker, s.coord.slot)
		}
		if err != nil {
			return "", fmt.Errorf("refreshing the assignment: %w", err)
		}
		s.a, s.seen, s.stale = a, seen, false
	}
	if k < 0 || k >= len(s.a.GetShards()) {
		return "", fmt.Errorf("shard %d: the assignment has shards 0..%d", k, len(s.a.GetShards())-1)
	}
	addr := s.a.GetShards()[k].GetAddress()
	if addr == "" {
		s.stale = true
		return "", fmt.Errorf("shard %d has no address yet", k)
	}
	return addr, nil
}

// workerShard is shard k of a WorkerShards. It keeps its client while the
// shard stays on one connection, so that each Pull decodes into the last
// one's memory (PSClient.Pull).
type workerShard struct {
	k      int
	shards *WorkerShards

	mu     sync.Mutex
	conn   *grpc.ClientConn
	client *PSClient
}

func (w *workerShard) psClient(ctx context.Context) (*PSClient, error) {
	addr, err := w.shards.address(ctx, w.k)
	if err != nil {
		return nil, err
	}
	c, err := w.shards.conns.Get(addr)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != c {
		opts := append(slices.Clone(w.shards.opts), WithWorkerSlot(w.shards.coord.slot))
		w.conn, w.client = c, NewPSClient(c, w.k, opts...)
	}
	return w.client, nil
}

// check marks the assignment stale when the shard could not be reached.
func (w *workerShard) check(err error) error {
	if status.Code(err) == codes.Unavailable {
		w.shards.Invalidate()
	}
	return err
}

func (w *workerShard) Pull(ctx context.Context, step int64) ([]float32, []float32, error) {
	c, err := w.psClient(ctx)
	if err != nil {
		return nil, nil, err
	}
	p, b, err := c.Pull(ctx, step)
	return p, b, w.check(err)
}

func (w *workerShard) Push(ctx context.Context, step int64, worker int, g, b []float32) error {
	c, err := w.psClient(ctx)
	if err != nil {
		return err
	}
	return w.check(c.Push(ctx, step, worker, g, b))
}
