package coordinator_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/paramserver"
)

// faultyShard is a shard the coordinator reaches through a switch: while
// down, every call fails as an unreachable peer's would. It counts the
// calls that matter to the tests.
type faultyShard struct {
	coordinator.ShardClient
	down     atomic.Bool
	restores atomic.Int64
	helds    atomic.Int64
}

var errUnreachable = errors.New("connection refused")

func (f *faultyShard) Apply(ctx context.Context, step int64, w []int, lrScale float64) error {
	if f.down.Load() {
		return errUnreachable
	}
	return f.ShardClient.Apply(ctx, step, w, lrScale)
}

func (f *faultyShard) Version(ctx context.Context) (int64, error) {
	if f.down.Load() {
		return 0, errUnreachable
	}
	return f.ShardClient.Version(ctx)
}

func (f *faultyShard) Restore(ctx context.Context, step int64) error {
	f.restores.Add(1)
	if f.down.Load() {
		return errUnreachable
	}
	return f.ShardClient.Restore(ctx, step)
}

func (f *faultyShard) Held(ctx context.Context) ([]int64, error) {
	f.helds.Add(1)
	if f.down.Load() {
		return nil, errUnreachable
	}
	return f.ShardClient.Held(ctx)
}

// faultyRig is a rig whose shards are faultyShards, probed every 5 ms.
func faultyRig(t *testing.T, workers, backups int, ckpts *checkpoint.MemRecord, opts ...func(*coordinator.Config, *coordinator.Hooks)) (*rig, []*faultyShard) {
	var fs []*faultyShard
	wrap := func(k int, s coordinator.ShardClient) coordinator.ShardClient {
		f := &faultyShard{ShardClient: s}
		fs = append(fs, f)
		return f
	}
	opts = append([]func(*coordinator.Config, *coordinator.Hooks){func(c *coordinator.Config, _ *coordinator.Hooks) {
		c.ProbeEvery, c.ProbeTimeout = 5*time.Millisecond, time.Second
	}}, opts...)
	return newRigWrapped(t, workers, backups, false, paramserver.NewMemLog(), nil, ckpts, wrap, nil, opts...), fs
}

// waitFor polls cond (the coordinator's state changes asynchronously); the
// deadline only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(time.Millisecond):
		}
	}
}

// restartEmpty makes shard k of r look restarted with nothing in memory:
// back at its initial state (its store keeps what it saved).
func restartEmpty(t *testing.T, r *rig, k int) {
	t.Helper()
	init, ok, err := r.shards[k].Store.LoadStep(k, 0)
	if err != nil || !ok {
		t.Fatalf("shard %d has no initial state: %v", k, err)
	}
	if err := r.shards[k].S.Restore(init); err != nil {
		t.Fatal(err)
	}
}

func TestADeadShardPausesTheClusterWithItsReason(t *testing.T) {
	var mu sync.Mutex
	heard := map[int]error{}
	r, fs := faultyRig(t, 2, 0, nil, func(_ *coordinator.Config, h *coordinator.Hooks) {
		h.ShardReachable = func(k int, err error) { mu.Lock(); heard[k] = err; mu.Unlock() }
	})
	r.step(0, 0, 1)
	fs[1].down.Store(true)
	waitFor(t, "the pause", func() bool { return r.c.Status().Paused })
	st := r.c.Status()
	if !strings.Contains(st.Reason, "shard 1 unreachable") || !strings.Contains(st.Reason, "connection refused") {
		t.Fatalf("reason %q, want shard 1 unreachable and its error", st.Reason)
	}
	if len(st.Unreachable) != 1 || st.Unreachable[0] != 1 {
		t.Fatalf("unreachable %v, want [1]", st.Unreachable)
	}
	mu.Lock()
	if err, ok := heard[1]; !ok || err == nil {
		t.Fatalf("ShardReachable hook: %v %v, want shard 1's error", ok, err)
	}
	mu.Unlock()
	fs[1].down.Store(false)
	waitFor(t, "the end of the pause", func() bool { return !r.c.Status().Paused })
	if st := r.c.Status(); len(st.Unreachable) != 0 || st.Step != 1 || st.Generation != 0 {
		t.Fatalf("after the shard came back: %+v, want step 1, generation 0, none unreachable", st)
	}
	mu.Lock()
	if err, ok := heard[1]; !ok || err != nil {
		t.Fatalf("ShardReachable hook after the return: %v %v, want nil", ok, err)
	}
	mu.Unlock()
	r.step(1, 0, 1)
}

