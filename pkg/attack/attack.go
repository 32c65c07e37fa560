// Package attack crafts adversarial examples under an L∞ budget. Attacks see
// a model only through its logits and its input gradient (Model), so they run
// unchanged on any network and backend.
//
// PGD (Madry, Makelov, Schmidt, Tsipras, Vladu 2018, "Towards Deep Learning
// Models Resistant to Adversarial Attacks"), from x⁰ = clip(x + U(−ε, ε)^d, 0, 1)
// (or x⁰ = x without random start):
//
//	x^{t+1} = Π_{[0,1] ∩ B∞(x, ε)} ( x^t + α · sign(∇_x L(f(x^t), y)) )
//
// untargeted on the true or the predicted label (ascending the cross-entropy),
// or targeted (descending the cross-entropy of a target: a random class ≠ the
// label, "pgdrnd", or the least-likely class, "pgdll"). FGSM is one step of
// α = ε without random start; FGSM with random start (Wong, Rice, Kolter 2020,
// "Fast is better than free") takes one step of α = 1.25ε from a random start.
// With restarts, each example keeps its worst case: a successful adversarial
// example if any restart found one, else the one with the highest attack loss.
package attack

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/logitpair/logitpair/pkg/tensor"
)

// Model is what an attack needs of a network.
type Model interface {
	Backend() tensor.Backend
	// Logits runs the network in evaluation mode on x (N, C, H, W) and
	// returns its logits (N, K). The tensor is overwritten by the next call.
	Logits(x *tensor.Tensor) *tensor.Tensor
	// InputGrad returns dL/dx for the last Logits call, given dL/dlogits.
	InputGrad(dlogits *tensor.Tensor) *tensor.Tensor
}

// Target selects which label an attack works on.
type Target int

const (
	// TrueLabel: untargeted, ascend CE on the true label (Madry et al.).
	TrueLabel Target = iota
	// Predicted: untargeted, ascend CE on the model's prediction for the
	// clean input (the released ALP code's "pgd").
	Predicted
	// RandomClass: targeted at a uniformly random class ≠ the true label
	// ("pgdrnd").
	RandomClass
	// LeastLikely: targeted at the clean input's least-likely class ("pgdll").
	LeastLikely
)

func (t Target) String() string {
	return [...]string{"true", "predicted", "random", "least-likely"}[t]
}

// Targeted reports whether the attack descends toward a target class.
func (t Target) Targeted() bool { return t == RandomClass || t == LeastLikely }

// ParseTarget reads "true", "predicted", "random"/"rnd" or "least-likely"/"ll".
func ParseTarget(s string) (Target, error) {
	switch s {
	case "true", "label":
		return TrueLabel, nil
	case "predicted", "pred":
		return Predicted, nil
	case "random", "rnd":
		return RandomClass, nil
	case "least-likely", "ll":
		return LeastLikely, nil
	}
	return 0, fmt.Errorf("unknown attack target %q (want true, predicted, random or least-likely)", s)
}

// AsWritten returns x as the float64 whose shortest decimal is x's
// shortest float32 decimal: a float32 ε of 0.3 becomes 0.3, not
// 0.30000001192092896 (float64(x)). JSON reports carry ε and step sizes so,
// as the user wrote them.
func AsWritten(x float32) float64 {
	v, err := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
	if err != nil { // NaN and ±Inf format as words that parse back
		return float64(x)
	}
	return v
}

// Config describes an L∞ attack. Eps and Step are in pixel units of [0, 1].
type Config struct {
	Eps         float32
	Step        float32
	Steps       int
	Restarts    int
	RandomStart bool
	Target      Target
}

// PGD returns Madry et al.'s MNIST attack: ε, steps of size step, random start.
func PGD(eps, step float32, steps int) Config {
	return Config{Eps: eps, Step: step, Steps: steps, Restarts: 1, RandomStart: true, Target: TrueLabel}
}

// FGSM returns the fast gradient sign method: one step of ε, no random start.
func FGSM(eps float32) Config {
	return Config{Eps: eps, Step: eps, Steps: 1, Restarts: 1, Target: TrueLabel}
}

// FGSMRandomStart returns Wong et al.'s fast-adversarial-training attack:
// a random start in the ε-ball, then one step of α = 1.25ε.
func FGSMRandomStart(eps float32) Config {
	return Config{Eps: eps, Step: 1.25 * eps, Steps: 1, Restarts: 1, RandomStart: true, Target: TrueLabel}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case !(c.Eps > 0 && c.Eps <= 1):
		return fmt.Errorf("attack: eps must be in (0, 1], got %v", c.Eps)
	case !(c.Step > 0) || math.IsInf(float64(c.Step), 0):
		return fmt.Errorf("attack: step size must be positive, got %v", c.Step)
	case c.Steps < 1:
		return fmt.Errorf("attack: steps must be at least 1, got %d", c.Steps)
	case c.Restarts < 1:
		return fmt.Errorf("attack: restarts must be at least 1, got %d", c.Restarts)
	case c.Restarts > 1 && !c.RandomStart:
		return fmt.Errorf("attack: %d restarts without a random start would repeat the same attack", c.Restarts)
	}
	return nil
}

