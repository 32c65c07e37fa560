package coordinator_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/paramserver"
)

// rig drives a coordinator by hand: 2 shards of a 6-element vector, SGD,
// workers push constant gradients.
type rig struct {
	t      *testing.T
	shards []*paramserver.Local
	log    paramserver.CommitLog
	ckpts  *checkpoint.MemRecord
	c      *coordinator.Coordinator
	cfg    coordinator.Config
	run    context.CancelFunc
	done   chan error
}

func newRig(t *testing.T, workers, backups int, elastic bool, log paramserver.CommitLog, shards []*paramserver.Local, ckpts *checkpoint.MemRecord, opts ...func(*coordinator.Config, *coordinator.Hooks)) *rig {
	t.Helper()
	return newRigWrapped(t, workers, backups, elastic, log, shards, ckpts, nil, nil, opts...)
}

// newRigWrapped is newRig with the coordinator reaching shard k through
// wrap(k, shard) (fault injection) and logging to logger; wrap and logger
// may be nil. Every worker has joined (SetLive) before the coordinator runs.
func newRigWrapped(t *testing.T, workers, backups int, elastic bool, log paramserver.CommitLog, shards []*paramserver.Local, ckpts *checkpoint.MemRecord,
	wrap func(k int, s coordinator.ShardClient) coordinator.ShardClient, logger *zap.Logger, opts ...func(*coordinator.Config, *coordinator.Hooks)) *rig {
	t.Helper()
	return buildRig(t, workers, backups, elastic, true, log, shards, ckpts, wrap, logger, opts...)
}

// newEmptyRig is newRig on a fresh log before any worker joined.
func newEmptyRig(t *testing.T, workers, backups int, elastic bool, opts ...func(*coordinator.Config, *coordinator.Hooks)) *rig {
	t.Helper()
	return buildRig(t, workers, backups, elastic, false, paramserver.NewMemLog(), nil, nil, nil, nil, opts...)
}

