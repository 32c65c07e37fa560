package worker_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/worker"
)

// guard bounds the wait for an event that a correct worker makes happen
// promptly (a push during the backward pass, a pull ahead): it only turns a
// hang into a failure, it measures nothing.
const guard = 30 * time.Second

// fakeShard is an in-memory shard with the real one's version rules: Pull
// long-polls until the shard reaches the step (stale below), Push is taken
// only for the current version, a call whose context is done fails at
// once (so a worker cannot finish its run after its deadline). It records
// every call.
type fakeShard struct {
	mu      sync.Mutex
	k       int
	version int64
	params  []float32
	bufs    []float32
	changed chan struct{} // closed and replaced when the version changes
	notify  chan struct{} // closed and replaced when a pull starts waiting
	pulls   map[int64]int // Pull calls per step
	waiting map[int64]int // Pulls waiting, per step
	gaveUp  int           // Pulls that ended by their context while waiting
	pushes  []pushRec
	onPush  func(k int, step int64)
}

type pushRec struct {
	step       int64
	grad, bufs []float32
}

func newFakeShard(k int, params, bufs []float32) *fakeShard {
	return &fakeShard{k: k, params: params, bufs: bufs, changed: make(chan struct{}), notify: make(chan struct{}),
		pulls: map[int64]int{}, waiting: map[int64]int{}}
}

func (s *fakeShard) Pull(ctx context.Context, step int64) ([]float32, []float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pulls[step]++
	for {
		switch {
		case step < s.version:
			return nil, nil, fmt.Errorf("shard %d at %d: %w", s.k, s.version, paramserver.ErrStale)
		case step == s.version:
			return slices.Clone(s.params), slices.Clone(s.bufs), nil
		}
		ch := s.changed
		s.waiting[step]++
		close(s.notify)
		s.notify = make(chan struct{})
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
			s.waiting[step]--
		case <-ctx.Done():
			s.mu.Lock()
			s.waiting[step]--
			s.gaveUp++
			return nil, nil, ctx.Err()
		}
	}
}

func (s *fakeShard) Push(ctx context.Context, step int64, _ int, grad, bufs []float32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if step != s.version {
		s.mu.Unlock()
		return fmt.Errorf("shard %d at %d: push of %d: %w", s.k, s.version, step, paramserver.ErrStale)
	}
	s.pushes = append(s.pushes, pushRec{step, slices.Clone(grad), slices.Clone(bufs)})
	on := s.onPush
	s.mu.Unlock()
	if on != nil {
		on(s.k, step)
	}
	return nil
}

// set moves the shard to version v with the given parameters (an Apply or
// a Restore) and wakes the waiting pulls.
func (s *fakeShard) set(v int64, params []float32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version, s.params = v, slices.Clone(params)
	close(s.changed)
	s.changed = make(chan struct{})
}

// awaitPull waits until a Pull of step is waiting on the shard.
func (s *fakeShard) awaitPull(t *testing.T, step int64) {
	t.Helper()
	timer := time.NewTimer(guard)
	defer timer.Stop()
	for {
		s.mu.Lock()
		n, ch := s.waiting[step], s.notify
		s.mu.Unlock()
		if n > 0 {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Errorf("shard %d: no pull of step %d was waiting before the step was decided", s.k, step)
			return
		}
	}
}

// fakeCoord is a coordinator whose decisions the test makes: onReport
// runs after each report is taken, and set moves the step or generation.
type fakeCoord struct {
	mu       sync.Mutex
	step     int64
	gen      int64
	steps    int64
	changed  chan struct{}
	onReport func(step int64)
}

func newFakeCoord(steps, gen int64) *fakeCoord {
	return &fakeCoord{steps: steps, gen: gen, changed: make(chan struct{})}
}

func (c *fakeCoord) state() worker.StepState {
	return worker.StepState{Step: c.step, Generation: c.gen, Done: c.step >= c.steps}
}

// Report answers with the state the report found; what the coordinator
// does about it (onReport) comes after, as with the real one.
func (c *fakeCoord) Report(ctx context.Context, step int64, _ int, _ objective.Terms, _ worker.Timing) (bool, worker.StepState, error) {
	if err := ctx.Err(); err != nil {
		return false, worker.StepState{}, err
	}
	c.mu.Lock()
	st := c.state()
	c.mu.Unlock()
	if c.onReport != nil {
		c.onReport(step)
	}
	return true, st, nil
}

