package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data/datatest"
	"github.com/logitpair/logitpair/pkg/history"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/safetensors"
	"github.com/logitpair/logitpair/pkg/sentinel"
	"github.com/logitpair/logitpair/pkg/statuspage"
	"github.com/logitpair/logitpair/pkg/train"
)

// sentinelRun is a small in-process cluster (every process a goroutine of
// the test, over gRPC and gossip on loopback) with the sentinel on.
type sentinelRun struct {
	dir, dataDir string
	common       Common
	tc           train.Config
	co           CoordinatorOptions
}

func newSentinelRun(t *testing.T, steps int64) *sentinelRun {
	t.Helper()
	dir := t.TempDir()
	r := &sentinelRun{dir: dir, dataDir: filepath.Join(dir, "mnist")}
	datatest.WriteMNIST(t, r.dataDir, 64, 1)
	sec, err := NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	r.common = Common{JoinToken: sec.JoinToken, GossipKey: sec.GossipKey, GossipBind: "127.0.0.1:0", GossipFast: true}
	tc := train.DefaultConfig()
	tc.DataDir, tc.ModelConfig = r.dataDir, models.Config{"conv1": 2, "conv2": 4, "hidden": 16} // madry-mnist, narrow
	tc.Objective, tc.AttackSteps, tc.StepSize, tc.Batch = "alp", 1, 0.1, 2
	tc.Steps, tc.CheckpointEvery, tc.Keep, tc.LogEvery = steps, 2, 1, 1
	tc.SentinelEvery = 4
	r.tc = tc
	co := CoordinatorOptions{Common: r.common, Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "coordinator"), Workers: 2, PS: 1, Train: tc}
	co.HTTPListen = "127.0.0.1:0"
	co.AddrFile = filepath.Join(dir, "coordinator.json")
	r.co = co
	return r
}

// startCoordinator runs the coordinator of co and returns its addresses
// once it listens, and the channel RunCoordinator's result arrives on.
func startCoordinator(t *testing.T, ctx context.Context, co CoordinatorOptions, log *zap.Logger) (Addrs, chan error) {
	t.Helper()
	os.Remove(co.AddrFile)
	done := make(chan error, 1)
	go func() { done <- RunCoordinator(ctx, co, log) }()
	var addr Addrs
	waitUntil(t, time.Minute, "the coordinator listens", func() bool {
		select {
		case err := <-done:
			t.Fatalf("coordinator stopped: %v", err)
		default:
		}
		addr, _ = ReadAddrs(co.AddrFile)
		return addr.GRPC != ""
	})
	return addr, done
}

// startMembers runs the shard and the workers of r against the coordinator
// at addr until ctx ends; their errors (other than ctx's) arrive on errs.
func (r *sentinelRun) startMembers(ctx context.Context, addr Addrs, log *zap.Logger) (errs chan error, wait func()) {
	member := r.common
	member.GossipJoin = addr.Gossip
	var wg sync.WaitGroup
	errs = make(chan error, 1+r.co.Workers)
	wg.Add(1)
	go func() {
		defer wg.Done()
		o := ParamServerOptions{Common: member, Coordinator: addr.GRPC, Listen: "127.0.0.1:0", Dir: filepath.Join(r.dir, "ps-0")}
		if err := RunParamServer(ctx, o, log); err != nil && !errors.Is(err, context.Canceled) {
			errs <- fmt.Errorf("ps: %w", err)
		}
	}()
	for w := 0; w < r.co.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := WorkerOptions{Common: member, Coordinator: addr.GRPC, Slot: w, Threads: 1}
			if err := RunWorker(ctx, o, log); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("worker %d: %w", w, err)
			}
		}()
	}
	return errs, wg.Wait
}

