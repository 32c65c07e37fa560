package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// smallRanges is a two-shard map of 10 + 6 parameters and 4 buffers (all
// on shard 0), without a model behind it.
var smallRanges = []worker.Range{{Lo: 0, Hi: 10, BufLo: 0, BufHi: 4}, {Lo: 10, Hi: 16}}

// newMembership is the membership table of a run of the default training
// config over smallRanges.
func newMembership(t *testing.T, workers, backups int, onRestart func(int)) *coordinator.Membership {
	t.Helper()
	cfg := train.DefaultConfig()
	cfg.ModelConfig = models.Config{"hidden": 8}
	mc, err := NewMembershipConfig(cfg, smallRanges, workers, backups)
	if err != nil {
		t.Fatal(err)
	}
	mc.OnShardRestart = onRestart
	m, err := coordinator.NewMembership(mc)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// lateOf is c bound (nil: never set).
func lateOf(c *coordinator.Coordinator) *coordinator.Late {
	l := new(coordinator.Late)
	if c != nil {
		l.Set(c)
	}
	return l
}

// TestMembershipOverGRPC: worker slots (preferred, lowest free, full),
// Release, the shard map and its generation, the restart callback, and the
// assignment a member receives, through the coordinator's gRPC API: the
// membership table's errors arrive as the codes of membershipStatus.
func TestMembershipOverGRPC(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	var mu sync.Mutex
	var restarted []int
	reg := newMembership(t, 3, 1, func(k int) {
		mu.Lock()
		defer mu.Unlock()
		restarted = append(restarted, k)
	})
	srv := NewCoordServer(nil, reg)
	cc := NewCoordClient(dial(t, serve(t, nil, srv.Register)))

	join := func(preferred int) int {
		t.Helper()
		r, err := cc.Join(ctx, RoleWorker, preferred, "", "node")
		if err != nil {
			t.Fatalf("join preferring %d: %v", preferred, err)
		}
		return int(r.Slot)
	}
	if s := join(1); s != 1 {
		t.Fatalf("preferred free slot 1: got %d", s)
	}
	if s := join(-1); s != 0 {
		t.Fatalf("any slot: got %d, want the lowest free, 0", s)
	}
	if s := join(1); s != 2 {
		t.Fatalf("preferred slot 1 is taken: got %d, want the lowest free, 2", s)
	}
	_, err := cc.Join(ctx, RoleWorker, -1, "", "node")
	wantCode(t, "join of a full cluster", err, codes.ResourceExhausted, "cluster full: all 3 worker slots are taken")
	if !reg.Release(1) || reg.Release(1) {
		t.Fatal("Release of a held slot must report true once")
	}
	if s := join(7); s != 1 {
		t.Fatalf("after Release(1): got slot %d, want 1", s)
	}
	if err := cc.Leave(ctx, RoleWorker, 0); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "leave of a free slot", cc.Leave(ctx, RoleWorker, 0), codes.NotFound)
	_, err = cc.GetAssignment(ctx, RoleWorker, 0)
	wantCode(t, "assignment of a released slot", err, codes.NotFound, "join again")
	_, err = cc.Join(ctx, "gpu", -1, "", "")
	wantCode(t, "unknown role", err, codes.InvalidArgument, `role "gpu"`)

	// Shards: the index is required, so is the address.
	_, err = cc.Join(ctx, RoleParamServer, 2, "h:1", "")
	wantCode(t, "shard index out of range", err, codes.InvalidArgument, "shards 0..1", "preferred_slot")
	_, err = cc.GetAssignment(ctx, RoleParamServer, 2)
	wantCode(t, "assignment of a shard out of range", err, codes.NotFound, "shards 0..1")
	_, err = cc.Join(ctx, RoleParamServer, 0, "", "")
	wantCode(t, "shard without address", err, codes.InvalidArgument, "address")
	g0 := reg.Generation()
	r, err := cc.Join(ctx, RoleParamServer, 0, "ps-0:7070", "a")
	if err != nil {
		t.Fatal(err)
	}
	if r.Slot != 0 || r.Assignment.WorkerSlot != -1 || r.Assignment.Shards[0].Hi != 10 || r.Assignment.Shards[0].BufferHi != 4 {
		t.Fatalf("shard join: %v", r)
	}
	if _, err := cc.Join(ctx, RoleParamServer, 1, "ps-1:7070", "b"); err != nil {
		t.Fatal(err)
	}
	if reg.Generation() != g0+2 {
		t.Fatalf("generation %d after two shards joined, want %d", reg.Generation(), g0+2)
	}
	mu.Lock()
	if len(restarted) != 0 {
		t.Fatalf("restart callback on a first join: %v", restarted)
	}
	mu.Unlock()
	if _, err := cc.Join(ctx, RoleParamServer, 1, "ps-1:7070", "b"); err != nil { // restart, same address
		t.Fatal(err)
	}
	if _, err := cc.Join(ctx, RoleParamServer, 0, "ps-0b:7070", "c"); err != nil { // restart elsewhere
		t.Fatal(err)
	}
	mu.Lock()
	if len(restarted) != 2 || restarted[0] != 1 || restarted[1] != 0 {
		t.Fatalf("restart callbacks %v, want [1 0]", restarted)
	}
	mu.Unlock()
	if reg.Generation() != g0+3 {
		t.Fatalf("generation %d: only the moved shard's new address bumps it (want %d)", reg.Generation(), g0+3)
	}

	a, err := cc.GetAssignment(ctx, RoleWorker, 2)
	if err != nil {
		t.Fatal(err)
	}
	var tc train.Config
	if err := json.Unmarshal([]byte(a.TrainConfigJson), &tc); err != nil {
		t.Fatal(err)
	}
	if a.WorkerSlot != 2 || a.Workers != 2 || a.Backups != 1 || a.DataShard != 2 || a.DataShards != 3 ||
		a.Generation != g0+3 || a.StartStep != 0 || a.Model != "madry-mnist" || a.ModelConfigJson != `{"hidden":8}` ||
		tc.Model != "madry-mnist" || tc.ModelConfig["hidden"] != 8 || len(a.Shards) != 2 ||
		a.Shards[0].Address != "ps-0b:7070" || a.Shards[1].Address != "ps-1:7070" || a.Shards[1].Lo != 10 || a.Shards[1].BufferHi != 0 {
		t.Fatalf("assignment %v", a)
	}
	ms := reg.Members()
	if len(ms) != 4 || ms[0].Slot != 1 || ms[1].Slot != 2 || ms[2].Kind != coordinator.KindShard || ms[3].Address != "ps-1:7070" {
		t.Fatalf("members %v", ms)
	}
	// Without a coordinator the step RPCs are unavailable, not broken.
	_, err = cc.Status(ctx)
	wantCode(t, "status before the coordinator runs", err, codes.Unavailable)
}

