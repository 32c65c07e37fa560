package strong

import (
	"math"
	"math/rand/v2"

	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// evaluator runs a model on host rows. Batches are padded (with copies of
// their first row) to a multiple of ceil(batch/8), so a model that keeps
// per-batch-size buffers (pkg/nn does) sees at most eight sizes however the
// cascade shrinks the set of points it attacks.
type evaluator struct {
	m       attack.Model
	be      tensor.Backend
	shape   [3]int
	d       int
	batch   int
	quantum int
	k       int
	xt, dzt map[int]*tensor.Tensor
	hx, hz  []float32
	hdz, hg []float32
	// Forwards and Grads count the rows (examples) the model was run on,
	// padding included: Grads counts forward+input-gradient passes, Forwards
	// forward-only passes.
	Forwards, Grads int
}

func newEvaluator(m attack.Model, shape [3]int, batch int) *evaluator {
	return &evaluator{m: m, be: m.Backend(), shape: shape, d: shape[0] * shape[1] * shape[2], batch: batch,
		quantum: (batch + 7) / 8, xt: map[int]*tensor.Tensor{}, dzt: map[int]*tensor.Tensor{}}
}

func (e *evaluator) padded(n int) int {
	if n > e.batch {
		tensor.Panicf("strong", "batch of %d rows exceeds %d", n, e.batch)
	}
	return min(e.batch, (n+e.quantum-1)/e.quantum*e.quantum)
}

func (e *evaluator) upload(x []float32, n int) (*tensor.Tensor, int) {
	p := e.padded(n)
	t := e.xt[p]
	if t == nil {
		t = e.be.New(p, e.shape[0], e.shape[1], e.shape[2])
		e.xt[p] = t
	}
	if cap(e.hx) < p*e.d {
		e.hx = make([]float32, e.batch*e.d)
	}
	e.hx = e.hx[:p*e.d]
	copy(e.hx, x[:n*e.d])
	for i := n; i < p; i++ {
		copy(e.hx[i*e.d:(i+1)*e.d], x[:e.d])
	}
	e.be.Upload(t, e.hx)
	return t, p
}

func (e *evaluator) downloadZ(z *tensor.Tensor, p int) {
	e.k = z.Dim(1)
	if cap(e.hz) < p*e.k {
		e.hz = make([]float32, e.batch*e.k)
	}
	e.hz = e.hz[:p*e.k]
	e.be.Download(e.hz, z)
}

// logits returns the host logits (n×K) of n rows of x; valid until the
// next call.
func (e *evaluator) logits(x []float32, n int) []float32 {
	t, p := e.upload(x, n)
	e.downloadZ(e.m.Logits(t), p)
	e.Forwards += p
	return e.hz[:n*e.k]
}

// grad returns the logits and dL/dx of n rows, where row i's dL/dz is
// written by dz(i, z_i, dz_i) (which returns nothing; padding rows get 0).
func (e *evaluator) grad(x []float32, n int, dz func(i int, z, dz []float32)) (z, g []float32) {
	t, p := e.upload(x, n)
	zt := e.m.Logits(t)
	e.downloadZ(zt, p)
	e.Grads += p
	if cap(e.hdz) < p*e.k {
		e.hdz = make([]float32, e.batch*e.k)
	}
	e.hdz = e.hdz[:p*e.k]
	clear(e.hdz)
	for i := 0; i < n; i++ {
		dz(i, e.hz[i*e.k:(i+1)*e.k], e.hdz[i*e.k:(i+1)*e.k])
	}
	dzt := e.dzt[p]
	if dzt == nil || dzt.Dim(1) != e.k {
		dzt = e.be.New(p, e.k)
		e.dzt[p] = dzt
	}
	e.be.Upload(dzt, e.hdz)
	gt := e.m.InputGrad(dzt)
	if cap(e.hg) < p*e.d {
		e.hg = make([]float32, e.batch*e.d)
	}
	e.hg = e.hg[:p*e.d]
	e.be.Download(e.hg, gt)
	return e.hz[:n*e.k], e.hg[:n*e.d]
}

// Iterative configures APGD (Croce & Hein 2020, "Reliable evaluation of
// adversarial robustness with an ensemble of diverse parameter-free
// attacks") or, with Step > 0, plain PGD with a fixed step and no momentum.
type Iterative struct {
	Eps   float32
	Steps int
	// Step > 0 selects plain PGD with this fixed step size; 0 selects APGD's
	// schedule: η = 2ε, halved per example at checkpoints (after 22% of the
	// iterations, then at intervals shrinking by 3% down to 6%) when fewer
	// than 75% of the steps since the last checkpoint raised the loss, or
	// when the step was not halved at the last checkpoint and the best loss
	// has not improved since; a halving restarts from the best point found.
	Step        float32
	RandomStart bool
	Loss        LossKind
}

const (
	apgdMomentum = 0.75
	apgdRho      = 0.75
)

// chunkResult is what one iterative or Square run gives per example.
type chunkResult struct {
	Success  []bool    // misclassified at some evaluated iterate
	Top5Lost []bool    // the label left the top 5 at some evaluated iterate
	Hit      []bool    // targeted: the target became the top-1 class
	Adv      []float32 // the first misclassified iterate, else the best-loss point
	Best     []float32 // the highest-loss iterate
	BestLoss []float64
	Start    []float64 // the loss at the start
	// Curve[t] is the sum over the chunk of the loss at iterate t.
	Curve []float64
}

// Run attacks n examples x0 (host, n·C·H·W) with labels (and targets for a
// targeted loss); rng drives the random start.
func (it Iterative) run(e *evaluator, x0 []float32, n int, labels, targets []int32, rng *rand.Rand) chunkResult {
	d := e.d
	eps := it.Eps
	x := make([]float32, n*d)
	copy(x, x0[:n*d])
	if it.RandomStart {
		for i := range x {
			x[i] += (2*rng.Float32() - 1) * eps
		}
		project(x, x0, eps)
	}
	xPrev := append([]float32(nil), x...)
	res := chunkResult{Success: make([]bool, n), Top5Lost: make([]bool, n), Hit: make([]bool, n),
		Adv: append([]float32(nil), x...), Best: append([]float32(nil), x...), BestLoss: make([]float64, n),
		Curve: make([]float64, it.Steps+1)}
	g := make([]float32, n*d)
	gBest := make([]float32, n*d)
	loss := make([]float64, n)
	prevLoss := make([]float64, n)
	eta := make([]float32, n)
	for i := range eta {
		eta[i] = 2 * eps
		if it.Step > 0 {
			eta[i] = it.Step
		}
	}
	target := func(i int) int {
		if targets == nil {
			return 0
		}
		return int(targets[i])
	}
	// evaluate computes the loss (and, with withGrad, the gradient) at x,
	// recording successes.
	evaluate := func(withGrad bool) {
		var z []float32
		if withGrad {
			var gg []float32
			z, gg = e.grad(x, n, func(i int, z, dz []float32) {
				loss[i] = it.Loss.eval(z, int(labels[i]), target(i), dz)
			})
			copy(g, gg)
		} else {
			z = e.logits(x, n)
			for i := 0; i < n; i++ {
				loss[i] = it.Loss.eval(z[i*e.k:(i+1)*e.k], int(labels[i]), target(i), nil)
			}
		}
		for i := 0; i < n; i++ {
			r := rank(z[i*e.k:(i+1)*e.k], int(labels[i]))
			if r > 0 && !res.Success[i] {
				res.Success[i] = true
				copy(res.Adv[i*d:(i+1)*d], x[i*d:(i+1)*d])
			}
			if r >= 5 {
				res.Top5Lost[i] = true
			}
			if it.Loss.Targeted() && rank(z[i*e.k:(i+1)*e.k], target(i)) == 0 {
				res.Hit[i] = true
			}
		}
	}
	evaluate(true)
	copy(gBest, g)
	for i := 0; i < n; i++ {
		res.BestLoss[i], prevLoss[i] = loss[i], loss[i]
		res.Start = append(res.Start, loss[i])
		res.Curve[0] += loss[i]
	}
	// APGD checkpoints: the first after 22% of the iterations, then shrinking.
	period := max(int(0.22*float64(it.Steps)), 1)
	shrink := max(int(0.03*float64(it.Steps)), 1)
	minPeriod := max(int(0.06*float64(it.Steps)), 1)
	since := 0
	increases := make([]int, n)
	reducedLast := make([]bool, n)
	bestAtCheck := append([]float64(nil), res.BestLoss...)
	next := make([]float32, d)
	for s := 0; s < it.Steps; s++ {
		a := float32(apgdMomentum)
		if s == 0 || it.Step > 0 {
			a = 1
		}
		for i := 0; i < n; i++ {
			xi, pi, gi, x0i := x[i*d:(i+1)*d], xPrev[i*d:(i+1)*d], g[i*d:(i+1)*d], x0[i*d:(i+1)*d]
			for j := range next {
				zj := clamp(xi[j]+eta[i]*sign(gi[j]), x0i[j]-eps, x0i[j]+eps)
				v := xi[j] + a*(zj-xi[j]) + (1-a)*(xi[j]-pi[j])
				next[j] = clamp(v, x0i[j]-eps, x0i[j]+eps)
			}
			copy(pi, xi)
			copy(xi, next)
		}
		last := s == it.Steps-1
		evaluate(!last)
		for i := 0; i < n; i++ {
			res.Curve[s+1] += loss[i]
			if loss[i] > prevLoss[i] {
				increases[i]++
			}
			prevLoss[i] = loss[i]
			if loss[i] > res.BestLoss[i] {
				res.BestLoss[i] = loss[i]
				copy(res.Best[i*d:(i+1)*d], x[i*d:(i+1)*d])
				if !last {
					copy(gBest[i*d:(i+1)*d], g[i*d:(i+1)*d])
				}
			}
		}
		if it.Step > 0 || last {
			continue
		}
		since++
		if since < period {
			continue
		}
		for i := 0; i < n; i++ {
			osc := float64(increases[i]) <= apgdRho*float64(since)
			stalled := !reducedLast[i] && bestAtCheck[i] >= res.BestLoss[i]
			reduce := osc || stalled
			reducedLast[i] = reduce
			bestAtCheck[i] = res.BestLoss[i]
			increases[i] = 0
			if reduce {
				eta[i] /= 2
				copy(x[i*d:(i+1)*d], res.Best[i*d:(i+1)*d])
				copy(g[i*d:(i+1)*d], gBest[i*d:(i+1)*d])
			}
		}
		since = 0
		period = max(period-shrink, minPeriod)
	}
	for i := 0; i < n; i++ {
		if !res.Success[i] {
			copy(res.Adv[i*d:(i+1)*d], res.Best[i*d:(i+1)*d])
		}
	}
	return res
}

// project clips x into [0, 1] ∩ B∞(x0, ε).
func project(x, x0 []float32, eps float32) {
	for j := range x {
		x[j] = clamp(x[j], x0[j]-eps, x0[j]+eps)
	}
}

// clamp clips v to [lo, hi] ∩ [0, 1].
func clamp(v, lo, hi float32) float32 {
	lo, hi = max(lo, 0), min(hi, 1)
	return max(min(v, hi), lo)
}

func sign(v float32) float32 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// Square configures the L∞ Square attack (Andriushchenko, Croshaw,
// Flammarion, Hein 2020, "Square Attack: a query-efficient black-box
// adversarial attack via random search"): from vertical stripes of ±ε, each
// query redraws one random s×s window of the perturbation to ±ε per channel
// and keeps it when the margin z_y − max_{j≠y} z_j drops; the window's area
// is p·H·W, p halving on Andriushchenko et al.'s schedule. It uses logits
// only, never gradients, and queries only examples not yet misclassified.
type Square struct {
	Eps     float32
	Queries int
	PInit   float64 // 0.8, AutoAttack's setting
}

// pAt is the Square attack's schedule of the window's area fraction.
func (s Square) pAt(it int) float64 {
	i := int(float64(it) / float64(s.Queries) * 10000)
	p := s.PInit
	for _, cut := range []int{10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000} {
		if i > cut {
			p /= 2
		}
	}
	return p
}

func (s Square) run(e *evaluator, x0 []float32, n int, labels []int32, rng *rand.Rand) (chunkResult, []float64) {
	c, h, w := e.shape[0], e.shape[1], e.shape[2]
	d := e.d
	eps := s.Eps
	x := make([]float32, n*d)
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			for col := 0; col < w; col++ {
				v := eps
				if rng.IntN(2) == 0 {
					v = -eps
				}
				for row := 0; row < h; row++ {
					j := i*d + (ch*h+row)*w + col
					x[j] = clamp(x0[j]+v, x0[j]-eps, x0[j]+eps)
				}
			}
		}
	}
	res := chunkResult{Success: make([]bool, n), Top5Lost: make([]bool, n), Hit: make([]bool, n),
		Adv: x, BestLoss: make([]float64, n)}
	marg := make([]float32, n)
	check := func(i int, z []float32) {
		r := rank(z, int(labels[i]))
		if r > 0 {
			res.Success[i] = true
		}
		if r >= 5 {
			res.Top5Lost[i] = true
		}
	}
	z := e.logits(x, n)
	for i := 0; i < n; i++ {
		zi := z[i*e.k : (i+1)*e.k]
		marg[i] = margin(zi, int(labels[i]))
		check(i, zi)
	}
	trace := []float64{meanF(marg)}
	active := make([]int, 0, n)
	cand := make([]float32, n*d)
	for q := 1; q < s.Queries; q++ {
		active = active[:0]
		for i := 0; i < n; i++ {
			if !res.Success[i] {
				active = append(active, i)
			}
		}
		if len(active) == 0 {
			trace = append(trace, meanF(marg))
			continue
		}
		side := int(math.Round(math.Sqrt(s.pAt(q-1) * float64(h*w))))
		side = min(max(side, 1), h, w)
		for a, i := range active {
			ci := cand[a*d : (a+1)*d]
			xi, x0i := x[i*d:(i+1)*d], x0[i*d:(i+1)*d]
			copy(ci, xi)
			r0, c0 := rng.IntN(h-side+1), rng.IntN(w-side+1)
			for try := 0; try < 10; try++ {
				changed := false
				for ch := 0; ch < c; ch++ {
					v := eps
					if rng.IntN(2) == 0 {
						v = -eps
					}
					for row := r0; row < r0+side; row++ {
						for col := c0; col < c0+side; col++ {
							j := (ch*h+row)*w + col
							ci[j] = clamp(x0i[j]+v, x0i[j]-eps, x0i[j]+eps)
							if ci[j] != xi[j] {
								changed = true
							}
						}
					}
				}
				if changed {
					break
				}
			}
		}
		for lo := 0; lo < len(active); lo += e.batch {
			hi := min(lo+e.batch, len(active))
			z := e.logits(cand[lo*d:], hi-lo)
			for a := lo; a < hi; a++ {
				i := active[a]
				zi := z[(a-lo)*e.k : (a-lo+1)*e.k]
				if m := margin(zi, int(labels[i])); m < marg[i] {
					marg[i] = m
					copy(x[i*d:(i+1)*d], cand[a*d:(a+1)*d])
					check(i, zi)
				}
			}
		}
		trace = append(trace, meanF(marg))
	}
	for i := range marg {
		res.BestLoss[i] = float64(-marg[i])
	}
	return res, trace
}

func meanF(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x)
	}
	return s / float64(max(len(v), 1))
}
