package coordinator_test

import (
	"context"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/paramserver"
)

// rolledBack records Hooks.RolledBack.
type rolledBack struct {
	mu    sync.Mutex
	calls []string
	to    []int64
	scale []float64
}

func (r *rolledBack) hook(to int64, scale float64, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.to, r.scale, r.calls = append(r.to, to), append(r.scale, scale), append(r.calls, reason)
}

// waitRolledBack waits until the coordinator is at step `to` of a newer
// generation than gen.
func waitRolledBack(t *testing.T, c *coordinator.Coordinator, step, gen int64) coordinator.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.WaitStep(ctx, step, gen)
	if err != nil {
		t.Fatalf("no rollback: %v", err)
	}
	return st
}

// TestRequestRollbackRestoresEveryShardAndScalesLaterSteps: a requested
// rollback puts every shard back at the checkpoint, truncates the log,
// bumps the generation, logs the reason, counts it, tells the hook, and the
// steps after it are logged and applied with the new scale.
func TestRequestRollbackRestoresEveryShardAndScalesLaterSteps(t *testing.T) {
	log := paramserver.NewMemLog()
	core, logs := observer.New(zapcore.InfoLevel)
	var rb rolledBack
	r := newRigWrapped(t, 1, 0, false, log, nil, nil, nil, zap.New(core), func(_ *coordinator.Config, h *coordinator.Hooks) {
		h.RolledBack = rb.hook
	})
	for s := int64(0); s < 6; s++ {
		r.step(s, 0)
	}
	waitFor(t, "the checkpoint of step 6", func() bool { return r.c.Status().LastCheckpoint == 6 })
	before := r.c.Status()
	if before.LastCheckpoint != 6 || before.LRScale != 1 || before.Rollbacks != 0 {
		t.Fatalf("before the rollback: %+v", before)
	}
	if err := r.c.RequestRollback(2, 0.5, "robust accuracy collapsed"); err != nil {
		t.Fatal(err)
	}
	st := waitRolledBack(t, r.c, 6, before.Generation)
	if st.Step != 2 || st.Generation != before.Generation+1 || st.LRScale != 0.5 || st.Rollbacks != 1 || st.LastCheckpoint != 2 {
		t.Fatalf("after the rollback %+v, want step 2, generation %d, scale 0.5, 1 rollback, checkpoint 2", st, before.Generation+1)
	}
	ctx := context.Background()
	for k, s := range r.shards {
		// SGD, lr 0.5, gradient 1 per step: two steps from 1.
		p, _, err := s.S.Pull(ctx, 2)
		if err != nil {
			t.Fatalf("shard %d: %v", k, err)
		}
		if want := float32(1) - 2*0.5; p[0] != want {
			t.Errorf("shard %d after the rollback: %v, want %v (its state at step 2)", k, p[0], want)
		}
	}
	if es := entries(t, log); len(es) != 2 {
		t.Fatalf("log after the rollback %+v, want steps 0 and 1", es)
	}
	r.step(2, 0)
	r.step(3, 0)
	es := entries(t, log)
	var scales []float64
	for _, e := range es {
		scales = append(scales, e.LRScale)
	}
	if !slices.Equal(scales, []float64{0, 0, 0.5, 0.5}) {
		t.Errorf("logged scales %v, want [0 0 0.5 0.5]", scales)
	}
	p, _, _ := r.shards[0].S.Pull(ctx, 4)
	if want := float32(1 - 2*0.5 - 2*0.25); p[0] != want {
		t.Errorf("after two scaled steps: %v, want %v (lr 0.5 × 0.5)", p[0], want)
	}
	rb.mu.Lock()
	if !slices.Equal(rb.to, []int64{2}) || !slices.Equal(rb.scale, []float64{0.5}) || !slices.Equal(rb.calls, []string{"robust accuracy collapsed"}) {
		t.Errorf("RolledBack hook heard %v %v %v", rb.to, rb.scale, rb.calls)
	}
	rb.mu.Unlock()
	done := logs.FilterMessage("rolled back on request").All()
	if len(done) != 1 || done[0].ContextMap()["reason"] != "robust accuracy collapsed" || done[0].ContextMap()["to_step"] != int64(2) {
		t.Errorf("log lines %+v, want one naming the reason and step 2", done)
	}

	// A restarted coordinator goes on with the log's scale, or with the
	// one its wiring gives it.
	r.stop()
	r2 := newRig(t, 1, 0, false, log, r.shards, r.ckpts)
	if got := r2.c.Status().LRScale; got != 0.5 {
		t.Errorf("restarted coordinator's scale %v, want the log's 0.5", got)
	}
	r2.stop()
	r3 := newRig(t, 1, 0, false, log, r.shards, r.ckpts, func(c *coordinator.Config, _ *coordinator.Hooks) { c.LRScale = 0.25 })
	r3.step(4, 0)
	if es := entries(t, log); es[len(es)-1].LRScale != 0.25 {
		t.Errorf("step 4 logged with scale %v, want the configured 0.25", es[len(es)-1].LRScale)
	}
}