// TestTokenAuth: without the join token, or with a wrong one, Pull, Push,
// Apply and Join are UNAUTHENTICATED and change nothing; with it they work.
func TestTokenAuth(t *testing.T) {
	const token = "s3cret"
	ctx := ctxFor(t, time.Minute)
	shard := newShard(t, 8, 0, 1, 3)
	ps := NewPSServer(shard)
	reg := newMembership(t, 2, 0, nil)
	cs := NewCoordServer(nil, reg)
	lis := serve(t, TokenAuth(token), func(r grpc.ServiceRegistrar) {
		ps.Register(r)
		cs.Register(r)
	})
	g := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	for _, tc := range []struct {
		name string
		opts []grpc.DialOption
	}{{"no token", nil}, {"wrong token", []grpc.DialOption{WithToken("guess")}}, {"empty token", []grpc.DialOption{WithToken("")}}} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dial(t, lis, tc.opts...)
			psc, cc := NewPSClient(conn, 0), NewCoordClient(conn)
			_, _, err := psc.Pull(ctx, 0)
			wantCode(t, "pull", err, codes.Unauthenticated, "missing or wrong join token")
			wantCode(t, "push", psc.Push(ctx, 0, 0, g, nil), codes.Unauthenticated, "missing or wrong join token")
			wantCode(t, "apply", psc.Apply(ctx, 0, []int{0}, 0), codes.Unauthenticated, "missing or wrong join token")
			_, err = cc.Join(ctx, RoleWorker, -1, "", "intruder")
			wantCode(t, "join", err, codes.Unauthenticated, "missing or wrong join token")
			_, err = cc.Join(ctx, RoleParamServer, 0, "evil:1", "intruder")
			wantCode(t, "shard join", err, codes.Unauthenticated, "missing or wrong join token")
			if st := shard.S.Stats(); st.Version != 0 || st.Pushes != 0 || st.Accepted != 0 || st.Pulls != 0 {
				t.Fatalf("the shard changed: %+v", st)
			}
			if ms := reg.Members(); len(ms) != 0 || reg.Generation() != 0 {
				t.Fatalf("the membership table changed: %v, generation %d", ms, reg.Generation())
			}
		})
	}
	conn := dial(t, lis, WithToken(token))
	psc, cc := NewPSClient(conn, 0), NewCoordClient(conn)
	if err := psc.Push(ctx, 0, 0, g, nil); err != nil {
		t.Fatal(err)
	}
	if err := psc.Apply(ctx, 0, []int{0}, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := psc.Pull(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if r, err := cc.Join(ctx, RoleWorker, -1, "", "friend"); err != nil || r.Slot != 0 {
		t.Fatalf("join with the token: %v, %v", r, err)
	}
}

// TestTokenCredentialsRequireTLS: credentials that demand transport
// security cannot be used on a plaintext connection.
func TestTokenCredentialsRequireTLS(t *testing.T) {
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(TokenCredentials("x", true)))
	if err == nil {
		_ = conn.Close()
		t.Fatal("a token that requires TLS was accepted on a plaintext connection")
	}
}