func (c Config) String() string {
	rs := ""
	if c.RandomStart {
		rs = ", random start"
	}
	return fmt.Sprintf("PGD-%d ε=%.4g α=%.4g ×%d restarts, %s label%s", c.Steps, c.Eps, c.Step, c.Restarts, c.Target, rs)
}

// Parse reads the released ALP code's attack strings,
// `pgd|pgdll|pgdrnd_EPS_STEP_NITER`, with EPS and STEP in 1/255 units
// (decimals allowed: MNIST's ε = 0.3 is pgd_76.5_2.55_40), plus `fgsm_EPS`,
// `fgsmrs_EPS` (random start, α = 1.25ε) and `stepll_EPS` (StepLL). The released code's "pgd" attacks
// the predicted label; every PGD string has a random start.
func Parse(s string) (Config, error) {
	parts := strings.Split(s, "_")
	num := func(i int, what string) (float64, error) {
		v, err := strconv.ParseFloat(parts[i], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("attack %q: %s %q is not a number", s, what, parts[i])
		}
		return v, nil
	}
	var c Config
	switch parts[0] {
	case "fgsm", "fgsmrs", "stepll":
		if len(parts) != 2 {
			return c, fmt.Errorf("attack %q: want %s_EPS (EPS in 1/255)", s, parts[0])
		}
		eps, err := num(1, "EPS")
		if err != nil {
			return c, err
		}
		switch parts[0] {
		case "fgsm":
			c = FGSM(float32(eps / 255))
		case "stepll":
			c = StepLL(float32(eps / 255))
		default:
			c = FGSMRandomStart(float32(eps / 255))
		}
	case "pgd", "pgdll", "pgdrnd":
		if len(parts) != 4 {
			return c, fmt.Errorf("attack %q: want %s_EPS_STEP_NITER (EPS and STEP in 1/255)", s, parts[0])
		}
		eps, err := num(1, "EPS")
		if err != nil {
			return c, err
		}
		step, err := num(2, "STEP")
		if err != nil {
			return c, err
		}
		n, err := strconv.Atoi(parts[3])
		if err != nil {
			return c, fmt.Errorf("attack %q: NITER %q is not an integer", s, parts[3])
		}
		c = PGD(float32(eps/255), float32(step/255), n)
		c.Target = map[string]Target{"pgd": Predicted, "pgdll": LeastLikely, "pgdrnd": RandomClass}[parts[0]]
	default:
		return c, fmt.Errorf("unknown attack %q (want pgd|pgdll|pgdrnd_EPS_STEP_NITER, fgsm_EPS, fgsmrs_EPS or stepll_EPS)", s)
	}
	return c, c.Validate()
}

// Loss is an attack objective other than the cross-entropy (e.g. TRADES's
// KL divergence to the clean prediction): Grad writes into dz the gradient,
// with respect to the logits z, of the loss to ascend, and fills perExample
// (when non-nil) with each example's loss.
type Loss interface {
	Grad(dz, z *tensor.Tensor, perExample []float32)
}

// Attack runs one configuration, reusing its buffers across calls of the same
// batch size.
type Attack struct {
	Config
	be      tensor.Backend
	bufs    map[int]*buffers
	targets []int32
	loss    []float32
	best    []float32
	success []bool
	hostZ   []float32
	hostG   []float32 // RunEps: the input gradient, then x'
	hostX0  []float32 // RunEps: the clean batch
}

type buffers struct {
	x, best, dz, noiseT *tensor.Tensor
	noise               []float32
}

// New returns an attack for a validated configuration.
func New(be tensor.Backend, c Config) (*Attack, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &Attack{Config: c, be: be, bufs: map[int]*buffers{}}, nil
}

// Run attacks x0 (N, C, H, W; pixels in [0, 1]) with labels and returns the
// adversarial batch (a tensor owned by the attack, overwritten by the next
// Run) and the labels the attack worked on (targets for a targeted attack,
// the predicted labels for Predicted). rng drives the random start and the
// random targets: the same rng state gives the same result.
func (a *Attack) Run(m Model, x0 *tensor.Tensor, labels []int32, rng *rand.Rand) (*tensor.Tensor, []int32) {
	return a.run(m, x0, labels, nil, rng)
}

// RunLoss is Run ascending a custom loss instead of the cross-entropy
// (Target is ignored; restarts keep the highest loss).
func (a *Attack) RunLoss(m Model, x0 *tensor.Tensor, loss Loss, rng *rand.Rand) *tensor.Tensor {
	adv, _ := a.run(m, x0, make([]int32, x0.Dim(0)), loss, rng)
	return adv
}