// TestClusterSentinelRollsBackToTheLastGoodCheckpoint: with
// --sentinel-every 4 (checkpoints every 2, 12 steps) and a measurement
// that accepts step 4 and then sees the robust accuracy of step 8
// collapse, the coordinator rolls every shard back to step 4 (its
// checkpoint spared by --keep 1's pruning), logs why, counts the rollback
// in logitpair_sentinel_rollbacks_total, commits the later steps at half
// the learning rate, writes the state to sentinel.json, judges step 8
// again (good this time), and completes the run; a coordinator restarted
// on the directory continues with the state and its scale.
func TestClusterSentinelRollsBackToTheLastGoodCheckpoint(t *testing.T) {
	const steps = 12
	r := newSentinelRun(t, steps)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hang guard
	defer cancel()
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)

	// The measurement: step 4 good (robust 0.5), step 8 collapsed (robust
	// 0.1 < 0.5 × 0.5) the first time and good (0.6) the second. The
	// second check of step 8, the run's last, holds the coordinator (it
	// waits for the run's last verdict) until the test has read /metrics
	// and /status.json.
	var mu sync.Mutex
	var measured []int64
	var scales []float64 // the model file's sentinel state's scale at each check
	release := make(chan struct{})
	r.co.sentinelMeasure = func(step int64, _ *models.Model) (sentinel.Result, error) {
		mu.Lock()
		measured = append(measured, step)
		n := len(measured)
		mu.Unlock()
		f, err := safetensors.ReadFile(filepath.Join(r.co.Dir, checkpoint.ModelFileName(step)))
		if err != nil {
			return sentinel.Result{}, err
		}
		st, ok, err := sentinel.ReadState(f.Metadata)
		if err != nil || !ok {
			return sentinel.Result{}, fmt.Errorf("the model file of step %d carries no sentinel state (%v)", step, err)
		}
		mu.Lock()
		scales = append(scales, st.Scale())
		mu.Unlock()
		res := sentinel.Result{Clean: 0.9, SingleStep: 0.5, MultiStep: 0.5, Examples: 64}
		switch {
		case step == 8 && n == 2:
			res.SingleStep, res.MultiStep = 0.1, 0.1
		case step == 8:
			res.SingleStep, res.MultiStep = 0.6, 0.6
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return res, nil
	}
	addr, coordDone := startCoordinator(t, ctx, r.co, log)
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	errs, wait := r.startMembers(pctx, addr, log)

	// While the run waits for its last check: the metric and the page.
	waitUntil(t, 3*time.Minute, "the second check of step 8", func() bool {
		select {
		case err := <-coordDone:
			t.Fatalf("the coordinator stopped: %v", err)
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		mu.Lock()
		defer mu.Unlock()
		return len(measured) >= 3
	})
	metricsText := httpBody(t, "http://"+addr.HTTP+"/metrics")
	for _, want := range []string{`logitpair_sentinel_rollbacks_total{reason="collapse"} 1`, `logitpair_sentinel_rollbacks_total{reason="gap"} 0`,
		"logitpair_sentinel_lr_scale 0.5"} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
	var snap statuspage.Snapshot
	if err := json.Unmarshal([]byte(httpBody(t, "http://"+addr.HTTP+"/status.json")), &snap); err != nil {
		t.Fatal(err)
	}
	if s := snap.Sentinel; s == nil || s.Rollbacks != 1 || s.LRScale != 0.5 || s.LastGood != 4 || s.Last == nil || s.Last.Step != 8 || s.Last.MultiStep != 0.1 {
		t.Errorf("/status.json's sentinel %+v (last %+v), want 1 rollback, scale 0.5, last good 4, last check step 8 at 0.1", s, s.Last)
	}
	if page := httpBody(t, "http://"+addr.HTTP+"/"); !strings.Contains(page, `id="sentinel"`) {
		t.Error("the status page shows no sentinel card")
	}
	close(release)

	select {
	case err := <-coordDone:
		if err != nil {
			t.Fatalf("the run did not complete: %v", err)
		}
	case err := <-errs:
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatal("the run did not finish within the deadline")
	}
	pcancel()
	wait()

	mu.Lock()
	if !slices.Equal(measured, []int64{4, 8, 8}) {
		t.Errorf("checked steps %v, want [4 8 8] (the final checkpoint is not judged)", measured)
	}
	if !slices.Equal(scales, []float64{1, 1, 0.5}) {
		t.Errorf("the checked model files' sentinel scales %v, want [1 1 0.5]", scales)
	}
	mu.Unlock()
	lines := logs.FilterMessage("rolled back on request").All()
	if len(lines) != 1 {
		t.Fatalf("%d rollbacks logged, want 1", len(lines))
	}
	f := lines[0].ContextMap()
	if reason, _ := f["reason"].(string); f["to_step"] != int64(4) || f["lr_scale"] != 0.5 ||
		!strings.Contains(reason, "collapse") || !strings.Contains(reason, "multi-step accuracy 10.00%") {
		t.Errorf("rollback logged as %v, want to step 4 at scale 0.5 naming the collapse", f)
	}
	l, err := paramserver.OpenFileLog(filepath.Join(r.co.Dir, "commit.log"))
	if err != nil {
		t.Fatal(err)
	}
	es, err := l.Entries()
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != steps {
		t.Fatalf("%d log entries for %d steps", len(es), steps)
	}
	for i, e := range es {
		want := 1.0
		if e.Step >= 4 {
			want = 0.5
		}
		if e.Step != int64(i) || paramserver.LRScaleOf(e.LRScale) != want {
			t.Errorf("log entry %+v, want step %d at scale %v", e, i, want)
		}
	}
	st, ok, err := readSentinelState(r.co.Dir)
	if err != nil || !ok {
		t.Fatalf("sentinel.json: %v %v", ok, err)
	}
	if st.Rollbacks != 1 || st.LRScale != 0.5 || st.LastGood != 8 || st.Best != 0.6 || st.BestStep != 8 {
		t.Errorf("sentinel.json %s, want 1 rollback, scale 0.5, last good 8, best 0.6 at 8", st.JSON())
	}
	if s, ok, _ := FileCheckpointsOf(r.co.Dir); !ok || s != steps {
		t.Errorf("final checkpoint %d %v, want %d", s, ok, steps)
	}
	checkClusterHistory(t, r.co.Dir, r.tc)

	// A restarted coordinator (no shards: it waits for them) continues
	// with the state and its scale.
	core2, logs2 := observer.New(zapcore.InfoLevel)
	rctx, rcancel := context.WithCancel(ctx)
	addr2, done2 := startCoordinator(t, rctx, r.co, zap.New(core2))
	resumed := logs2.FilterMessage("sentinel state resumed").All()
	if len(resumed) != 1 || resumed[0].ContextMap()["lr_scale"] != 0.5 || resumed[0].ContextMap()["rollbacks"] != int64(1) {
		t.Errorf("restart logged %v, want one \"sentinel state resumed\" at scale 0.5 with 1 rollback", resumed)
	}
	if m := httpBody(t, "http://"+addr2.HTTP+"/metrics"); !strings.Contains(m, "logitpair_sentinel_lr_scale 0.5") ||
		!strings.Contains(m, "logitpair_sentinel_robust_accuracy 0.6") {
		t.Errorf("the restarted coordinator's sentinel gauges are not the state's (scale 0.5, robust accuracy 0.6)")
	}
	rcancel()
	if err := <-done2; err != nil {
		t.Errorf("restarted coordinator: %v", err)
	}
	// The restart's start record, at the step the commit log reached.
	recs, _, err := history.ReadFile(filepath.Join(r.co.Dir, history.FileName))
	if err != nil || len(recs) == 0 || recs[len(recs)-1].Kind != history.KindStart || recs[len(recs)-1].Step != steps {
		t.Errorf("the restarted coordinator's history ends with %+v (%v), want a start record at step %d", recs[len(recs)-1:], err, steps)
	}
}

// checkClusterHistory checks the history of the run of
// TestClusterSentinelRollsBackToTheLastGoodCheckpoint: a train record per
// step (--log-every 1) with the workers' loss terms, the sentinel's checks
// with their verdicts, the rollback from step 8 or later to 4 at scale 0.5;
// its surviving path has every step once, in order; and it plots. With
// LOGITPAIR_KEEP_PLOTS=DIR the PNGs are also written to DIR.
func checkClusterHistory(t *testing.T, dir string, tc train.Config) {
	t.Helper()
	steps := tc.Steps
	sched, err := optim.ParseSchedule(tc.LRSchedule, tc.LR)
	if err != nil {
		t.Fatal(err)
	}
	recs, notes, err := history.ReadFile(filepath.Join(dir, history.FileName))
	if err != nil || len(notes) > 0 {
		t.Fatalf("history: %v, notes %q", err, notes)
	}
	if recs[0].Kind != history.KindStart || recs[0].Step != 0 || recs[0].Source != "coordinator" || recs[0].Steps != steps {
		t.Errorf("first record %+v, want the coordinator's start at 0", recs[0])
	}
	var checks []string
	var rollbacks []history.Record
	for _, r := range recs {
		switch r.Kind {
		case history.KindSentinel:
			checks = append(checks, fmt.Sprintf("%d:%s", r.Step, r.Verdict))
		case history.KindRollback:
			rollbacks = append(rollbacks, r)
		}
	}
	if want := []string{"4:good", "8:rollback", "8:good"}; !slices.Equal(checks, want) {
		t.Errorf("sentinel records %v, want %v", checks, want)
	}
	if len(rollbacks) != 1 || rollbacks[0].Step != 4 || rollbacks[0].From < 8 || history.Value(rollbacks[0].LRScale) != 0.5 ||
		!strings.Contains(rollbacks[0].Reason, "collapse") {
		t.Errorf("rollback records %+v, want one from step ≥ 8 to 4 at scale 0.5", rollbacks)
	}
	var trained []int64
	for _, r := range history.Surviving(recs) {
		if r.Kind != history.KindTrain {
			continue
		}
		trained = append(trained, r.Step)
		if r.Loss == nil || r.CleanAcc == nil || r.Reports < 1 || r.LR == nil || r.Interval != 1 {
			t.Errorf("train record %+v", r)
		}
		want := sched.LR(r.Step - 1)
		if r.Step > 4 {
			want *= 0.5
		}
		if history.Value(r.LR) != want {
			t.Errorf("step %d's learning rate %v, want %v", r.Step, history.Value(r.LR), want)
		}
	}
	for i, s := range trained {
		if s != int64(i+1) {
			t.Fatalf("surviving train records at steps %v, want 1..%d", trained, steps)
		}
	}
	if len(trained) != int(steps) {
		t.Fatalf("surviving train records at steps %v, want 1..%d", trained, steps)
	}
	out := os.Getenv("LOGITPAIR_KEEP_PLOTS")
	if out == "" {
		out = t.TempDir()
	}
	if files, err := history.Plot(recs, out, "cluster"); err != nil || len(files) != 3 {
		t.Errorf("plot: %v, %v", files, err)
	}
}

// TestClusterSentinelNeedsTheTestSplitAndCheckpointSteps: a coordinator
// with the sentinel on refuses to start when --sentinel-every is not a
// multiple of --checkpoint-every, and when it cannot open the test split,
// naming the directory and `logitpair data fetch`.
func TestClusterSentinelNeedsTheTestSplitAndCheckpointSteps(t *testing.T) {
	r := newSentinelRun(t, 12)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard: both must fail at once
	defer cancel()
	r.co.Train.SentinelEvery = 3
	err := RunCoordinator(ctx, r.co, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "multiple of --checkpoint-every") {
		t.Errorf("--sentinel-every 3 with --checkpoint-every 2: %v", err)
	}
	r.co.Train.SentinelEvery = 4
	r.co.Train.DataDir = filepath.Join(r.dir, "nowhere")
	err = RunCoordinator(ctx, r.co, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), r.co.Train.DataDir) || !strings.Contains(err.Error(), "logitpair data fetch") {
		t.Errorf("no test split: %v", err)
	}
}