// TestRequestRollbackRefusals: the arguments RequestRollback refuses.
func TestRequestRollbackRefusals(t *testing.T) {
	r := newRig(t, 1, 0, false, paramserver.NewMemLog(), nil, nil, func(c *coordinator.Config, _ *coordinator.Hooks) { c.Steps = 3 })
	r.step(0, 0)
	for _, tc := range []struct {
		to    int64
		scale float64
	}{{-1, 0.5}, {2, 0.5}, {0, 0}, {0, -1}, {0, math.NaN()}, {0, math.Inf(1)}} {
		if err := r.c.RequestRollback(tc.to, tc.scale, "test"); err == nil {
			t.Errorf("RequestRollback(%d, %v): no error", tc.to, tc.scale)
		}
	}
	r.step(1, 0)
	r.step(2, 0)
	if err := r.c.RequestRollback(0, 0.5, "test"); err == nil {
		t.Error("RequestRollback after the last step: no error")
	}
	if st := r.c.Status(); st.Rollbacks != 0 || st.LRScale != 1 {
		t.Errorf("refused requests changed the state: %+v", st)
	}
}

// TestRequestRollbackTargetIsKeptFromPruning: shards that keep 2 states
// keep the one KeepCheckpoint names too, so a rollback to it succeeds after
// many checkpoints; the ones not named are pruned.
func TestRequestRollbackTargetIsKeptFromPruning(t *testing.T) {
	var shards []*paramserver.Local
	for k := 0; k < 2; k++ {
		store, err := paramserver.NewFileStore(t.TempDir(), 2)
		if err != nil {
			t.Fatal(err)
		}
		oc, _ := optim.DefaultConfig("sgd")
		sc := paramserver.ShardConfig{Index: k, Lo: 3 * k, Hi: 3*k + 3, Workers: 1, Optim: oc, Schedule: "constant", LR: 0.5}
		s, err := paramserver.NewLocal(sc, []float32{1, 2, 3}, store)
		if err != nil {
			t.Fatal(err)
		}
		shards = append(shards, s)
	}
	r := newRig(t, 1, 0, false, paramserver.NewMemLog(), shards, nil)
	r.step(0, 0)
	r.step(1, 0)                     // checkpoint 2
	r.c.KeepCheckpoint(2)            // the sentinel found step 2 good
	for s := int64(2); s < 10; s++ { // checkpoints 4, 6, 8, 10
		r.step(s, 0)
	}
	waitFor(t, "the checkpoint of step 10", func() bool { return r.c.Status().LastCheckpoint == 10 })
	for k, s := range shards {
		held, err := s.Held(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(held, []int64{10, 8, 2}) {
			t.Fatalf("shard %d holds %v, want [10 8 2]: the 2 newest and the kept 2", k, held)
		}
	}
	gen := r.c.Status().Generation
	if err := r.c.RequestRollback(2, 0.5, "gap opened"); err != nil {
		t.Fatal(err)
	}
	if st := waitRolledBack(t, r.c, 10, gen); st.Step != 2 || st.LRScale != 0.5 {
		t.Fatalf("after the rollback %+v, want step 2 with scale 0.5", st)
	}
}

// TestRequestRollbackToAStepNotHeldGoesFurther: when the coordinator lost
// the requested checkpoint, the rollback goes to the newest step before it
// that every shard and the coordinator hold.
func TestRequestRollbackToAStepNotHeldGoesFurther(t *testing.T) {
	ckpts := &checkpoint.MemRecord{Lost: map[int64]bool{4: true}}
	r := newRig(t, 1, 0, false, paramserver.NewMemLog(), nil, ckpts)
	for s := int64(0); s < 6; s++ {
		r.step(s, 0)
	}
	waitFor(t, "the checkpoint of step 6", func() bool { return r.c.Status().LastCheckpoint == 6 })
	gen := r.c.Status().Generation
	if err := r.c.RequestRollback(4, 0.5, "test"); err != nil {
		t.Fatal(err)
	}
	if st := waitRolledBack(t, r.c, 6, gen); st.Step != 2 || st.LRScale != 0.5 {
		t.Fatalf("after the rollback %+v, want step 2 (4 is lost) with scale 0.5", st)
	}
}
