package rpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/wire"
	"github.com/logitpair/logitpair/pkg/worker"
)

// bufNet is a network of bufconn servers reachable by name: a client dials
// "passthrough:///NAME" with its dial options. A name nobody serves (or
// that stopped serving) refuses connections, like a port nobody listens on.
type bufNet struct {
	mu    sync.Mutex
	lis   map[string]*bufconn.Listener
	dials map[string]int
}

func newBufNet() *bufNet {
	return &bufNet{lis: map[string]*bufconn.Listener{}, dials: map[string]int{}}
}

// opts are the dial options of a client of the network.
func (n *bufNet) opts(extra ...grpc.DialOption) []grpc.DialOption {
	return append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect soon after a refused connection (gRPC's default waits
		// a second and more), so that a server that starts late is found
		// quickly; Join's own backoff is what is under test.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 200 * time.Millisecond}}),
		grpc.WithContextDialer(func(ctx context.Context, name string) (net.Conn, error) {
			n.mu.Lock()
			l := n.lis[name]
			n.dials[name]++
			n.mu.Unlock()
			if l == nil {
				return nil, fmt.Errorf("dial %s: connection refused", name)
			}
			return l.DialContext(ctx)
		}),
	}, extra...)
}

// dialsTo counts the connection attempts to name.
func (n *bufNet) dialsTo(name string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dials[name]
}

// serve runs a server with opts under name until stop (or the test's end);
// stop takes the name off the network and stops the server hard.
func (n *bufNet) serve(t *testing.T, name string, opts []grpc.ServerOption, register func(grpc.ServiceRegistrar)) (stop func()) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer(opts...)
	register(s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(lis)
	}()
	n.mu.Lock()
	n.lis[name] = lis
	n.mu.Unlock()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			n.mu.Lock()
			if n.lis[name] == lis {
				delete(n.lis, name)
			}
			n.mu.Unlock()
			s.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// client dials name on the network (closed when the test ends).
