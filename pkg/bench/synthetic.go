package bench

import (
	"fmt"
	"math"
	"time"

	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/worker"
)

// SyntheticConfig configures a Synthetic computer.
type SyntheticConfig struct {
	// Compute is the length of a step's compute phase: what a GPU would
	// take for the attack and the backward pass. Zero measures the
	// cluster's overhead alone.
	Compute time.Duration
	// Backward is the fraction of Compute, at its end, during which the
	// gradient becomes final slice by slice, from the top of the vector
	// down (the last layers' gradients are ready first), so a worker that
	// overlaps its push with the backward pass can start early. In [0, 1];
	// 0 makes the whole gradient final at the end.
	Backward float64
	// Slices is the number of slices the backward part finishes the
	// gradient in (each followed by a ready call); at least 1.
	Slices int
	// Scale bounds the gradient's elements: each is Scale·(1+u)·v_i with
	// v_i in [−1, 1) and u in [0, 1) drawn per (step, slot). The shards
	// apply the optimizer to it, so it is kept tiny. Positive and finite.
	Scale float64
	// Seed draws the fixed direction v.
	Seed uint64
}

// DefaultSyntheticConfig is a compute phase of length compute whose last
// third is the backward pass, finishing the gradient in 4 slices, with
// elements below 2·10⁻⁶ in magnitude.
func DefaultSyntheticConfig(compute time.Duration) SyntheticConfig {
	return SyntheticConfig{Compute: compute, Backward: 1.0 / 3, Slices: 4, Scale: 1e-6, Seed: 1}
}

// Validate names the first field out of range.
func (c SyntheticConfig) Validate() error {
	switch {
	case c.Compute < 0:
		return fmt.Errorf("synthetic compute: the compute time must be ≥ 0, got %v", c.Compute)
	case !(c.Backward >= 0 && c.Backward <= 1):
		return fmt.Errorf("synthetic compute: the backward fraction must be in [0, 1], got %v", c.Backward)
	case c.Slices < 1:
		return fmt.Errorf("synthetic compute: the backward slices must be at least 1, got %d", c.Slices)
	case !(c.Scale > 0) || math.IsInf(c.Scale, 0):
		return fmt.Errorf("synthetic compute: the gradient scale must be positive and finite, got %v", c.Scale)
	}
	return nil
}

// Synthetic is a worker.Computer that stands in for a GPU, so that a
// cluster's overhead can be measured at a GPU's step time on a CPU
// machine: its Gradient takes Compute of wall time, mostly waiting (a GPU
// leaves its host's CPU idle), and yields a gradient of the model's size
// that is cheap to produce and deterministic.
//
// The gradient is that of the linear objective L(θ) = c·⟨v, θ⟩, with v a
// fixed pseudo-random direction drawn once from Seed and c = Scale·(1+u),
// u in [0, 1) a hash of (step, slot): so it is a function of (step, slot)
// alone, as worker.Computer requires, and its loss, reported as the
// objective's value, is the exact value of that objective at the loaded
// parameters. The other terms are NaN (not computed). The buffers after
// the step are the loaded ones. The whole phase is reported as
// worker.Timing's Compute (there is no separate attack).
//
// Timeline of Gradient, from its start t0: the "forward" part computes the
// loss and copies the buffers, then waits until t0 + (1−Backward)·Compute;
// the backward part writes the gradient in Slices slices from the top of
// the vector down, the i-th made final (ready) at t0 + (1−Backward)·Compute
// + i·Backward·Compute/Slices, the last (ready(0)) at t0 + Compute. The
// host work (one dot product and one scaled copy of the model's size, the
// size of a device-to-host copy of the gradient) happens inside these
// deadlines, so it lengthens the phase only when it does not fit in it.
type Synthetic struct {
	cfg           SyntheticConfig
	nParams, nBuf int
	dir           []float32 // v
	params, bufs  []float32 // as loaded (not copied)
	// Now reads the clock and Sleep waits; nil means time.Now and
	// time.Sleep (tests inject a fake clock).
	Now   func() time.Time
	Sleep func(time.Duration)
}