func (c *fakeCoord) WaitStep(ctx context.Context, step, gen int64) (worker.StepState, error) {
	if err := ctx.Err(); err != nil {
		return worker.StepState{}, err
	}
	for {
		c.mu.Lock()
		if c.step != step || c.gen != gen || c.step >= c.steps {
			st := c.state()
			c.mu.Unlock()
			return st, nil
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.state(), ctx.Err()
		}
	}
}

func (c *fakeCoord) set(step, gen int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.step, c.gen = step, gen
	close(c.changed)
	c.changed = make(chan struct{})
}

// fakeComputer's gradient is 2·θ + step, element by element, handed out
// from the top of the vector down in the given chunks; buffers become
// step. It records the parameters each Gradient started from; before, when
// set, runs at the start of each Gradient, and between(lo), when set,
// after each ready(lo) but the last.
type fakeComputer struct {
	np, nb  int
	chunks  []int // the ready offsets, decreasing, ending at 0
	loaded  []float32
	calls   []gradCall
	before  func(step int64)
	between func(lo int)
}

type gradCall struct {
	step   int64
	params []float32
}

func (c *fakeComputer) Sizes() (int, int) { return c.np, c.nb }

func (c *fakeComputer) Load(params, _ []float32) { c.loaded = slices.Clone(params) }

func (c *fakeComputer) Gradient(step int64, _, _ int, grad, bufs []float32, ready func(lo int)) (objective.Terms, worker.Timing, error) {
	c.calls = append(c.calls, gradCall{step, slices.Clone(c.loaded)})
	if c.before != nil {
		c.before(step)
	}
	for i := range bufs {
		bufs[i] = float32(step)
	}
	hi := c.np
	for _, lo := range c.chunks {
		for i := lo; i < hi; i++ {
			grad[i] = 2*c.loaded[i] + float32(step)
		}
		ready(lo)
		if lo > 0 && c.between != nil {
			c.between(lo)
		}
		hi = lo
	}
	return objective.Terms{Loss: 1}, worker.Timing{}, nil
}

// wantGrad is fakeComputer's gradient of params at step.
func wantGrad(params []float32, step int64) []float32 {
	out := make([]float32, len(params))
	for i, p := range params {
		out[i] = 2*p + float32(step)
	}
	return out
}

// paramsAt are the parameters the tests' shards hold at version v of
// generation gen: distinct per version and generation.
func paramsAt(v, gen int64, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(1000*gen + 10*v + int64(i))
	}
	return out
}

// fixture is one worker (slot 0 of 1) with its fake shards, coordinator and
// computer; ranges[k] is shard k's part of the 12 parameters and 3 buffers.
type fixture struct {
	shards []*fakeShard
	ranges []worker.Range
	coord  *fakeCoord
	comp   *fakeComputer
	w      *worker.Worker
}

func newFixture(t *testing.T, steps int64, ranges []worker.Range) *fixture {
	t.Helper()
	f := &fixture{ranges: ranges, coord: newFakeCoord(steps, 1), comp: &fakeComputer{np: 12, nb: 3, chunks: []int{8, 4, 0}}}
	f.setAll(0, 1)
	var ws []worker.Shard
	for k, r := range ranges {
		s := newFakeShard(k, paramsAt(0, 1, 12)[r.Lo:r.Hi], make([]float32, r.BufHi-r.BufLo))
		f.shards = append(f.shards, s)
		ws = append(ws, s)
	}
	w, err := worker.New(worker.Config{Slot: 0, Workers: 1, Steps: steps, PullTimeout: time.Hour}, f.comp, ws, ranges, f.coord, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Sleep = func(context.Context, time.Duration) error { return nil }
	f.w = w
	return f
}

// setAll moves every shard to version v of generation gen.
func (f *fixture) setAll(v, gen int64) {
	for k, s := range f.shards {
		r := f.ranges[k]
		s.set(v, paramsAt(v, gen, 12)[r.Lo:r.Hi])
	}
}

// commit applies step t of generation gen on every shard, then advances
// the coordinator: the order of the real coordinator.
func (f *fixture) commit(t, gen int64) {
	f.setAll(t+1, gen)
	f.coord.set(t+1, gen)
}

func (f *fixture) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*guard)
	defer cancel()
	if err := f.w.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// pushesOf returns shard k's pushes of step.