func TestRollbackGoesToTheNewestStepEveryShardHolds(t *testing.T) {
	r, fs := faultyRig(t, 2, 1, nil)
	for s := int64(0); s < 5; s++ {
		r.step(s, 0, 1)
	}
	if st := r.c.Status(); st.LastCheckpoint != 4 {
		t.Fatalf("last checkpoint %d, want 4", st.LastCheckpoint)
	}
	// Shard 1 restarts; its state file of step 4 is gone.
	r.shards[1].Store.(*paramserver.MemStepStore).Drop(1, 4)
	restartEmpty(t, r, 1)
	r.c.ShardRestarted(1)
	waitFor(t, "the rollback", func() bool { return r.c.Status().Generation == 1 })
	st := r.c.Status()
	if st.Step != 2 || st.LastCheckpoint != 2 || st.Paused {
		t.Fatalf("after the rollback %+v, want step 2, checkpoint 2, not paused", st)
	}
	if s, _, _ := r.ckpts.LastCheckpoint(); s != 2 {
		t.Fatalf("checkpoint record at %d, want 2", s)
	}
	if es := entries(t, r.log); len(es) != 2 {
		t.Fatalf("log %+v, want steps 0 and 1", es)
	}
	for s := int64(2); s < 6; s++ {
		r.step(s, 1, 0)
	}
	if n := fs[0].helds.Load(); n != 1 {
		t.Fatalf("shard 0 asked %d times what it holds, want once", n)
	}
}

func TestRollbackSkipsWhatTheCoordinatorLost(t *testing.T) {
	ckpts := &checkpoint.MemRecord{}
	r, _ := faultyRig(t, 2, 1, ckpts)
	for s := int64(0); s < 5; s++ {
		r.step(s, 0, 1)
	}
	ckpts.Lost = map[int64]bool{4: true} // the coordinator's model file of step 4 is damaged
	restartEmpty(t, r, 1)
	r.c.ShardRestarted(1)
	waitFor(t, "the rollback", func() bool { return r.c.Status().Generation == 1 })
	if st := r.c.Status(); st.Step != 2 {
		t.Fatalf("rolled back to %d, want 2 (the coordinator does not hold 4)", st.Step)
	}
}

