package attack

import (
	"math"
	"math/rand/v2"

	"github.com/logitpair/logitpair/pkg/tensor"
)

// StepLL returns the step-least-likely attack of Kurakin, Goodfellow and
// Bengio (2017a, "Adversarial Machine Learning at Scale"): one step of size ε
// toward the clean input's least-likely class y_LL, without random start,
//
//	x' = clip(x − ε·sign(∇_x CE(f(x), y_LL)), 0, 1).
func StepLL(eps float32) Config {
	return Config{Eps: eps, Step: eps, Steps: 1, Restarts: 1, Target: LeastLikely}
}

// SingleStep reports whether c is one step of size ε from the clean input
// (FGSM, step-LL, …): the attacks RunEps runs with a budget per example.
func (c Config) SingleStep() bool {
	return c.Steps == 1 && c.Step == c.Eps && !c.RandomStart && c.Restarts == 1
}

// RandomEps fills eps with per-example budgets drawn as Kurakin et al.
// (2017a) draw them for adversarial training: ε "randomly, independently for
// each example, from a truncated normal distribution defined in interval
// [0, 16] with underlying normal distribution N(μ = 0, σ = 8)" (in pixel
// units of [0, 255]), i.e. for a budget ε_max, N(0, σ²) with σ = ε_max/2
// truncated to [0, ε_max]. Its CDF on [0, ε_max] is
//
//	F(e) = erf(e / (σ√2)) / erf(ε_max / (σ√2)) = erf(e / (σ√2)) / erf(√2),
//
// so each draw is the inverse CDF of one uniform u ∈ [0, 1) (one rng value
// per example, no rejection loop):
//
//	ε = σ·√2·erf⁻¹(u·erf(√2)),  σ = ε_max/2.
func RandomEps(rng *rand.Rand, epsMax float32, eps []float32) {
	sigma := float64(epsMax) / 2
	top := math.Erf(math.Sqrt2)
	for i := range eps {
		e := float32(sigma * math.Sqrt2 * math.Erfinv(rng.Float64()*top))
		eps[i] = min(max(e, 0), epsMax) // rounding to float32 must not leave the interval
	}
}

// RunEps is Run for a single-step attack (Config.SingleStep) with its own
// budget eps[i] ∈ [0, Eps] for each example i: one gradient of the attack's
// loss at the clean input, then
//
//	x'_i = clip(x_i ± eps[i]·sign(∇), 0, 1)
//
// (+ ascending the untargeted loss, − descending toward a target). With every
// eps[i] = Eps it computes exactly what Run computes.
func (a *Attack) RunEps(m Model, x0 *tensor.Tensor, labels []int32, eps []float32, rng *rand.Rand) (*tensor.Tensor, []int32) {
	n := x0.Dim(0)
	switch {
	case !a.SingleStep():
		tensor.Panicf("attack", "RunEps needs a single-step attack of size ε without random start, got %s", a.Config)
	case len(labels) != n || len(eps) != n:
		tensor.Panicf("attack", "RunEps: %d labels and %d budgets for a batch of %d", len(labels), len(eps), n)
	}
	for i, e := range eps {
		if !(e >= 0 && e <= a.Eps) {
			tensor.Panicf("attack", "RunEps: example %d has budget %v outside [0, %v]", i, e, a.Eps)
		}
	}
	b := a.bufs[n]
	if b == nil {
		b = &buffers{x: a.be.New(x0.Shape()...), noise: make([]float32, x0.Numel())}
		a.bufs[n] = b
	}
	work := a.workLabels(m, x0, labels, rng)
	a.be.Copy(b.x, x0)
	z := m.Logits(b.x)
	if b.dz == nil || b.dz.Dim(1) != z.Dim(1) {
		b.dz = a.be.New(z.Shape()...)
	}
	a.be.SoftmaxCrossEntropy(b.dz, z, work, 0, 1, nil)
	g := m.InputGrad(b.dz)
	size := x0.Numel()
	a.hostG, a.hostX0 = growF(a.hostG, size), growF(a.hostX0, size)
	a.be.Download(a.hostG, g)
	a.be.Download(a.hostX0, x0)
	per := size / n
	targeted := a.Target.Targeted()
	for i := 0; i < n; i++ {
		e := eps[i]
		alpha := e
		if targeted {
			alpha = -alpha // descend toward the target
		}
		for j := i * per; j < (i+1)*per; j++ {
			// The same float32 operations as the backends' PGDStep with
			// α = ±e and radius e, so a constant budget reproduces Run.
			x0v := a.hostX0[j]
			v := x0v
			switch s := a.hostG[j]; {
			case s > 0:
				v += alpha
			case s < 0:
				v -= alpha
			}
			v = min(max(v, x0v-e), x0v+e)
			a.hostG[j] = min(max(v, 0), 1) // the gradient's sign is used: overwrite it with x'
		}
	}
	a.be.Upload(b.x, a.hostG)
	return b.x, work
}