func (f *fixture) pushesOf(k int, step int64) []pushRec {
	s := f.shards[k]
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []pushRec
	for _, p := range s.pushes {
		if p.step == step {
			out = append(out, p)
		}
	}
	return out
}

// checkPushed checks that each shard took exactly one push of step, the
// gradient of the parameters of (step, gen) restricted to its range.
func (f *fixture) checkPushed(t *testing.T, step, gen int64) {
	t.Helper()
	want := wantGrad(paramsAt(step, gen, 12), step)
	for k, r := range f.ranges {
		got := f.pushesOf(k, step)
		if len(got) != 1 {
			t.Errorf("shard %d took %d pushes of step %d, want 1", k, len(got), step)
			continue
		}
		if !slices.Equal(got[0].grad, want[r.Lo:r.Hi]) {
			t.Errorf("shard %d, step %d: pushed %v, want %v (the parameters of generation %d)", k, step, got[0].grad, want[r.Lo:r.Hi], gen)
		}
	}
}

// ranges3 lists three shards out of layer order: shard 0 holds the top of
// the vector, shard 1 the bottom.
var ranges3 = []worker.Range{{Lo: 8, Hi: 12, BufLo: 2, BufHi: 3}, {Lo: 0, Hi: 4, BufLo: 0, BufHi: 1}, {Lo: 4, Hi: 8, BufLo: 1, BufHi: 2}}

// TestPushesStartDuringTheBackwardPassInItsOrder: the computer hands out
// its gradient in three chunks from the top down and, after each but the
// last, waits until the shard whose range the chunk completed has its
// push — so a worker that pushed only after the gradient was complete
// would hang here. The pushes come in the backward pass's order (shard 0,
// 2, 1: descending ranges, whatever the shards' numbering), each with the
// final values of its range and the buffers.
func TestPushesStartDuringTheBackwardPassInItsOrder(t *testing.T) {
	f := newFixture(t, 1, ranges3)
	pushed := make(chan int, 3)
	var order []int
	var mu sync.Mutex
	for _, s := range f.shards {
		s.onPush = func(k int, _ int64) {
			mu.Lock()
			order = append(order, k)
			mu.Unlock()
			pushed <- k
		}
	}
	byLo := map[int]int{8: 0, 4: 2}
	f.comp.between = func(lo int) {
		want := byLo[lo]
		select {
		case k := <-pushed:
			if k != want {
				t.Errorf("after ready(%d) shard %d was pushed, want shard %d", lo, k, want)
			}
		case <-time.After(guard):
			t.Errorf("after ready(%d), shard %d's push did not start while the backward pass was running", lo, want)
		}
	}
	f.coord.onReport = func(step int64) { f.commit(step, 1) }
	f.run(t)
	if !slices.Equal(order, []int{0, 2, 1}) {
		t.Fatalf("pushes in the order %v, want [0 2 1]", order)
	}
	f.checkPushed(t, 0, 1)
	for k, r := range f.ranges {
		if got := f.pushesOf(k, 0)[0].bufs; len(got) != r.BufHi-r.BufLo || got[0] != 0 {
			t.Errorf("shard %d: pushed buffers %v, want [0]", k, got)
		}
	}
}

// TestPrefetchedPullsAreUsed: the coordinator decides each step only once
// every shard has a pull of the next step waiting (a worker that pulled
// only after the coordinator's word would fail the wait), and the worker
// then computes from those slices without pulling again: one Pull per
// shard and step, each gradient from the parameters of its version.
func TestPrefetchedPullsAreUsed(t *testing.T) {
	const steps = 4
	f := newFixture(t, steps, ranges3)
	f.coord.onReport = func(step int64) {
		if step+1 < steps {
			for _, s := range f.shards {
				s.awaitPull(t, step+1)
			}
		}
		f.commit(step, 1)
	}
	f.run(t)
	for k, s := range f.shards {
		for v := int64(0); v < steps; v++ {
			if n := s.pulls[v]; n != 1 {
				t.Errorf("shard %d: %d pulls of step %d, want 1", k, n, v)
			}
		}
	}
	if len(f.comp.calls) != steps {
		t.Fatalf("%d gradients for %d steps", len(f.comp.calls), steps)
	}
	for v, c := range f.comp.calls {
		if c.step != int64(v) || !slices.Equal(c.params, paramsAt(int64(v), 1, 12)) {
			t.Errorf("gradient %d: step %d from %v, want step %d from the parameters of version %d", v, c.step, c.params, v, v)
		}
		f.checkPushed(t, int64(v), 1)
	}
}