var _ worker.Computer = (*Synthetic)(nil)

// NewSynthetic returns a Synthetic computer for flat parameter and buffer
// vectors of the given lengths.
func NewSynthetic(cfg SyntheticConfig, params, buffers int) (*Synthetic, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if params < 1 || buffers < 0 {
		return nil, fmt.Errorf("synthetic compute: %d parameters and %d buffers: need at least 1 parameter and no negative count", params, buffers)
	}
	s := &Synthetic{cfg: cfg, nParams: params, nBuf: buffers, dir: make([]float32, params)}
	x := cfg.Seed
	for i := range s.dir {
		x += splitmixGamma
		s.dir[i] = float32(int32(splitmix(x)>>32)) / (1 << 31)
	}
	return s, nil
}

// Config returns the computer's configuration.
func (s *Synthetic) Config() SyntheticConfig { return s.cfg }

// Sizes implements worker.Computer.
func (s *Synthetic) Sizes() (int, int) { return s.nParams, s.nBuf }

// Load implements worker.Computer. It keeps params and buffers without
// copying them; the worker loop does not change them before the next
// Gradient, which reads them in its forward part.
func (s *Synthetic) Load(params, buffers []float32) { s.params, s.bufs = params, buffers }

// Factor returns c for (step, slot): the gradient is Factor·v.
func (s *Synthetic) Factor(step int64, slot int) float32 {
	h := splitmix(splitmix(uint64(step)+splitmixGamma) ^ uint64(slot))
	u := float64(h>>11) / (1 << 53)
	return float32(s.cfg.Scale * (1 + u))
}

// Gradient implements worker.Computer (see Synthetic for its timeline).
func (s *Synthetic) Gradient(step int64, slot, slots int, grad, bufs []float32, ready func(lo int)) (objective.Terms, worker.Timing, error) {
	if len(grad) != s.nParams || len(bufs) != s.nBuf {
		return objective.Terms{}, worker.Timing{}, fmt.Errorf("synthetic compute: gradient of %d and buffers of %d, want %d and %d", len(grad), len(bufs), s.nParams, s.nBuf)
	}
	if len(s.params) != s.nParams || len(s.bufs) != s.nBuf {
		return objective.Terms{}, worker.Timing{}, fmt.Errorf("synthetic compute: step %d before parameters were loaded", step)
	}
	now, sleep := s.Now, s.Sleep
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = time.Sleep
	}
	t0 := now()
	until := func(d time.Duration) {
		if left := t0.Add(d).Sub(now()); left > 0 {
			sleep(left)
		}
	}
	c := s.Factor(step, slot)
	nan := math.NaN()
	terms := objective.Terms{Loss: float64(c) * dot(s.dir, s.params), CleanCE: nan, AdvCE: nan, Pair: nan,
		CleanAcc: nan, AdvAcc: nan, LogitNorm: nan}
	copy(bufs, s.bufs)
	fwd := time.Duration(float64(s.cfg.Compute) * (1 - s.cfg.Backward))
	until(fwd)
	bwd := s.cfg.Compute - fwd
	n, k := len(grad), s.cfg.Slices
	for i := 1; i <= k; i++ {
		lo, hi := n*(k-i)/k, n*(k-i+1)/k
		for j := lo; j < hi; j++ {
			grad[j] = c * s.dir[j]
		}
		until(fwd + bwd*time.Duration(i)/time.Duration(k))
		if ready != nil {
			ready(lo)
		}
	}
	return terms, worker.Timing{Compute: now().Sub(t0)}, nil
}

// dot is ⟨a, b⟩ accumulated in float64, in a fixed order.
func dot(a, b []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += float64(a[i]) * float64(b[i])
		s1 += float64(a[i+1]) * float64(b[i+1])
		s2 += float64(a[i+2]) * float64(b[i+2])
		s3 += float64(a[i+3]) * float64(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += float64(a[i]) * float64(b[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// splitmixGamma is SplitMix64's increment.
const splitmixGamma = 0x9e3779b97f4a7c15

// splitmix is SplitMix64's output function: a bijective mix of x.
func splitmix(x uint64) uint64 {
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