func (n *bufNet) client(t *testing.T, name string, extra ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+name, n.opts(extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// pool is a ConnPool of the network (closed when the test ends).
func (n *bufNet) pool(t *testing.T) *ConnPool {
	p := NewConnPool(n.opts()...)
	t.Cleanup(p.Close)
	return p
}

// eventually polls cond every 10 ms until it holds, failing the test when
// ctx ends (a hang guard, not a timing assertion).
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not before the hang guard", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// pulled fails unless pulling step from s gives the parameters of want.
func pulled(t *testing.T, ctx context.Context, what string, s worker.Shard, want *paramserver.Local) {
	t.Helper()
	p, _, err := s.Pull(ctx, 0)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	sameBits(t, what, p, want.S.Checkpoint().Params)
}

// TestCoordinatorShardFollowsItsAddress: the coordinator reaches shard k at
// the address the membership table holds now; a shard that joined again
// elsewhere is reached there on the next call.
func TestCoordinatorShardFollowsItsAddress(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	bn := newBufNet()
	a, b := newShard(t, 10, 4, 1, 1), newShard(t, 10, 4, 1, 2) // the shard before and after its restart
	stopA := bn.serve(t, "ps-a", nil, NewPSServer(a).Register)
	bn.serve(t, "ps-b", nil, NewPSServer(b).Register)
	m := newMembership(t, 1, 0, nil)
	s := NewCoordinatorShard(0, m, bn.pool(t))

	if _, err := s.Version(ctx); err == nil || !strings.Contains(err.Error(), "shard 0 has not joined yet") {
		t.Fatalf("a shard that has not joined: %v", err)
	}
	if _, err := m.JoinShard(0, "passthrough:///ps-a", "a"); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Version(ctx); err != nil || v != 0 {
		t.Fatalf("version: %d, %v", v, err)
	}
	pulled(t, ctx, "pull from the first address", s, a)
	stopA()
	if _, err := m.JoinShard(0, "passthrough:///ps-b", "b"); err != nil {
		t.Fatal(err)
	}
	pulled(t, ctx, "pull after the shard moved", s, b)
	if held, err := s.Held(ctx); err != nil || len(held) == 0 || held[0] != 0 {
		t.Fatalf("held after the move: %v, %v", held, err)
	}
	if _, err := NewCoordinatorShard(2, m, bn.pool(t)).Version(ctx); !errors.Is(err, coordinator.ErrBadIndex) {
		t.Fatalf("a shard the run does not have: %v", err)
	}
}

// TestWorkerShardsFollowAShardThatMoves: its shards' clients carry the
// options WorkerShards was given (a wire format) and the worker's slot; a
// worker pulls from the address of its assignment; when the shard stops
// answering (UNAVAILABLE, returned to the worker loop, which retries) and
// joins again elsewhere, the next call reads the assignment again and
// reaches it there. A shard that has not joined has no address yet.
func TestWorkerShardsFollowAShardThatMoves(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	bn := newBufNet()
	a, b := newShard(t, 10, 4, 1, 1), newShard(t, 10, 4, 1, 2)
	stopA := bn.serve(t, "ps-a", nil, NewPSServer(a).Register)
	bn.serve(t, "ps-b", nil, NewPSServer(b).Register)
	m := newMembership(t, 2, 0, nil)
	bn.serve(t, "coord", nil, NewCoordServer(nil, m).Register)
	if _, err := m.JoinShard(0, "passthrough:///ps-a", "a"); err != nil {
		t.Fatal(err)
	}

	cc := NewCoordClient(bn.client(t, "coord"))
	resp, err := Join(ctx, cc, JoinRequest{Role: RoleWorker, Preferred: -1, Node: "w"}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rc := NewRejoiningCoordinator(cc, int(resp.GetSlot()), "w", zaptest.NewLogger(t))
	ws := NewWorkerShards(rc, resp.GetAssignment(), bn.pool(t), WithWireFormat(wire.BF16))
	s0 := ws.Shard(0)
	pulled(t, ctx, "pull from the assigned address", s0, a)
	if c := s0.(*workerShard).client; c.format != wire.BF16 || c.slot != resp.GetSlot() {
		t.Fatalf("the shard's client pushes in %v for slot %d, want bf16 for slot %d", c.format, c.slot, resp.GetSlot())
	}

	stopA()
	if _, err := m.JoinShard(0, "passthrough:///ps-b", "b"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s0.Pull(ctx, 0); status.Code(err) != codes.Unavailable {
		t.Fatalf("pull from the address the shard left: %v, want UNAVAILABLE", err)
	}
	pulled(t, ctx, "pull after the shard moved", s0, b)

	if _, _, err := ws.Shard(1).Pull(ctx, 0); err == nil || !strings.Contains(err.Error(), "shard 1 has no address yet") {
		t.Fatalf("a shard that has not joined: %v", err)
	}
}

// joinHook is a unary server interceptor that runs before every Join it
// sees, while set.
type joinHook struct {
	mu     sync.Mutex
	before func()
}

func (h *joinHook) set(fn func()) { h.mu.Lock(); h.before = fn; h.mu.Unlock() }

func (h *joinHook) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	if strings.HasSuffix(info.FullMethod, "/Join") {
		h.mu.Lock()
		fn := h.before
		h.mu.Unlock()
		if fn != nil {
			fn()
		}
	}
	return next(ctx, req)
}

// TestRejoiningCoordinator: when the coordinator forgets a worker's slot,
// the worker's next report, or its next read of the assignment, joins again
// for the same slot and goes on, once however many calls found the slot
// gone; when another worker took the slot in the meantime, the worker gives
// back the slot it was offered instead and stops (worker.ErrFatal).
func TestRejoiningCoordinator(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	bn := newBufNet()
	shard := newShard(t, 10, 4, 3, 1)
	bn.serve(t, "ps-0", nil, NewPSServer(shard).Register)
	cfg := coordinator.DefaultConfig()
	cfg.Workers, cfg.Backups, cfg.Steps, cfg.CheckpointEvery = 3, 0, 10, 0
	c, err := coordinator.New(ctx, cfg, paramserver.NewMemLog(), &checkpoint.MemRecord{}, []coordinator.ShardClient{shard}, coordinator.Hooks{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- c.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-ran })
	<-c.Ready()
	m := newMembership(t, 3, 0, nil)
	if _, err := m.JoinShard(0, "passthrough:///ps-0", "ps"); err != nil {
		t.Fatal(err)
	}
	hook := &joinHook{}
	bn.serve(t, "coord", []grpc.ServerOption{grpc.UnaryInterceptor(hook.intercept)}, NewCoordServer(lateOf(c), m).Register)

	cc := NewCoordClient(bn.client(t, "coord"))
	resp, err := Join(ctx, cc, JoinRequest{Role: RoleWorker, Preferred: 1, Node: "w1"}, nil)
	if err != nil || resp.GetSlot() != 1 {
		t.Fatalf("join: %v, %v", resp, err)
	}
	rc := NewRejoiningCoordinator(cc, 1, "w1", zaptest.NewLogger(t))
	ws := NewWorkerShards(rc, resp.GetAssignment(), bn.pool(t))
	report := func() error {
		_, _, err := rc.Report(ctx, 0, 1, objective.Terms{}, worker.Timing{})
		return err
	}
	held := func(what string) {
		t.Helper()
		ms := m.Members()
		if len(ms) != 2 || ms[0].Kind != coordinator.KindWorker || ms[0].Slot != 1 || ms[0].Node != "w1" {
			t.Fatalf("%s: members %+v, want worker w1 in slot 1 and the shard", what, ms)
		}
	}

	// The report path.
	m.Release(1)
	if err := report(); err != nil {
		t.Fatalf("report after the coordinator forgot the slot: %v", err)
	}
	held("after a report re-joined")
	if n := rc.rejoins.Load(); n != 1 {
		t.Fatalf("%d re-joins, want 1", n)
	}
	// The assignment path: a shard that did not answer makes the worker
	// read its assignment, which is gone.
	m.Release(1)
	ws.Invalidate()
	pulled(t, ctx, "pull after the coordinator forgot the slot", ws.Shard(0), shard)
	held("after a read of the assignment re-joined")
	// Many callers at once re-join once.
	m.Release(1)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- report() }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent reports after the slot was forgotten: %v", err)
		}
	}
	held("after concurrent reports re-joined")
	if n := rc.rejoins.Load(); n != 3 {
		t.Fatalf("%d re-joins after three losses of the slot, want 3", n)
	}

	// Another worker takes the slot between the failed report and the
	// re-join: the worker is offered slot 0, gives it back, and stops.
	m.Release(1)
	hook.set(func() {
		hook.set(nil)
		if s, err := m.JoinWorker(1, "thief"); err != nil || s != 1 {
			t.Errorf("the other worker's join: %d, %v", s, err)
		}
	})
	if rc.Lost() {
		t.Fatal("Lost before the slot was lost")
	}
	if err := report(); !errors.Is(err, worker.ErrFatal) || !strings.Contains(err.Error(), "gave slot 1 to another worker") {
		t.Fatalf("re-join for a slot another worker took: %v, want worker.ErrFatal", err)
	}
	if !rc.Lost() {
		t.Fatal("not Lost after another worker took the slot")
	}
	ms := m.Members()
	if len(ms) != 2 || ms[0].Slot != 1 || ms[0].Node != "thief" {
		t.Fatalf("members %+v: want only the other worker in slot 1 (slot 0 given back) and the shard", ms)
	}
}