func (a *Attack) run(m Model, x0 *tensor.Tensor, labels []int32, loss Loss, rng *rand.Rand) (*tensor.Tensor, []int32) {
	n := x0.Dim(0)
	if len(labels) != n {
		tensor.Panicf("attack", "%d labels for a batch of %d", len(labels), n)
	}
	b := a.bufs[n]
	if b == nil {
		b = &buffers{x: a.be.New(x0.Shape()...), noise: make([]float32, x0.Numel())}
		if a.RandomStart {
			b.noiseT = a.be.New(x0.Shape()...)
		}
		if a.Restarts > 1 {
			b.best = a.be.New(x0.Shape()...)
		}
		a.bufs[n] = b
	}
	work := labels
	if loss == nil {
		work = a.workLabels(m, x0, labels, rng)
	}
	for r := 0; r < a.Restarts; r++ {
		a.be.Copy(b.x, x0)
		if a.RandomStart {
			// x ← clip(x0 + U(−ε, ε), 0, 1): a zero gradient step leaves the
			// point where it is and PGDStep does the clipping.
			for i := range b.noise {
				b.noise[i] = (2*rng.Float32() - 1) * a.Eps
			}
			a.be.Upload(b.noiseT, b.noise)
			a.be.Axpy(b.x, 1, b.noiseT)
			a.be.PGDStep(b.x, b.noiseT, x0, 0, a.Eps)
		}
		for s := 0; s < a.Steps; s++ {
			z := m.Logits(b.x)
			if b.dz == nil || b.dz.Dim(1) != z.Dim(1) {
				b.dz = a.be.New(z.Shape()...)
			}
			if loss != nil {
				loss.Grad(b.dz, z, nil)
			} else {
				a.be.SoftmaxCrossEntropy(b.dz, z, work, 0, 1, nil)
			}
			g := m.InputGrad(b.dz)
			alpha := a.Step
			if loss == nil && a.Target.Targeted() {
				alpha = -alpha // descend toward the target
			}
			a.be.PGDStep(b.x, g, x0, alpha, a.Eps)
		}
		if a.Restarts == 1 {
			return b.x, work
		}
		a.keepWorst(m, b, work, loss, r == 0)
	}
	return b.best, work
}

// workLabels returns the labels the attack's loss uses.
func (a *Attack) workLabels(m Model, x0 *tensor.Tensor, labels []int32, rng *rand.Rand) []int32 {
	if a.Target == TrueLabel {
		return labels
	}
	n := len(labels)
	a.targets = grow(a.targets, n)
	z := m.Logits(x0)
	k := z.Dim(1)
	if a.Target == RandomClass {
		for i, y := range labels {
			t := int32(rng.IntN(k - 1))
			if t >= y {
				t++ // uniform over the k−1 classes ≠ y
			}
			a.targets[i] = t
		}
		return a.targets
	}
	a.hostZ = growF(a.hostZ, z.Numel())
	a.be.Download(a.hostZ, z)
	for i := 0; i < n; i++ {
		row := a.hostZ[i*k : (i+1)*k]
		best := 0
		for j, v := range row {
			if (a.Target == Predicted && v > row[best]) || (a.Target == LeastLikely && v < row[best]) {
				best = j
			}
		}
		a.targets[i] = int32(best)
	}
	return a.targets
}

// keepWorst scores the restart just finished and copies, per example, the
// better adversarial point into b.best: success beats failure, then higher
// attack loss (ascending CE untargeted, descending CE targeted).
func (a *Attack) keepWorst(m Model, b *buffers, work []int32, loss Loss, first bool) {
	n := len(work)
	z := m.Logits(b.x)
	k := z.Dim(1)
	a.loss = growF(a.loss, n)
	if loss != nil {
		if b.dz == nil || b.dz.Dim(1) != k {
			b.dz = a.be.New(z.Shape()...)
		}
		loss.Grad(b.dz, z, a.loss)
	} else {
		a.be.SoftmaxCrossEntropy(nil, z, work, 0, 1, a.loss)
	}
	a.hostZ = growF(a.hostZ, z.Numel())
	a.be.Download(a.hostZ, z)
	a.best = growF(a.best, n)
	if len(a.success) < n {
		a.success = make([]bool, n)
	}
	for i := 0; i < n; i++ {
		row := a.hostZ[i*k : (i+1)*k]
		pred := 0
		for j, v := range row {
			if v > row[pred] {
				pred = j
			}
		}
		score := a.loss[i]
		ok := pred != int(work[i])
		if loss != nil {
			ok = false // no notion of success: the highest loss wins
		} else if a.Target.Targeted() {
			score, ok = -score, pred == int(work[i])
		}
		if first || (ok && !a.success[i]) || (ok == a.success[i] && score > a.best[i]) {
			a.be.Copy(b.best.Rows(i, i+1), b.x.Rows(i, i+1))
			a.best[i], a.success[i] = score, ok
		}
	}
}

func grow(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}

func growF(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