// TestRollbackDiscardsThePullsAhead: while the worker's pulls of step 1 are
// waiting, the coordinator rolls back to step 0 in generation 2 with other
// parameters. The pulls ahead are given up, and step 0 is computed again
// from generation 2's parameters and pushed again.
func TestRollbackDiscardsThePullsAhead(t *testing.T) {
	const steps = 3
	f := newFixture(t, steps, ranges3)
	rolledBack := false
	f.coord.onReport = func(step int64) {
		if !rolledBack {
			rolledBack = true
			for _, s := range f.shards {
				s.awaitPull(t, 1)
			}
			f.setAll(0, 2) // Restore to step 0, then the new generation
			f.coord.set(0, 2)
			return
		}
		f.commit(step, 2)
	}
	f.run(t)
	var got []string
	for _, c := range f.comp.calls {
		got = append(got, fmt.Sprint(c.step, c.params[0]))
	}
	want := []string{"0 1000", "0 2000", "1 2010", "2 2020"} // (step, first parameter: 1000·generation + 10·version)
	if !slices.Equal(got, want) {
		t.Fatalf("gradients (step, θ₀) %v, want %v", got, want)
	}
	for k, s := range f.shards {
		if s.gaveUp == 0 {
			t.Errorf("shard %d: the pull ahead of step 1 was not given up", k)
		}
		if p := f.pushesOf(k, 0); len(p) != 2 || !slices.Equal(p[1].grad, wantGrad(paramsAt(0, 2, 12), 0)[f.ranges[k].Lo:f.ranges[k].Hi]) {
			t.Errorf("shard %d: pushes of step 0 %v: want generation 1's, then generation 2's gradient", k, p)
		}
	}
	f.checkPushed(t, 1, 2)
	f.checkPushed(t, 2, 2)
}

// TestConfirmationDropsAGradientOfAnotherGeneration: the shards apply step
// 0 and the worker, its pulls of step 1 answered, computes step 1 at once;
// while it does, before the coordinator has said step 1, generation 2
// begins at step 1 with other parameters (a rollback that found the
// shards at step 1). The gradient computed from generation 1's slices is
// never pushed: the confirmation says (1, 2), the slices are pulled again,
// and step 1 is computed and pushed from generation 2's parameters only.
func TestConfirmationDropsAGradientOfAnotherGeneration(t *testing.T) {
	const steps = 3
	f := newFixture(t, steps, ranges3)
	f.coord.onReport = func(step int64) {
		if step == 0 {
			f.setAll(1, 1) // applied on the shards; the coordinator has not moved on
			return
		}
		f.commit(step, 2)
	}
	bumped := false
	f.comp.before = func(step int64) {
		if step == 1 && !bumped {
			bumped = true
			f.setAll(1, 2)
			f.coord.set(1, 2)
		}
	}
	f.run(t)
	var got []string
	for _, c := range f.comp.calls {
		got = append(got, fmt.Sprint(c.step, c.params[0]))
	}
	want := []string{"0 1000", "1 1010", "1 2010", "2 2020"}
	if !slices.Equal(got, want) {
		t.Fatalf("gradients (step, θ₀) %v, want %v", got, want)
	}
	for k, s := range f.shards {
		if n := s.pulls[1]; n != 2 {
			t.Errorf("shard %d: %d pulls of step 1, want 2 (ahead, then again in generation 2)", k, n)
		}
	}
	f.checkPushed(t, 0, 1)
	f.checkPushed(t, 1, 2)
	f.checkPushed(t, 2, 2)
}