// countCalls is a client interceptor counting the calls of one method.
func countCalls(method string, n *atomic.Int64) grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, m string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasSuffix(m, "/"+method) {
			n.Add(1)
		}
		return invoker(ctx, m, req, reply, cc, opts...)
	})
}

// TestJoin: Join retries while the coordinator is not there yet and joins
// once it is; it stops at the first answer that retrying cannot change
// (a wrong token, a bad request) and when its context ends, naming the
// coordinator and the last error.
func TestJoin(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	bn := newBufNet()
	m := newMembership(t, 2, 0, nil)

	// Not there yet: the coordinator starts after two refused connections.
	cc := NewCoordClient(bn.client(t, "coord", WithToken("tok")))
	joined := make(chan error, 1)
	go func() {
		resp, err := Join(ctx, cc, JoinRequest{Role: RoleWorker, Preferred: 1, Node: "early"}, zaptest.NewLogger(t))
		if err == nil && resp.GetSlot() != 1 {
			err = fmt.Errorf("slot %d, want 1", resp.GetSlot())
		}
		joined <- err
	}()
	eventually(t, ctx, "two connection attempts", func() bool { return bn.dialsTo("coord") >= 2 })
	bn.serve(t, "coord", TokenAuth("tok"), NewCoordServer(nil, m).Register)
	if err := <-joined; err != nil {
		t.Fatalf("the join that began before the coordinator: %v", err)
	}

	// A wrong token: one attempt, UNAUTHENTICATED.
	var calls atomic.Int64
	bad := NewCoordClient(bn.client(t, "coord", countCalls("Join", &calls)))
	_, err := Join(ctx, bad, JoinRequest{Role: RoleWorker, Preferred: -1, Node: "intruder"}, nil)
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "joining the coordinator at passthrough:///coord") || calls.Load() != 1 {
		t.Fatalf("join with a wrong token: %v after %d attempts, want UNAUTHENTICATED after 1", err, calls.Load())
	}
	// With the token: a bad request stops at once, a good one joins.
	calls.Store(0)
	good := NewCoordClient(bn.client(t, "coord", WithToken("tok"), countCalls("Join", &calls)))
	_, err = Join(ctx, good, JoinRequest{Role: "gpu", Preferred: -1}, nil)
	if status.Code(err) != codes.InvalidArgument || calls.Load() != 1 {
		t.Fatalf("a bad request: %v after %d attempts, want INVALID_ARGUMENT after 1", err, calls.Load())
	}
	if resp, err := Join(ctx, good, JoinRequest{Role: RoleWorker, Preferred: 1, Node: "w"}, nil); err != nil || resp.GetSlot() != 0 {
		t.Fatalf("join preferring the early worker's slot: %v, %v; want slot 0", resp, err)
	}

	// Nobody there until the context ends.
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = Join(short, NewCoordClient(bn.client(t, "nobody")), JoinRequest{Role: RoleWorker, Preferred: -1}, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "passthrough:///nobody") || !strings.Contains(err.Error(), "last error") {
		t.Fatalf("join of a coordinator that never answers: %v", err)
	}
}

