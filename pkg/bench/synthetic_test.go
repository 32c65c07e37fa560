package bench

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told: by Sleep, and by step on
// every Now (the cost of the host work between two readings).
type fakeClock struct {
	t     time.Time
	step  time.Duration
	slept []time.Duration
}

func (c *fakeClock) now() time.Time {
	c.t = c.t.Add(c.step)
	return c.t
}

func (c *fakeClock) sleep(d time.Duration) {
	c.slept = append(c.slept, d)
	c.t = c.t.Add(d)
}

func newTestSynthetic(t *testing.T, cfg SyntheticConfig, np, nb int) (*Synthetic, *fakeClock) {
	t.Helper()
	s, err := NewSynthetic(cfg, np, nb)
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Unix(1000, 0)}
	s.Now, s.Sleep = clk.now, clk.sleep
	params := make([]float32, np)
	for i := range params {
		params[i] = float32(i%7) - 3
	}
	bufs := make([]float32, nb)
	for i := range bufs {
		bufs[i] = float32(i) + 0.5
	}
	s.Load(params, bufs)
	return s, clk
}

func TestSyntheticIsDeterministicAndSized(t *testing.T) {
	cfg := DefaultSyntheticConfig(20 * time.Millisecond)
	a, _ := newTestSynthetic(t, cfg, 1001, 3)
	b, _ := newTestSynthetic(t, cfg, 1001, 3)
	if np, nb := a.Sizes(); np != 1001 || nb != 3 {
		t.Fatalf("Sizes = %d, %d, want 1001, 3", np, nb)
	}
	grad := func(s *Synthetic, step int64, slot int) ([]float32, []float32, float64) {
		g, o := make([]float32, 1001), make([]float32, 3)
		terms, _, err := s.Gradient(step, slot, 4, g, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		return g, o, terms.Loss
	}
	g1, o1, l1 := grad(a, 7, 2)
	g2, o2, l2 := grad(b, 7, 2)
	if !slices.Equal(g1, g2) || !slices.Equal(o1, o2) || l1 != l2 {
		t.Fatal("two computers of one configuration differ on the same (step, slot)")
	}
	g3, _, _ := grad(a, 7, 2)
	if !slices.Equal(g1, g3) {
		t.Fatal("a recomputed gradient differs")
	}
	if !slices.Equal(o1, []float32{0.5, 1.5, 2.5}) {
		t.Fatalf("buffers after the step = %v, want the loaded ones", o1)
	}
	gs, _, _ := grad(a, 7, 3)
	gt, _, _ := grad(a, 8, 2)
	if slices.Equal(g1, gs) || slices.Equal(g1, gt) {
		t.Fatal("another slot or step gave the same gradient")
	}
	var nonzero int
	for i, x := range g1 {
		if math.IsNaN(float64(x)) || math.Abs(float64(x)) >= 2*cfg.Scale {
			t.Fatalf("grad[%d] = %v, want finite and below 2·Scale", i, x)
		}
		if x != 0 {
			nonzero++
		}
	}
	if nonzero < 990 {
		t.Fatalf("only %d of 1001 elements are non-zero", nonzero)
	}
	// The loss is the linear objective's value c·⟨v, θ⟩.
	c := float64(a.Factor(7, 2))
	if want := c * dot(a.dir, a.params); l1 != want || math.IsNaN(l1) {
		t.Fatalf("loss %v, want c·⟨v, θ⟩ = %v", l1, want)
	}
	other, err := NewSynthetic(SyntheticConfig{Compute: 0, Backward: 0, Slices: 1, Scale: 1e-6, Seed: 2}, 1001, 3)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(other.dir, a.dir) {
		t.Fatal("another seed drew the same direction")
	}
}

func TestSyntheticReadyContractAndTimeline(t *testing.T) {
	cfg := DefaultSyntheticConfig(30 * time.Millisecond)
	cfg.Backward, cfg.Slices = 0.5, 3
	const n = 100
	s, clk := newTestSynthetic(t, cfg, n, 2)
	t0 := clk.t
	grad := make([]float32, n)
	for i := range grad {
		grad[i] = float32(math.NaN()) // stale contents must all be overwritten
	}
	bufs := make([]float32, 2)
	c := s.Factor(3, 1)
	var los []int
	var at []time.Duration
	ready := func(lo int) {
		if bufs[0] != 0.5 || bufs[1] != 1.5 {
			t.Fatalf("buffers not final at ready(%d): %v", lo, bufs)
		}
		for j := lo; j < n; j++ {
			if grad[j] != c*s.dir[j] {
				t.Fatalf("ready(%d): grad[%d] = %v not final", lo, j, grad[j])
			}
		}
		los = append(los, lo)
		at = append(at, clk.t.Sub(t0))
	}
	_, timing, err := s.Gradient(3, 1, 2, grad, bufs, ready)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{66, 33, 0}; !slices.Equal(los, want) {
		t.Fatalf("ready calls %v, want %v (from the top down, the last at 0)", los, want)
	}
	if want := []time.Duration{20 * time.Millisecond, 25 * time.Millisecond, 30 * time.Millisecond}; !slices.Equal(at, want) {
		t.Fatalf("ready at %v, want %v", at, want)
	}
	var slept time.Duration
	for _, d := range clk.slept {
		slept += d
	}
	if slept != cfg.Compute || timing.Compute != cfg.Compute || timing.Attack != 0 {
		t.Fatalf("slept %v, timing %+v; want the compute time %v, all of it Compute", slept, timing, cfg.Compute)
	}
}

// TestSyntheticHostWorkFitsInThePhase: time spent between the clock's
// readings (the host work) shortens the waits instead of lengthening the
// phase.
func TestSyntheticHostWorkFitsInThePhase(t *testing.T) {
	cfg := DefaultSyntheticConfig(40 * time.Millisecond)
	s, clk := newTestSynthetic(t, cfg, 64, 0)
	clk.step = time.Millisecond
	t0 := clk.t
	var end time.Duration
	_, _, err := s.Gradient(0, 0, 1, make([]float32, 64), nil, func(lo int) {
		if lo == 0 {
			end = clk.t.Sub(t0) - time.Millisecond // Gradient read its start one step after t0
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if end != cfg.Compute {
		t.Fatalf("the last ready came %v after the start, want %v", end, cfg.Compute)
	}
	var slept time.Duration
	for _, d := range clk.slept {
		slept += d
	}
	if slept >= cfg.Compute {
		t.Fatalf("slept %v in all: the host work did not count toward the %v phase", slept, cfg.Compute)
	}
}

func TestSyntheticRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		cfg    SyntheticConfig
		np, nb int
		want   string
	}{
		{SyntheticConfig{Compute: -time.Millisecond, Backward: 0.3, Slices: 1, Scale: 1e-6}, 10, 0, "compute time must be ≥ 0"},
		{SyntheticConfig{Backward: 1.5, Slices: 1, Scale: 1e-6}, 10, 0, "backward fraction"},
		{SyntheticConfig{Backward: math.NaN(), Slices: 1, Scale: 1e-6}, 10, 0, "backward fraction"},
		{SyntheticConfig{Backward: 0.3, Slices: 0, Scale: 1e-6}, 10, 0, "slices"},
		{SyntheticConfig{Backward: 0.3, Slices: 1, Scale: 0}, 10, 0, "scale"},
		{SyntheticConfig{Backward: 0.3, Slices: 1, Scale: math.Inf(1)}, 10, 0, "scale"},
		{DefaultSyntheticConfig(0), 0, 0, "at least 1 parameter"},
	} {
		if _, err := NewSynthetic(tc.cfg, tc.np, tc.nb); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewSynthetic(%+v, %d, %d) = %v, want an error about %q", tc.cfg, tc.np, tc.nb, err, tc.want)
		}
	}
	s, err := NewSynthetic(DefaultSyntheticConfig(0), 10, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Gradient(0, 0, 1, make([]float32, 10), make([]float32, 2), nil); err == nil || !strings.Contains(err.Error(), "before parameters were loaded") {
		t.Errorf("Gradient before Load = %v, want an error", err)
	}
	s.Load(make([]float32, 10), make([]float32, 2))
	if _, _, err := s.Gradient(0, 0, 1, make([]float32, 9), make([]float32, 2), nil); err == nil || !strings.Contains(err.Error(), "gradient of 9") {
		t.Errorf("Gradient into a short vector = %v, want an error", err)
	}
}

// BenchmarkSyntheticHostWork times the host work of one Gradient at
// madry-mnist's size with no compute phase: the dot product of the loss and
// the scaled copy into the gradient, which a compute phase must fit.
func BenchmarkSyntheticHostWork(b *testing.B) {
	const np = 3274634
	s, err := NewSynthetic(DefaultSyntheticConfig(0), np, 0)
	if err != nil {
		b.Fatal(err)
	}
	s.Load(make([]float32, np), nil)
	grad := make([]float32, np)
	b.SetBytes(2 * 4 * np)
	for i := 0; b.Loop(); i++ {
		if _, _, err := s.Gradient(int64(i), 0, 1, grad, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
