package metrics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// fakeClock is a settable time source.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// value is the value of the single sample of name whose labels include
// want (NaN when there is none, failing when there are several).
func value(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found, v := 0, math.NaN()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, x := range want {
				if labels[k] != x {
					continue metric
				}
			}
			found++
			switch {
			case m.GetGauge() != nil:
				v = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				v = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				v = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	if found > 1 {
		t.Fatalf("%s%v: %d samples, want one", name, want, found)
	}
	return v
}

func TestCoordinatorStatusCommitsAndCheckpoints(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	m, err := newCoordinator(reg, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	// Before Attach: a zero status.
	if v := value(t, reg, "logitpair_step", nil); v != 0 {
		t.Fatalf("step before attach = %v", v)
	}
	st := coordinator.Status{Step: 42, Generation: 3, Required: 3, LiveWorkers: 2, Paused: true, LastCheckpoint: 40, DroppedBackup: 7, StaleReports: 2}
	m.SetStatusSource(func() coordinator.Status { return st })
	m.SetRunSteps(100)
	for name, want := range map[string]float64{"logitpair_step": 42, "logitpair_generation": 3, "logitpair_required_workers": 3,
		"logitpair_live_workers": 2, "logitpair_paused": 1, "logitpair_run_done": 0, "logitpair_last_checkpoint_step": 40, "logitpair_run_steps": 100} {
		if v := value(t, reg, name, nil); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if v := value(t, reg, "logitpair_coordinator_reports_dropped_total", map[string]string{"reason": "backup"}); v != 7 {
		t.Errorf("dropped backup = %v", v)
	}
	if v := value(t, reg, "logitpair_coordinator_reports_dropped_total", map[string]string{"reason": "stale"}); v != 2 {
		t.Errorf("dropped stale = %v", v)
	}

	// Step durations: the time between consecutive commits; the first
	// commit and a commit after a rollback (step not previous+1) observe
	// nothing.
	m.Committed(10)
	clk.add(2 * time.Second)
	m.Committed(11)
	clk.add(3 * time.Second)
	m.Committed(12)
	clk.add(time.Second)
	m.Committed(5) // after a rollback
	if n := testutil.CollectAndCount(m.stepDuration); n != 1 {
		t.Fatalf("step duration series: %d", n)
	}
	if v := value(t, reg, "logitpair_step_duration_seconds", nil); v != 2 {
		t.Errorf("step durations observed: %v, want 2", v)
	}
	if err := testutil.CollectAndCompare(m.stepDuration, strings.NewReader(histText("logitpair_step_duration_seconds",
		"Time between consecutive step commits (a step applied by every shard).", nil, []float64{2, 3})), "logitpair_step_duration_seconds"); err != nil {
		t.Error(err)
	}
	if v := testutil.ToFloat64(m.stepsCommitted); v != 4 {
		t.Errorf("steps committed = %v", v)
	}

	// Checkpoint age: from construction, reset by a recorded checkpoint,
	// not by a failed one.
	if v := value(t, reg, "logitpair_checkpoint_age_seconds", nil); v != 6 {
		t.Errorf("checkpoint age = %v, want 6", v)
	}
	inner := &failingStore{}
	cs := m.CheckpointStore(inner)
	if err := cs.SetLastCheckpoint(50); err != nil {
		t.Fatal(err)
	}
	clk.add(4 * time.Second)
	if v := value(t, reg, "logitpair_checkpoint_age_seconds", nil); v != 4 {
		t.Errorf("checkpoint age after a checkpoint = %v, want 4", v)
	}
	inner.fail = true
	if err := cs.SetLastCheckpoint(60); err == nil {
		t.Fatal("a failing store's error was swallowed")
	}
	if v := value(t, reg, "logitpair_checkpoint_age_seconds", nil); v != 4 {
		t.Errorf("a failed checkpoint reset the age: %v", v)
	}
	if s, ok, _ := cs.LastCheckpoint(); s != 50 || !ok {
		t.Errorf("LastCheckpoint through the wrapper = %d %v", s, ok)
	}
	m.SetCheckpointTime(clk.now().Add(-time.Minute))
	if v := value(t, reg, "logitpair_checkpoint_age_seconds", nil); v != 60 {
		t.Errorf("checkpoint age after SetCheckpointTime = %v", v)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

type failingStore struct {
	fail bool
	step int64
	ok   bool
}

func (f *failingStore) LastCheckpoint() (int64, bool, error) { return f.step, f.ok, nil }
func (f *failingStore) Held() ([]int64, error)               { return nil, nil }
func (f *failingStore) SetLastCheckpoint(s int64) error {
	if f.fail {
		return errors.New("disk full")
	}
	f.step, f.ok = s, true
	return nil
}

// histText is the exposition of a histogram with DurationBuckets holding obs.
func histText(name, help string, labels map[string]string, obs []float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	lbl := ""
	for k, v := range labels {
		lbl += fmt.Sprintf("%s=%q,", k, v)
	}
	sum := 0.0
	for _, o := range obs {
		sum += o
	}
	for _, ub := range DurationBuckets {
		n := 0
		for _, o := range obs {
			if o <= ub {
				n++
			}
		}
		fmt.Fprintf(&b, "%s_bucket{%sle=\"%g\"} %d\n", name, lbl, ub, n)
	}
	fmt.Fprintf(&b, "%s_bucket{%sle=\"+Inf\"} %d\n", name, lbl, len(obs))
	trim := strings.TrimSuffix(lbl, ",")
	if trim != "" {
		trim = "{" + trim + "}"
	}
	fmt.Fprintf(&b, "%s_sum%s %g\n%s_count%s %d\n", name, trim, sum, name, trim, len(obs))
	return b.String()
}

func TestReportsSkipNaNTermsAndCountNaNLoss(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewCoordinator(reg)
	if err != nil {
		t.Fatal(err)
	}
	nan := math.NaN()
	// A plain clean-training report: no adversarial terms, no attack timing.
	m.Report(7, 1, objective.Terms{Loss: 2.5, CleanCE: 2.5, AdvCE: nan, Pair: nan, CleanAcc: 0.25, AdvAcc: nan, LogitNorm: 3},
		worker.Timing{Compute: 200 * time.Millisecond, Comm: 50 * time.Millisecond})
	s1 := map[string]string{"slot": "1"}
	for name, want := range map[string]float64{"logitpair_loss": 2.5, "logitpair_clean_cross_entropy": 2.5, "logitpair_clean_accuracy_ratio": 0.25,
		"logitpair_logit_norm": 3, "logitpair_reported_step": 7, "logitpair_coordinator_reports_total": 1} {
		if v := value(t, reg, name, s1); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if v := value(t, reg, "logitpair_loss_nan_total", s1); v != 0 {
		t.Errorf("loss_nan_total after a finite loss = %v, want 0", v)
	}
	for _, name := range []string{"logitpair_adversarial_cross_entropy", "logitpair_pairing_loss", "logitpair_adversarial_accuracy_ratio"} {
		if v := value(t, reg, name, s1); !math.IsNaN(v) {
			t.Errorf("%s exported as %v for a term that was not computed", name, v)
		}
	}
	if v := value(t, reg, "logitpair_worker_phase_duration_seconds", map[string]string{"slot": "1", "phase": PhaseAttack}); !math.IsNaN(v) {
		t.Errorf("an unmeasured attack phase was observed")
	}
	if v := value(t, reg, "logitpair_worker_phase_duration_seconds", map[string]string{"slot": "1", "phase": PhaseCompute}); v != 1 {
		t.Errorf("compute observations = %v", v)
	}
	// ALP: every term; then a NaN loss, which keeps the last finite loss
	// and counts.
	m.Report(8, 1, objective.Terms{Loss: 1.5, CleanCE: 0.5, AdvCE: 0.75, Pair: 0.25, CleanAcc: 1, AdvAcc: 0.5, LogitNorm: 4},
		worker.Timing{Attack: time.Second, Compute: time.Second, Comm: time.Second})
	m.Report(9, 1, objective.Terms{Loss: nan, CleanCE: nan, AdvCE: nan, Pair: nan, CleanAcc: 0, AdvAcc: 0, LogitNorm: nan}, worker.Timing{})
	for name, want := range map[string]float64{"logitpair_loss": 1.5, "logitpair_adversarial_cross_entropy": 0.75, "logitpair_pairing_loss": 0.25,
		"logitpair_adversarial_accuracy_ratio": 0, "logitpair_loss_nan_total": 1, "logitpair_reported_step": 9, "logitpair_coordinator_reports_total": 3} {
		if v := value(t, reg, name, s1); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if v := value(t, reg, "logitpair_worker_phase_duration_seconds", map[string]string{"slot": "1", "phase": PhaseAttack}); v != 1 {
		t.Errorf("attack observations = %v", v)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// TestShardOverGRPC pushes and pulls through a real gRPC server wrapped in
// the shard's interceptors and checks the traffic and gradient counters.
func TestShardOverGRPC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg := prometheus.NewPedanticRegistry()
	m, err := NewShard(reg, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Before the stats source: only the traffic series.
	if v := value(t, reg, "logitpair_shard_version", nil); !math.IsNaN(v) {
		t.Fatalf("shard version before SetStatsSource = %v", v)
	}
	cfg := paramserver.DefaultConfig()
	cfg.Index, cfg.Lo, cfg.Hi, cfg.Workers = 1, 0, 1000, 3
	shard, err := paramserver.NewLocal(cfg, make([]float32, 1000), paramserver.NewMemStepStore())
	if err != nil {
		t.Fatal(err)
	}
	ps := rpc.NewPSServer(shard)
	m.SetStatsSource(shard.S.Stats, func() int64 { return ps.Stats().MalformedPushes })
	srv := grpc.NewServer(m.ServerOptions()...)
	ps.Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := rpc.NewPSClient(conn, 1)
	g := make([]float32, 1000)
	for i := range g {
		g[i] = 0.001
	}
	for w := 0; w < 3; w++ {
		if err := c.Push(ctx, 0, w, g, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Apply(ctx, 0, []int{0, 2}, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Push(ctx, 0, 1, g, nil); err == nil { // stale: step 0 was applied
		t.Fatal("a stale push was accepted")
	}
	if err := c.Push(ctx, 1, 0, g[:10], nil); err == nil { // wrong length: rejected
		t.Fatal("a short push was accepted")
	}
	if _, _, err := c.Pull(ctx, 1); err != nil {
		t.Fatal(err)
	}
	sh := map[string]string{"shard": "1"}
	for _, x := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"logitpair_shard_version", sh, 1},
		{"logitpair_shard_steps_applied_total", sh, 1},
		{"logitpair_shard_gradients_received_total", sh, 5},
		{"logitpair_shard_gradients_applied_total", sh, 2},
		{"logitpair_shard_gradients_dropped_total", map[string]string{"shard": "1", "reason": ReasonBackup}, 1},
		{"logitpair_shard_gradients_dropped_total", map[string]string{"shard": "1", "reason": ReasonStale}, 1},
		{"logitpair_shard_gradients_dropped_total", map[string]string{"shard": "1", "reason": ReasonRejected}, 1},
		{"logitpair_shard_gradients_dropped_total", map[string]string{"shard": "1", "reason": ReasonRestore}, 0},
		{"logitpair_shard_pulls_total", sh, 1},
		{"logitpair_shard_push_duration_seconds", sh, 5},
		{"logitpair_shard_pull_duration_seconds", sh, 1},
		{"logitpair_shard_apply_duration_seconds", sh, 1},
		{"logitpair_shard_rpc_errors_total", map[string]string{"shard": "1", "method": "push"}, 2},
	} {
		if v := value(t, reg, x.name, x.labels); v != x.want {
			t.Errorf("%s%v = %v, want %v", x.name, x.labels, v, x.want)
		}
	}
	// Three accepted pushes of 1000 floats, two refused ones: at least the
	// accepted payload, and a pull of 1000 floats.
	if v := testutil.ToFloat64(m.pushBytes); v < 3*4000 {
		t.Errorf("push bytes = %v", v)
	}
	if v := testutil.ToFloat64(m.pullBytes); v < 4000 || v > 5000 {
		t.Errorf("pull bytes = %v, want about 4000", v)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	if _, err := NewShard(prometheus.NewRegistry(), -1); err == nil {
		t.Error("a negative shard index was accepted")
	}
}

// fakeShard answers pulls with n parameters and b buffers; pushes fail
// when fail is set.
type fakeShard struct {
	n, b int
	fail bool
}

func (f *fakeShard) Pull(context.Context, int64) ([]float32, []float32, error) {
	return make([]float32, f.n), make([]float32, f.b), nil
}

func (f *fakeShard) Push(context.Context, int64, int, []float32, []float32) error {
	if f.fail {
		return errors.New("unreachable")
	}
	return nil
}

type fakeCoord struct {
	accept bool
	err    error
}

func (f fakeCoord) Report(context.Context, int64, int, objective.Terms, worker.Timing) (bool, worker.StepState, error) {
	return f.accept, worker.StepState{}, f.err
}

func (f fakeCoord) WaitStep(context.Context, int64, int64) (worker.StepState, error) {
	return worker.StepState{Step: 3}, nil
}

func TestWorkerWrappers(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	m, err := NewWorker(reg, 2)
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeShard{n: 100, b: 4}
	s := m.Shard(0, fs)
	if _, _, err := s.Pull(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Push(ctx, 0, 2, make([]float32, 100), make([]float32, 4)); err != nil {
		t.Fatal(err)
	}
	fs.fail = true
	if err := s.Push(ctx, 0, 2, make([]float32, 100), nil); err == nil {
		t.Fatal("the wrapper swallowed an error")
	}
	l := map[string]string{"slot": "2", "shard": "0"}
	for name, want := range map[string]float64{"logitpair_worker_pull_bytes_total": 416, "logitpair_worker_push_bytes_total": 416,
		"logitpair_worker_pull_duration_seconds": 1, "logitpair_worker_push_duration_seconds": 1} {
		if v := value(t, reg, name, l); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if v := value(t, reg, "logitpair_worker_shard_errors_total", map[string]string{"slot": "2", "shard": "0", "op": "push"}); v != 1 {
		t.Errorf("push errors = %v", v)
	}
	terms := objective.Terms{Loss: 1, CleanCE: 1, AdvCE: math.NaN(), Pair: math.NaN(), CleanAcc: 0.5, AdvAcc: math.NaN(), LogitNorm: 2}
	for _, fc := range []fakeCoord{{accept: true}, {accept: false}, {err: errors.New("gone")}} {
		_, _, _ = m.Coordinator(fc).Report(ctx, 5, 2, terms, worker.Timing{Compute: time.Second})
	}
	if st, err := m.Coordinator(fakeCoord{}).WaitStep(ctx, -1, -1); err != nil || st.Step != 3 {
		t.Errorf("WaitStep through the wrapper: %+v %v", st, err)
	}
	for _, r := range []string{ResultAccepted, ResultLate, ResultError} {
		if v := value(t, reg, "logitpair_worker_reports_total", map[string]string{"slot": "2", "result": r}); v != 1 {
			t.Errorf("reports %s = %v", r, v)
		}
	}
	if v := value(t, reg, "logitpair_loss", map[string]string{"slot": "2"}); v != 1 {
		t.Errorf("loss = %v", v)
	}
	if v := value(t, reg, "logitpair_loss_nan_total", map[string]string{"slot": "2"}); v != 0 {
		t.Errorf("loss_nan_total before any NaN = %v, want 0", v)
	}
	if m.RunError(errors.New("other")) {
		t.Error("an unrelated error counted as a NaN loss")
	}
	if !m.RunError(fmt.Errorf("worker 2: %w", &train.NonFiniteError{Step: 5, Terms: objective.Terms{Loss: math.NaN()}})) {
		t.Error("a wrapped NonFiniteError was not recognized")
	}
	if v := value(t, reg, "logitpair_loss_nan_total", map[string]string{"slot": "2"}); v != 1 {
		t.Errorf("loss_nan_total = %v", v)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	if _, err := NewWorker(prometheus.NewRegistry(), -1); err == nil {
		t.Error("a negative slot was accepted")
	}
}

// TestOneRegistryPerProcess: the constructors refuse a second registration
// on the same registry (a process builds each once), and NewRegistry holds
// the Go and process collectors.
func TestOneRegistryPerProcess(t *testing.T) {
	reg := NewRegistry()
	if _, err := NewCoordinator(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewCoordinator(reg); err == nil {
		t.Error("a second coordinator registered on the same registry")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var goRoutines, process bool
	for _, mf := range mfs {
		goRoutines = goRoutines || mf.GetName() == "go_goroutines"
		process = process || strings.HasPrefix(mf.GetName(), "process_")
	}
	if !goRoutines || !process {
		t.Errorf("NewRegistry lacks the Go (%v) or process (%v) collector", goRoutines, process)
	}
}

// TestAuthRefused: logitpair_auth_refused_total exports every reason from
// zero and counts what an rpc.Guard refuses, here a call with a wrong join
// token.
func TestAuthRefused(t *testing.T) {
	reg := prometheus.NewRegistry()
	am, err := NewAuth(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rpc.RefusalReasons {
		if v := value(t, reg, "logitpair_auth_refused_total", map[string]string{"reason": r}); v != 0 {
			t.Fatalf("%s: %v before any refusal, want 0", r, v)
		}
	}
	g := rpc.NewGuard(rpc.GuardConfig{Token: "tok", OnRefused: am.Refused})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(g.ServerOptions()...)
	tc := train.DefaultConfig()
	tc.ModelConfig = models.Config{"hidden": 8}
	mc, err := rpc.NewMembershipConfig(tc, []worker.Range{{Lo: 0, Hi: 4}}, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	reg2, err := coordinator.NewMembership(mc)
	if err != nil {
		t.Fatal(err)
	}
	rpc.NewCoordServer(nil, reg2).Register(srv)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), rpc.WithToken("guess"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rpc.NewCoordClient(conn).Join(ctx, rpc.RoleWorker, -1, "", "w"); err == nil {
		t.Fatal("a wrong token was accepted")
	}
	if v := value(t, reg, "logitpair_auth_refused_total", map[string]string{"reason": rpc.RefusedToken}); v != 1 {
		t.Fatalf("token refusals %v, want 1", v)
	}
	if v := value(t, reg, "logitpair_auth_refused_total", map[string]string{"reason": rpc.RefusedRole}); v != 0 {
		t.Fatalf("role refusals %v, want 0", v)
	}
}

// idleShard is a shard the coordinator never calls here (New does not
// contact its shards).
type idleShard struct{ coordinator.ShardClient }

// TestLiveWorkersCountOnlyJoinedWorkers: attached to a coordinator no worker
// has joined, logitpair_live_workers is 0 (below the required 3: the
// cluster is paused); a join raises it, a leave lowers it.
func TestLiveWorkersCountOnlyJoinedWorkers(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewCoordinator(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := coordinator.DefaultConfig()
	cfg.Workers, cfg.Backups, cfg.Steps = 4, 1, 10
	c, err := coordinator.New(context.Background(), cfg, paramserver.NewMemLog(), nil, []coordinator.ShardClient{idleShard{}}, coordinator.Hooks{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Attach(c)
	want := func(what string, live, paused float64) {
		t.Helper()
		if v := value(t, reg, "logitpair_live_workers", nil); v != live {
			t.Errorf("%s: live workers %v, want %v", what, v, live)
		}
		if v := value(t, reg, "logitpair_required_workers", nil); v != 3 {
			t.Errorf("%s: required workers %v, want 3", what, v)
		}
		if v := value(t, reg, "logitpair_paused", nil); v != paused {
			t.Errorf("%s: paused %v, want %v", what, v, paused)
		}
	}
	want("before any join", 0, 1)
	for w := range 3 {
		c.SetLive(w, true)
	}
	want("after 3 joins", 3, 0)
	c.SetLive(1, false)
	want("after a leave", 2, 1)
}

// TestBuildInfo: logitpair_build_info is 1 with the binary's version, Go
// version and revision ("-modified" for a dirty work tree), and "unknown"
// where the build information lacks them.
func TestBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/logitpair/logitpair", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.modified", Value: "true"}}}
	const head = "# HELP logitpair_build_info Always 1; its labels name the binary: the main module's version, the Go version and the VCS revision it was built from.\n# TYPE logitpair_build_info gauge\n"
	for _, c := range []struct {
		read func() (*debug.BuildInfo, bool)
		want string
	}{
		{func() (*debug.BuildInfo, bool) { return bi, true }, `logitpair_build_info{go_version="go1.99.1",revision="0123abc-modified",version="v1.2.3"} 1`},
		{func() (*debug.BuildInfo, bool) { return nil, false }, `logitpair_build_info{go_version="` + runtime.Version() + `",revision="unknown",version="unknown"} 1`},
	} {
		if err := testutil.CollectAndCompare(NewBuildInfo(c.read), strings.NewReader(head+c.want+"\n")); err != nil {
			t.Error(err)
		}
	}
	// Every process's registry (coordinator, shard, worker: NewRegistry)
	// carries it.
	mfs, err := NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "logitpair_build_info" {
			found = len(mf.GetMetric()) == 1 && mf.GetMetric()[0].GetGauge().GetValue() == 1
		}
	}
	if !found {
		t.Error("NewRegistry lacks logitpair_build_info 1")
	}
}