// TestCoordinatorRPCs: ReportStep and WaitStep before the coordinator has
// recovered (UNAVAILABLE, hidden by CoordClient.WaitStep) and after, with
// the server's cap and its early answers; Leave marking a worker dead;
// Status. N = 2 and only one worker reports, so step 0 is never decided.
func TestCoordinatorRPCs(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	shard := newShard(t, 4, 0, 2, 1)
	cfg := coordinator.DefaultConfig()
	cfg.Workers, cfg.Backups, cfg.Steps, cfg.CheckpointEvery = 2, 0, 10, 0
	c, err := coordinator.New(ctx, cfg, paramserver.NewMemLog(), &checkpoint.MemRecord{}, []coordinator.ShardClient{shard}, coordinator.Hooks{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var reports []objective.Terms
	var mu sync.Mutex
	reg := newMembership(t, 2, 0, nil)
	srv := NewCoordServer(lateOf(c), reg, WithWaitCap(50*time.Millisecond), WithOnReport(func(step int64, slot int, terms objective.Terms, tm worker.Timing) {
		mu.Lock()
		defer mu.Unlock()
		if tm.Attack != 1500*time.Millisecond {
			t.Errorf("attack timing %v", tm.Attack)
		}
		reports = append(reports, terms)
	}))
	conn := dial(t, serve(t, nil, srv.Register))
	cc := NewCoordClient(conn)
	raw := coordinatorv1.NewCoordinatorClient(conn)

	_, _, err = cc.Report(ctx, 0, 0, objective.Terms{}, worker.Timing{})
	wantCode(t, "report before joining", err, codes.NotFound, "join again")
	// No worker has joined: 0 live, paused, and the reason says so.
	if cs, err := cc.Status(ctx); err != nil || cs.LiveWorkers != 0 || cs.Required != 2 || !cs.Paused ||
		!strings.Contains(cs.PauseReason, "no worker has joined yet") || len(cs.Members) != 0 {
		t.Fatalf("status before any join: %v %v", cs, err)
	}
	for w := 0; w < 2; w++ {
		if _, err := cc.Join(ctx, RoleWorker, w, "", ""); err != nil {
			t.Fatal(err)
		}
		if cs, err := cc.Status(ctx); err != nil || cs.LiveWorkers != int32(w+1) {
			t.Fatalf("status after %d joins: %v %v", w+1, cs, err)
		}
	}
	// Before Run has recovered the step.
	_, _, err = cc.Report(ctx, 0, 1, objective.Terms{}, worker.Timing{})
	wantCode(t, "report while recovering", err, codes.Unavailable, "recovering")
	_, err = raw.WaitStep(ctx, &coordinatorv1.WaitStepRequest{Step: 0, Generation: -1})
	wantCode(t, "wait while recovering", err, codes.Unavailable, "recovering")
	waited := make(chan error, 1)
	go func() {
		st, err := cc.WaitStep(ctx, -1, -1) // retries until the coordinator is ready
		if err == nil && st.Step != 0 {
			err = fmt.Errorf("state %+v", st)
		}
		waited <- err
	}()
	time.Sleep(120 * time.Millisecond)
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- c.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		<-ran
	})
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("WaitStep(-1, -1) did not return once the coordinator was ready")
	}
	ok, st, err := cc.Report(ctx, 0, 1, objective.Terms{Loss: 2.5, AdvAcc: 0.25}, worker.Timing{Attack: 1500 * time.Millisecond})
	if err != nil || !ok || st.Step != 0 || st.Generation != 0 || st.Done {
		t.Fatalf("report: %v %+v %v", ok, st, err)
	}
	mu.Lock()
	if len(reports) != 1 || reports[0].Loss != 2.5 || reports[0].AdvAcc != 0.25 {
		t.Fatalf("OnReport saw %+v", reports)
	}
	mu.Unlock()

	// The current state at once.
	if st, err := cc.WaitStep(ctx, -1, -1); err != nil || st.Step != 0 || st.Done {
		t.Fatalf("WaitStep(-1, -1): %+v, %v", st, err)
	}
	// Step 0 is not committed (the loop is not running): the server
	// answers early at its 50 ms cap, the client asks again until its own
	// deadline.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = cc.WaitStep(short, 0, 0)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) < 250*time.Millisecond {
		t.Fatalf("WaitStep on an undecided step: %v after %v", err, time.Since(t0))
	}
	// A different generation (a rollback the worker missed) answers at once.
	if st, err := cc.WaitStep(ctx, 0, 5); err != nil || st.Generation != 0 {
		t.Fatalf("WaitStep with an old generation: %+v, %v", st, err)
	}

	// Leave marks the worker dead: with N = 2 the cluster pauses.
	if err := cc.Leave(ctx, RoleWorker, 0); err != nil {
		t.Fatal(err)
	}
	cs, err := cc.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !cs.Paused || cs.LiveWorkers != 1 || cs.Required != 2 || len(cs.Members) != 1 || cs.Members[0].Slot != 1 || cs.Members[0].LastStep != 0 || cs.Members[0].LastSeenUnixMs == 0 {
		t.Fatalf("status after a leave: %v", cs)
	}
	if r, err := cc.Join(ctx, RoleWorker, -1, "", ""); err != nil || r.Slot != 0 {
		t.Fatalf("rejoin: %v %v", r, err)
	}
	if cs, _ := cc.Status(ctx); cs.Paused || cs.LiveWorkers != 2 {
		t.Fatalf("status after the rejoin: %v", cs)
	}
}