func buildRig(t *testing.T, workers, backups int, elastic, join bool, log paramserver.CommitLog, shards []*paramserver.Local, ckpts *checkpoint.MemRecord,
	wrap func(k int, s coordinator.ShardClient) coordinator.ShardClient, logger *zap.Logger, opts ...func(*coordinator.Config, *coordinator.Hooks)) *rig {
	t.Helper()
	r := &rig{t: t, log: log, ckpts: ckpts, shards: shards}
	if shards == nil {
		for k := 0; k < 2; k++ {
			oc, _ := optim.DefaultConfig("sgd")
			sc := paramserver.ShardConfig{Index: k, Lo: 3 * k, Hi: 3*k + 3, Workers: workers, Optim: oc, Schedule: "constant", LR: 0.5}
			s, err := paramserver.NewLocal(sc, []float32{1, 2, 3}, paramserver.NewMemStepStore())
			if err != nil {
				t.Fatal(err)
			}
			r.shards = append(r.shards, s)
		}
	}
	if r.ckpts == nil {
		r.ckpts = &checkpoint.MemRecord{}
	}
	r.cfg = coordinator.Config{Workers: workers, Backups: backups, Elastic: elastic, Steps: 100, CheckpointEvery: 2,
		RetryEvery: 5 * time.Millisecond, CallTimeout: 5 * time.Second}
	var hooks coordinator.Hooks
	for _, o := range opts {
		o(&r.cfg, &hooks)
	}
	clients := []coordinator.ShardClient{r.shards[0], r.shards[1]}
	if wrap != nil {
		for k := range clients {
			clients[k] = wrap(k, clients[k])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c, err := coordinator.New(ctx, r.cfg, r.log, r.ckpts, clients, hooks, logger)
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	if join {
		for w := range workers {
			c.SetLive(w, true)
		}
	}
	rctx, rcancel := context.WithCancel(ctx)
	r.run, r.done = rcancel, make(chan error, 1)
	go func() { r.done <- c.Run(rctx) }()
	t.Cleanup(r.stop)
	select {
	case <-c.Ready():
	case err := <-r.done:
		t.Fatalf("coordinator stopped before it was ready: %v", err)
	case <-ctx.Done():
		t.Fatal("coordinator not ready within the deadline")
	}
	return r
}

func (r *rig) stop() {
	if r.run != nil {
		r.run()
		<-r.done
		r.run = nil
	}
}

// step pushes a gradient of `slot+1` from each worker in slots and reports.
func (r *rig) step(t int64, slots ...int) {
	r.t.Helper()
	for _, w := range slots {
		for _, s := range r.shards {
			if err := s.S.Push(t, w, []float32{float32(w + 1), float32(w + 1), float32(w + 1)}, nil); err != nil {
				r.t.Fatalf("push step %d worker %d: %v", t, w, err)
			}
		}
	}
	for _, w := range slots {
		if _, _, _, err := r.c.Report(t, w); err != nil {
			r.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := r.c.WaitStep(ctx, t, r.c.Status().Generation)
	if err != nil || st.Step != t+1 {
		r.t.Fatalf("step %d not committed: %+v %v", t, st, err)
	}
}

func entries(t *testing.T, l paramserver.CommitLog) []paramserver.Entry {
	e, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRestartedCoordinatorReappliesTheLoggedStep(t *testing.T) {
	log := paramserver.NewMemLog()
	r := newRig(t, 1, 0, false, log, nil, nil)
	r.step(0, 0)
	r.step(1, 0)
	r.stop()
	// Crash after logging step 2 but before any shard applied it.
	for _, s := range r.shards {
		if err := s.S.Push(2, 0, []float32{1, 1, 1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Append(paramserver.Entry{Step: 2, Workers: []int{0}}); err != nil {
		t.Fatal(err)
	}
	r2 := newRig(t, 1, 0, false, log, r.shards, r.ckpts)
	if st := r2.c.Status(); st.Step != 3 {
		t.Fatalf("restarted coordinator at step %d, want 3", st.Step)
	}
	for _, s := range r.shards {
		if v := s.S.Version(); v != 3 {
			t.Fatalf("shard at version %d after recovery, want 3", v)
		}
	}
	r2.step(3, 0)
	if n := len(entries(t, log)); n != 4 {
		t.Fatalf("%d log entries, want 4", n)
	}
}

func TestShardRestartRollsBackToTheLastConsistentCheckpoint(t *testing.T) {
	log := paramserver.NewMemLog()
	r := newRig(t, 2, 1, false, log, nil, nil)
	for s := int64(0); s < 3; s++ {
		r.step(s, 0, 1)
	}
	if got := r.c.Status().LastCheckpoint; got != 2 {
		t.Fatalf("last checkpoint %d, want 2", got)
	}
	// Shard 1 restarts with nothing: back at its initial state.
	init, _, _ := r.shards[1].Store.LoadStep(1, 0)
	if err := r.shards[1].S.Restore(init); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.c.ShardRestarted(1)
	st, err := r.c.WaitStep(ctx, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Step != 2 || st.Generation != 1 {
		t.Fatalf("after rollback %+v, want step 2 generation 1", st)
	}
	for k, s := range r.shards {
		if v := s.S.Version(); v != 2 {
			t.Fatalf("shard %d at version %d, want 2", k, v)
		}
	}
	for s := int64(2); s < 5; s++ {
		r.step(s, 1, 0)
	}
	es := entries(t, log)
	if len(es) != 5 {
		t.Fatalf("log %+v, want one entry per step 0..4", es)
	}
	for i, e := range es {
		if e.Step != int64(i) {
			t.Fatalf("log entry %d is step %d", i, e.Step)
		}
	}
	// N = W − b = 1: steps 0–1 (kept by the checkpoint) took slot 0's
	// gradient 1, steps 2–4 after the rollback slot 1's gradient 2; SGD with
	// lr 0.5 on both shards: 1 − 2·0.5·1 − 3·0.5·2 = −3.
	p0, _, _ := r.shards[0].S.Pull(ctx, 5)
	p1, _, _ := r.shards[1].S.Pull(ctx, 5)
	if p0[0] != p1[0] || p0[0] != -3 {
		t.Fatalf("shards disagree after the rollback: %v %v", p0, p1)
	}
}

// A shard lost while the final checkpoint is written must not end the run
// with an older checkpoint as its result: the run rolls back to the last
// consistent checkpoint, commits the remaining steps again and then writes
// the final one.
func TestShardLostDuringTheFinalCheckpointRedoesTheTail(t *testing.T) {
	log := paramserver.NewMemLog()
	var r *rig
	failed := 0
	r = newRig(t, 1, 0, false, log, nil, nil, func(c *coordinator.Config, h *coordinator.Hooks) {
		c.Steps = 3
		h.Checkpointed = func(_ context.Context, v int64) error {
			if v != 3 || failed > 0 {
				return nil
			}
			failed++
			// Shard 1 restarts with nothing while the checkpoint is written.
			init, _, _ := r.shards[1].Store.LoadStep(1, 0)
			if err := r.shards[1].S.Restore(init); err != nil {
				t.Error(err)
			}
			return errors.New("shard 1: connection reset")
		}
	})
	for s := int64(0); s < 3; s++ {
		r.step(s, 0)
	}
	// The final checkpoint failed and recovery rolled back to step 2.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for r.c.Status().Generation == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("no rollback after the failed final checkpoint: %+v", r.c.Status())
		case <-time.After(time.Millisecond):
		}
	}
	if st := r.c.Status(); st.Step != 2 || st.Done || st.LastCheckpoint != 2 {
		t.Fatalf("after the failed final checkpoint %+v, want step 2, not done, checkpoint 2", st)
	}
	r.step(2, 0)
	select {
	case err := <-r.done:
		r.run = nil
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("run not done after the tail was committed again")
	}
	if st := r.c.Status(); !st.Done || st.LastCheckpoint != 3 || failed != 1 {
		t.Fatalf("final %+v (failed %d), want done with checkpoint 3", st, failed)
	}
	if s, ok, _ := r.ckpts.LastCheckpoint(); !ok || s != 3 {
		t.Fatalf("checkpoint store at %d %v, want 3", s, ok)
	}
	if es := entries(t, log); len(es) != 3 || es[2].Step != 2 {
		t.Fatalf("log %+v, want steps 0..2", es)
	}
}

func TestBackupReportsAreDroppedAndCounted(t *testing.T) {
	r := newRig(t, 3, 1, false, paramserver.NewMemLog(), nil, nil)
	r.step(0, 2, 0) // slots 2 and 0 decide step 0
	ok, cur, _, err := r.c.Report(0, 1)
	if err != nil || ok || cur != 1 {
		t.Fatalf("late report of step 0: accepted=%v current=%d %v", ok, cur, err)
	}
	if _, _, _, err := r.c.Report(1, 7); err == nil || !strings.Contains(err.Error(), "unknown worker slot 7") {
		t.Fatalf("unknown slot: %v", err)
	}
	if st := r.c.Status(); st.DroppedBackup != 1 {
		t.Fatalf("dropped %d, want 1", st.DroppedBackup)
	}
	if e := entries(t, r.log); len(e) != 1 || e[0].Workers[0] != 0 || e[0].Workers[1] != 2 {
		t.Fatalf("log %+v", e)
	}
}

func TestTooFewLiveWorkersPauseOrShrinkWithElastic(t *testing.T) {
	r := newRig(t, 3, 0, false, paramserver.NewMemLog(), nil, nil)
	r.c.SetLive(2, false)
	if st := r.c.Status(); !st.Paused || !strings.Contains(st.Reason, "2 live workers, 3 needed") || !strings.Contains(st.Reason, "or run with --elastic") {
		t.Fatalf("status %+v", st)
	}
	r.c.SetLive(2, true)
	if st := r.c.Status(); st.Paused {
		t.Fatalf("still paused: %+v", st)
	}
	e := newRig(t, 3, 0, true, paramserver.NewMemLog(), nil, nil)
	e.c.SetLive(2, false)
	if st := e.c.Status(); st.Paused || st.Required != 2 {
		t.Fatalf("elastic: %+v", st)
	}
	e.step(0, 0, 1)
	e.c.SetLive(2, true)
	if st := e.c.Status(); st.Required != 3 {
		t.Fatalf("elastic after return: %+v", st)
	}
	// With every worker gone even an elastic cluster pauses (N ≥ 1), and
	// its reason does not suggest the --elastic it already has.
	for w := range 3 {
		e.c.SetLive(w, false)
	}
	if st := e.c.Status(); !st.Paused || !strings.Contains(st.Reason, "0 live workers, 1 needed per step (start more workers)") {
		t.Fatalf("elastic with no worker: %+v", st)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []coordinator.Config{
		{Workers: 0, Steps: 1, RetryEvery: 1, CallTimeout: 1},
		{Workers: 3, Backups: 3, Steps: 1, RetryEvery: 1, CallTimeout: 1},
		{Workers: 3, Backups: -1, Steps: 1, RetryEvery: 1, CallTimeout: 1},
		{Workers: 3, Steps: 0, RetryEvery: 1, CallTimeout: 1},
		{Workers: 3, Steps: 1, RetryEvery: 1, CallTimeout: 1, MissedSteps: -1},
		{Workers: 3, Steps: 1, RetryEvery: 1, CallTimeout: 1, ProbeEvery: -1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	err := coordinator.Config{Workers: 3, Steps: 1, RetryEvery: 1, CallTimeout: 1, MissedSteps: -2}.Validate()
	if err == nil || !strings.Contains(err.Error(), "--missed-steps must be at least 1") {
		t.Fatalf("negative MissedSteps: %v", err)
	}
}

// watchedLog is a commit log that, at each Append, records every shard's
// version, and fails the Append of step failAt.
type watchedLog struct {
	paramserver.CommitLog
	shards   []*paramserver.Local
	failAt   int64
	versions [][]int64 // per Append: the shards' versions when it was called
}

func (l *watchedLog) Append(e paramserver.Entry) error {
	var v []int64
	for _, s := range l.shards {
		v = append(v, s.S.Version())
	}
	l.versions = append(l.versions, v)
	if e.Step == l.failAt {
		return errors.New("disk full")
	}
	return l.CommitLog.Append(e)
}

// The contributing set of step t is durable in the commit log before any
// shard applies step t: at each Append every shard is still at version t,
// and when the Append fails no shard applies the step at all.
func TestStepIsLoggedBeforeAnyShardApplies(t *testing.T) {
	log := &watchedLog{CommitLog: paramserver.NewMemLog(), failAt: 2}
	r := newRig(t, 2, 0, false, log, nil, nil)
	log.shards = r.shards
	r.step(0, 0, 1)
	r.step(1, 1, 0)
	for step, v := range log.versions {
		for k, ver := range v {
			if ver != int64(step) {
				t.Fatalf("step %d was logged when shard %d was already at version %d", step, k, ver)
			}
		}
	}
	for _, w := range []int{0, 1} {
		for _, s := range r.shards {
			if err := s.S.Push(2, w, []float32{1, 1, 1}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, _, err := r.c.Report(2, w); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-r.done:
		r.run = nil
		if err == nil || !strings.Contains(err.Error(), "commit log: disk full") {
			t.Fatalf("coordinator stopped with %v, want the commit log's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the coordinator went on after its commit log failed")
	}
	for k, s := range r.shards {
		if v := s.S.Version(); v != 2 {
			t.Fatalf("shard %d at version %d after the unlogged step 2, want 2 (not applied)", k, v)
		}
	}
	if e := entries(t, log); len(e) != 2 {
		t.Fatalf("%d log entries, want 2", len(e))
	}
}

// TestGenerationCounts: the generation of the incarnation-th start after r
// rollbacks reads back as incarnation−1 restarts and r rollbacks, and every
// generation of a later start exceeds every earlier one's.
func TestGenerationCounts(t *testing.T) {
	for _, c := range []struct{ inc, rollbacks, restarts int64 }{{1, 0, 0}, {1, 1, 0}, {2, 0, 1}, {3, 7, 2}, {0, 5, 0}} {
		g := coordinator.IncarnationGeneration(c.inc) + c.rollbacks
		if re, rb := coordinator.SplitGeneration(g); re != c.restarts || rb != c.rollbacks {
			t.Errorf("generation %d (incarnation %d, %d rollbacks): %d restarts, %d rollbacks", g, c.inc, c.rollbacks, re, rb)
		}
	}
	if coordinator.IncarnationGeneration(1) != 4294967296 || coordinator.IncarnationGeneration(2) <= coordinator.IncarnationGeneration(1)+1<<31 {
		t.Error("IncarnationGeneration is not the incarnation shifted left by 32")
	}
}