// TestKeepShardJoined: a shard re-joins a restarted coordinator (which
// forgot it) at the same address, and leaves alone a coordinator that
// lists it.
func TestKeepShardJoined(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	bn := newBufNet()
	var restarts atomic.Int64
	m1 := newMembership(t, 1, 0, func(int) { restarts.Add(1) })
	stop1 := bn.serve(t, "coord", nil, NewCoordServer(nil, m1).Register)
	var asks atomic.Int64
	cc := NewCoordClient(bn.client(t, "coord", countCalls("GetAssignment", &asks)))
	if _, err := Join(ctx, cc, JoinRequest{Role: RoleParamServer, Preferred: 0, Address: "ps-0:1", Node: "s"}, nil); err != nil {
		t.Fatal(err)
	}
	kctx, stopKeep := context.WithCancel(ctx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		KeepShardJoined(kctx, cc, 0, "ps-0:1", "s", 20*time.Millisecond, zaptest.NewLogger(t))
	}()
	defer func() { stopKeep(); <-kept }()

	eventually(t, ctx, "three checks", func() bool { return asks.Load() >= 3 })
	if n := restarts.Load(); n != 0 || m1.Generation() != 1 {
		t.Fatalf("the shard joined a coordinator that lists it again: %d restarts, generation %d", n, m1.Generation())
	}

	stop1()
	m2 := newMembership(t, 1, 0, nil)
	bn.serve(t, "coord", nil, NewCoordServer(nil, m2).Register)
	eventually(t, ctx, "the shard joins the restarted coordinator", func() bool {
		a, _ := m2.ShardAddress(0)
		return a == "ps-0:1"
	})
}