func TestNoCommonStepStopsWithWhatIsMissingWhere(t *testing.T) {
	r, fs := faultyRig(t, 2, 1, nil)
	for s := int64(0); s < 5; s++ {
		r.step(s, 0, 1)
	}
	s0 := r.shards[0].Store.(*paramserver.MemStepStore)
	s0.Drop(0, 0)
	s0.Drop(0, 2)
	r.shards[1].Store.(*paramserver.MemStepStore).Drop(1, 4)
	restartEmpty(t, r, 1)
	r.c.ShardRestarted(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var err error
	select {
	case err = <-r.done:
		r.run = nil
	case <-ctx.Done():
		t.Fatal("the coordinator did not stop")
	}
	if !errors.Is(err, coordinator.ErrNoCommonStep) {
		t.Fatalf("Run returned %v, want ErrNoCommonStep", err)
	}
	for _, want := range []string{"shard 0 holds [4]", "shard 1 holds [2 0]", "the coordinator holds steps [4 2 0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if n := fs[0].helds.Load() + fs[1].helds.Load(); n != 2 {
		t.Fatalf("%d Held calls, want 2 (one per shard: no retry loop)", n)
	}
	if n := fs[0].restores.Load(); n != 0 {
		t.Fatalf("%d restores without a common step", n)
	}
	if st := r.c.Status(); !st.Paused || !strings.Contains(st.Reason, "no step that every shard") {
		t.Fatalf("status %+v, want paused with the reason", st)
	}
}

func TestAShardThatLostThePushesRedoesTheStepWithoutRollback(t *testing.T) {
	r, fs := faultyRig(t, 2, 0, nil)
	r.step(0, 0, 1)
	// Both workers push step 1 and worker 0 reports; then shard 1 restarts
	// at version 1 (its newest file) without the buffered pushes.
	for _, w := range []int{0, 1} {
		for _, s := range r.shards {
			if err := s.S.Push(1, w, []float32{float32(w + 1), float32(w + 1), float32(w + 1)}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, _, _, err := r.c.Report(1, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.shards[1].S.Restore(r.shards[1].S.Checkpoint()); err != nil { // drops the buffered pushes
		t.Fatal(err)
	}
	gen := r.c.Status().Generation
	r.c.ShardRestarted(1)
	waitFor(t, "the new generation", func() bool { return r.c.Status().Generation == gen+1 })
	if st := r.c.Status(); st.Step != 1 || st.Paused {
		t.Fatalf("after the redo %+v, want step 1, not paused", st)
	}
	if n := fs[0].restores.Load() + fs[1].restores.Load(); n != 0 {
		t.Fatalf("%d restores: the step should be redone, not rolled back", n)
	}
	r.step(1, 0, 1) // the workers push and report again
	if es := entries(t, r.log); len(es) != 2 || es[1].Step != 1 {
		t.Fatalf("log %+v, want one entry per step 0..1", es)
	}
}

// refusingShard lists a state as held that it then refuses to restore (a
// state saved under another partition, say).
type refusingShard struct{ coordinator.ShardClient }

func (r refusingShard) Restore(context.Context, int64) error {
	return &paramserver.Error{Op: "restore", Kind: paramserver.ErrRestore, Shard: 1, Worker: -1, Detail: "state of another range"}
}

func TestARollbackAShardKeepsRefusingStops(t *testing.T) {
	var fs *faultyShard
	wrap := func(k int, s coordinator.ShardClient) coordinator.ShardClient {
		if k == 1 {
			fs = &faultyShard{ShardClient: refusingShard{s}}
			return fs
		}
		return s
	}
	r := newRigWrapped(t, 2, 1, false, paramserver.NewMemLog(), nil, nil, wrap, nil)
	for s := int64(0); s < 3; s++ {
		r.step(s, 0, 1)
	}
	restartEmpty(t, r, 1)
	r.c.ShardRestarted(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	select {
	case err := <-r.done:
		r.run = nil
		if !errors.Is(err, coordinator.ErrNoCommonStep) || !strings.Contains(err.Error(), "refused to restore") {
			t.Fatalf("Run returned %v, want a stop naming the refused restore", err)
		}
	case <-ctx.Done():
		t.Fatal("the coordinator kept retrying a restore the shard refuses")
	}
	if n := fs.restores.Load(); n != 3 {
		t.Fatalf("%d restores, want 3", n)
	}
}

// A shard that dies while a step is being applied: the pause names it as
// unreachable (not just the failed Apply) for as long as it is down, and
// once it answers the logged Apply is re-sent to it.
func TestAShardLostDuringApplyIsNamedUntilItReturns(t *testing.T) {
	r, fs := faultyRig(t, 2, 0, nil)
	r.step(0, 0, 1)
	for _, w := range []int{0, 1} {
		for _, s := range r.shards {
			if err := s.S.Push(1, w, []float32{float32(w + 1), float32(w + 1), float32(w + 1)}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	fs[1].down.Store(true)
	for _, w := range []int{0, 1} {
		if _, _, _, err := r.c.Report(1, w); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the pause naming shard 1", func() bool {
		st := r.c.Status()
		return st.Paused && strings.Contains(st.Reason, "shard 1 unreachable")
	})
	time.Sleep(50 * time.Millisecond) // more recovery attempts: the reason must stay
	if st := r.c.Status(); !strings.Contains(st.Reason, "shard 1 unreachable") || len(st.Unreachable) != 1 {
		t.Fatalf("status %+v while shard 1 is down", st)
	}
	fs[1].down.Store(false)
	waitFor(t, "step 1 applied everywhere", func() bool { return r.c.Status().Step == 2 && !r.c.Status().Paused })
	if v := r.shards[1].S.Version(); v != 2 {
		t.Fatalf("shard 1 at version %d, want 2 (the logged Apply re-sent)", v)
	}
	if es := entries(t, r.log); len(es) != 2 {
		t.Fatalf("log %+v, want steps 0 and 1 once each", es)
	}
}
