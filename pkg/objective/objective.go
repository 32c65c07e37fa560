// Package objective holds the training objectives of the paper (Kannan,
// Kurakin, Goodfellow 2018, "Adversarial Logit Pairing") and the defenses it
// compares with. Each is a loss over a model's logits and its gradient with
// respect to those logits; the engine's backward does the rest.
//
// With a batch of m clean examples x_i (labels y_i), their adversarial
// versions x̃_i, K classes, logits f(·) and CE the softmax cross-entropy with
// TensorFlow's label smoothing δ (target 1−δ+δ/K on y, δ/K elsewhere):
//
//	plain          (1/m) Σ CE(f(x_i), y_i)
//	label-smoothing plain with δ (0.1 unless set)
//	pgd            (1/m) Σ CE(f(x̃_i), y_i)                               (Madry et al.)
//	mpgd           (1/2m) [Σ CE(f(x_i), y_i) + Σ CE(f(x̃_i), y_i)]       one mean over
//	               the concatenated batch of 2m, as the released code computes it
//	alp            mpgd + λ · (1/(m·K)) Σ ‖f(x_i) − f(x̃_i)‖²
//	clp            (1/m) Σ CE(f(x'_i), y_i) + λ · (2/m) Σ_{i≤m/2} (1/K)‖f(x'_i) − f(x'_{i+m/2})‖²
//	logit-squeeze  (1/m) Σ CE(f(x'_i), y_i) + λ · (1/(m·K)) Σ ‖f(x'_i)‖²
//	mixup          (1/m) Σ [μ·CE(f(x̂_i), y_i) + (1−μ)·CE(f(x̂_i), y_π(i))],
//	               x̂_i = μ·x_i + (1−μ)·x_π(i), μ ~ Beta(α, α) per batch (Zhang et al.)
//	vat-kl         mpgd + λ · (1/m) Σ KL(softmax f(x_i) ‖ softmax f(x̃_i))
//	trades         (1/m) Σ CE(f(x_i), y_i) + β · (1/m) Σ KL(softmax f(x_i) ‖ softmax f(x'_i)),
//	               x' found by PGD ascending that KL (Zhang et al. 2019)
//	single-step    mpgd with x̃ from one step of ε (fgsm or step-LL, optionally a
//	               random ε per example) on the model (Kurakin et al. 2017a)
//	ensemble-adv   single-step with x̃ crafted, per batch, on the model or on one
//	               of fixed static models (Tramèr et al. 2018; singlestep.go)
//
// where x'_i = clip(x_i + N(0, σ²), 0, 1) is the Gaussian-noise-augmented input.
//
// The pairing term follows the released ALP code: λ multiplies the mean
// squared error over batch × classes, (1/(m·K)) Σ ‖·‖². The paper writes
// λ·(1/m)·Σ L with L the squared L2 distance, which for the same λ is K times
// larger (λ_paper = λ/K). We take the paper's quoted ranges (MNIST λ ∈ [0.2, 1],
// SVHN [0.5, 1]) to be in the convention of the authors' code, i.e. this one.
package objective

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// Config selects an objective and its weights.
type Config struct {
	Name string
	// PairWeight is λ (alp, clp, logit-squeeze, vat-kl) or β (trades).
	PairWeight float64
	// Smoothing is the label-smoothing δ of every CE term (label-smoothing
	// defaults it to 0.1).
	Smoothing float64
	// NoiseStd is σ of the Gaussian augmentation of clp and logit-squeeze.
	NoiseStd float64
	// MixupAlpha is mixup's Beta(α, α) parameter.
	MixupAlpha float64
	// SingleStep is the single-step attack of single-step and ensemble-adv:
	// SingleStepFGSM or SingleStepLL ("" means SingleStepLL).
	SingleStep string
	// StaticModels is the number of ensemble-adv's static source models.
	StaticModels int
	// SourceSchedule is ensemble-adv's choice of source per batch ("" means
	// RoundRobin).
	SourceSchedule Schedule
}

type spec struct {
	adversarial bool // needs x̃ from the training attack
	paired      bool // forward runs on concat(x, x̃)
	pairWeight  bool // uses PairWeight
}

var specs = map[string]spec{
	"plain":           {},
	"label-smoothing": {},
	"pgd":             {adversarial: true},
	"mpgd":            {adversarial: true, paired: true},
	"alp":             {adversarial: true, paired: true, pairWeight: true},
	"vat-kl":          {adversarial: true, paired: true, pairWeight: true},
	"trades":          {adversarial: true, paired: true, pairWeight: true},
	"clp":             {pairWeight: true},
	"logit-squeeze":   {pairWeight: true},
	"mixup":           {},
	"single-step":     {adversarial: true, paired: true},
	"ensemble-adv":    {adversarial: true, paired: true},
}

// Names lists the objectives.
func Names() []string {
	out := make([]string, 0, len(specs))
	for n := range specs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Validate checks the configuration.
func (c Config) Validate() error {
	s, ok := specs[c.Name]
	switch {
	case !ok:
		return fmt.Errorf("unknown objective %q (known: %s)", c.Name, strings.Join(Names(), ", "))
	case c.PairWeight < 0 || math.IsNaN(c.PairWeight) || math.IsInf(c.PairWeight, 0):
		return fmt.Errorf("objective %s: pair weight λ must be a finite number ≥ 0, got %v", c.Name, c.PairWeight)
	case s.pairWeight && c.PairWeight == 0:
		return fmt.Errorf("objective %s needs a pair weight λ > 0 (--pair-weight)", c.Name)
	case c.Smoothing < 0 || c.Smoothing >= 1 || math.IsNaN(c.Smoothing):
		return fmt.Errorf("objective %s: label smoothing must be in [0, 1), got %v", c.Name, c.Smoothing)
	case (c.Name == "clp" || c.Name == "logit-squeeze") && !(c.NoiseStd >= 0):
		return fmt.Errorf("objective %s: noise σ must be ≥ 0, got %v", c.Name, c.NoiseStd)
	case c.Name == "mixup" && !(c.MixupAlpha > 0):
		return fmt.Errorf("objective mixup needs α > 0, got %v", c.MixupAlpha)
	}
	return c.validateSingleStep()
}

// Terms is one batch's loss and its parts, for logs and metrics.
type Terms struct {
	Loss      float64 // the objective's value (without weight decay)
	CleanCE   float64 // mean CE on the clean (or noise-augmented / mixed) batch, NaN if not computed
	AdvCE     float64 // mean CE on the adversarial batch, NaN if none
	Pair      float64 // the pairing/regularization term before its weight, NaN if none
	CleanAcc  float64 // accuracy on the clean half of the forward batch
	AdvAcc    float64 // accuracy on the adversarial half, NaN if none
	LogitNorm float64 // mean L2 norm of the logits
	// Source is the model the adversarial batch was crafted on (ensemble-adv):
	// 0 the model being trained (or no adversarial batch), s ≥ 1 the s-th
	// static model.
	Source int
}

// Objective computes one training batch's loss.
type Objective struct {
	Config
	spec
	be tensor.Backend
	// buffers per clean batch size m
	in      map[int]*tensor.Tensor
	dz      map[int]*tensor.Tensor
	scratch map[int]*tensor.Tensor
	perm    []int
	labels2 []int32
	mixLbl  []int32
	mixMu   float64
	host    []float32
	hostDz  []float32
}

// New returns the objective for a validated configuration.
func New(be tensor.Backend, c Config) (*Objective, error) {
	if c.Name == "label-smoothing" && c.Smoothing == 0 {
		c.Smoothing = 0.1
	}
	if c.SingleStep == "" {
		c.SingleStep = SingleStepLL
	}
	if c.SourceSchedule == "" {
		c.SourceSchedule = RoundRobin
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &Objective{Config: c, spec: specs[c.Name], be: be,
		in: map[int]*tensor.Tensor{}, dz: map[int]*tensor.Tensor{}, scratch: map[int]*tensor.Tensor{}}, nil
}

// NeedsAdversarial reports whether Inputs needs x̃ from the training attack
// (for trades: from AttackLoss's KL attack).
func (o *Objective) NeedsAdversarial() bool { return o.adversarial }

// ForwardBatch is the number of rows the model's training forward gets for m
// clean examples.
func (o *Objective) ForwardBatch(m int) int {
	if o.paired {
		return 2 * m
	}
	return m
}

// Inputs builds the training forward's input from the clean batch x (m rows)
// and, for adversarial objectives, x̃: x̃ alone (pgd), concat(x, x̃) (mpgd,
// alp, vat-kl, trades), the noise-augmented x' (clp, logit-squeeze), the
// mixed x̂ (mixup), or x itself. rng draws the noise and the mixing.
func (o *Objective) Inputs(x, xadv *tensor.Tensor, rng *rand.Rand) *tensor.Tensor {
	m := x.Dim(0)
	if o.adversarial && xadv == nil {
		panic("objective " + o.Name + ": Inputs needs the adversarial batch")
	}
	switch {
	case o.Name == "pgd":
		return xadv
	case o.paired:
		in := o.buf(o.in, append([]int{2 * m}, x.Shape()[1:]...)...)
		o.be.Copy(in.Rows(0, m), x)
		o.be.Copy(in.Rows(m, 2*m), xadv)
		return in
	case o.Name == "clp" || o.Name == "logit-squeeze":
		in := o.buf(o.in, x.Shape()...)
		o.host = grow(o.host, x.Numel())
		o.be.Download(o.host, x)
		for i, v := range o.host {
			o.host[i] = float32(min(max(float64(v)+rng.NormFloat64()*o.NoiseStd, 0), 1))
		}
		o.be.Upload(in, o.host)
		return in
	case o.Name == "mixup":
		in := o.buf(o.in, x.Shape()...)
		o.mixMu = betaSample(rng, o.MixupAlpha)
		o.perm = rng.Perm(m)
		o.host = grow(o.host, x.Numel())
		o.be.Download(o.host, x)
		mixed := make([]float32, len(o.host))
		per := x.Numel() / m
		for i := 0; i < m; i++ {
			j := o.perm[i]
			for k := 0; k < per; k++ {
				mixed[i*per+k] = float32(o.mixMu*float64(o.host[i*per+k]) + (1-o.mixMu)*float64(o.host[j*per+k]))
			}
		}
		o.be.Upload(in, mixed)
		return in
	}
	return x
}

// Loss evaluates the objective on the logits z of the Inputs batch and
// returns dL/dz (a tensor owned by the objective) and the terms.
func (o *Objective) Loss(z *tensor.Tensor, labels []int32) (*tensor.Tensor, Terms) {
	n, k := z.Dim(0), z.Dim(1)
	m := len(labels)
	if n != o.ForwardBatch(m) {
		tensor.Panicf("objective "+o.Name, "logits for %d rows, want %d for %d labels", n, o.ForwardBatch(m), m)
	}
	dz := o.buf(o.dz, n, k)
	t := Terms{CleanCE: math.NaN(), AdvCE: math.NaN(), Pair: math.NaN(), AdvAcc: math.NaN()}
	delta := float32(o.Smoothing)
	o.host = grow(o.host, n*k)
	o.be.Download(o.host, z)
	t.LogitNorm = meanNorm(o.host, n, k)
	switch o.Name {
	case "plain", "label-smoothing", "pgd", "clp", "logit-squeeze":
		t.Loss = o.be.SoftmaxCrossEntropy(dz, z, labels, delta, 1, nil)
		if o.Name == "pgd" {
			t.AdvCE, t.AdvAcc = t.Loss, accuracy(o.host, labels, k)
		} else {
			t.CleanCE, t.CleanAcc = t.Loss, accuracy(o.host, labels, k)
		}
		switch o.Name {
		case "clp":
			// λ·(2/m)·Σ_{i≤m/2} (1/K)‖f(x'_i) − f(x'_{i+m/2})‖² = λ·MSE(first half, second half)
			h := m / 2
			if h == 0 {
				tensor.Panicf("objective clp", "needs a batch of at least 2, got %d", m)
			}
			pd := o.buf(o.scratch, n, k)
			o.be.Fill(pd, 0)
			sc := o.buf(o.scratch, h, k)
			t.Pair = nn.SquaredL2Pair(o.be, pd.Rows(0, h), pd.Rows(h, 2*h), z.Rows(0, h), z.Rows(h, 2*h), sc)
			o.be.Axpy(dz, float32(o.PairWeight), pd)
			t.Loss += o.PairWeight * t.Pair
		case "logit-squeeze":
			// λ·(1/(m·K))·Σ‖f(x'_i)‖², gradient 2λ·f(x')/(m·K)
			t.Pair = o.be.SumSquares(z) / float64(n*k)
			o.be.Axpy(dz, float32(2*o.PairWeight/float64(n*k)), z)
			t.Loss += o.PairWeight * t.Pair
		}
	case "mixup":
		// μ·CE(y) + (1−μ)·CE(y_π): two CE passes with their weights.
		o.mixLbl = growI(o.mixLbl, m)
		for i, j := range o.perm {
			o.mixLbl[i] = labels[j]
		}
		pd := o.buf(o.scratch, n, k)
		l1 := o.be.SoftmaxCrossEntropy(dz, z, labels, delta, float32(o.mixMu), nil)
		l2 := o.be.SoftmaxCrossEntropy(pd, z, o.mixLbl, delta, float32(1-o.mixMu), nil)
		o.be.Axpy(dz, 1, pd)
		t.Loss, t.CleanCE = l1+l2, l1+l2
		t.CleanAcc = accuracy(o.host, labels, k)
	default: // paired: mpgd, single-step, ensemble-adv, alp, vat-kl, trades on concat(x, x̃)
		o.labels2 = growI(o.labels2, 2*m)
		copy(o.labels2, labels)
		copy(o.labels2[m:], labels)
		t.CleanAcc = accuracy(o.host[:m*k], labels, k)
		t.AdvAcc = accuracy(o.host[m*k:], labels, k)
		perEx := make([]float32, 2*m)
		switch o.Name {
		case "trades":
			// CE on the clean half only: (1/m)Σ CE(f(x_i), y_i).
			o.be.Fill(dz, 0)
			t.Loss = o.be.SoftmaxCrossEntropy(dz.Rows(0, m), z.Rows(0, m), labels, delta, 1, nil)
			t.CleanCE = t.Loss
			t.AdvCE = o.be.SoftmaxCrossEntropy(nil, z.Rows(m, 2*m), labels, delta, 1, nil)
		default:
			t.Loss = o.be.SoftmaxCrossEntropy(dz, z, o.labels2, delta, 1, perEx)
			t.CleanCE, t.AdvCE = mean(perEx[:m]), mean(perEx[m:])
		}
		switch o.Name {
		case "alp":
			pd := o.buf(o.scratch, n, k)
			sc := o.buf(o.scratch, m, k)
			t.Pair = nn.SquaredL2Pair(o.be, pd.Rows(0, m), pd.Rows(m, 2*m), z.Rows(0, m), z.Rows(m, 2*m), sc)
			o.be.Axpy(dz, float32(o.PairWeight), pd)
			t.Loss += o.PairWeight * t.Pair
		case "vat-kl", "trades":
			// λ·(1/m)·Σ KL(p_i ‖ q_i), p = softmax f(x), q = softmax f(x̃):
			//   ∂/∂z_clean = (λ/m)·p ⊙ (log p − log q − KL_i),  ∂/∂z_adv = (λ/m)·(q − p)
			o.hostDz = grow(o.hostDz, n*k)
			o.be.Download(o.hostDz, dz)
			t.Pair = klPair(o.host, o.hostDz, m, k, o.PairWeight)
			o.be.Upload(dz, o.hostDz)
			t.Loss += o.PairWeight * t.Pair
		}
	}
	return dz, t
}

// AttackLoss is the KL loss TRADES's attack ascends, KL(softmax f(x) ‖
// softmax f(x')), with p = softmax f(x) taken from clean logits zClean
// (m, K) already computed.
type AttackLoss struct {
	be    tensor.Backend
	p     []float32
	k     int
	hostZ []float32
	hostD []float32
}

// NewKLAttackLoss returns TRADES's attack loss for the clean logits.
func NewKLAttackLoss(be tensor.Backend, zClean *tensor.Tensor) *AttackLoss {
	n, k := zClean.Dim(0), zClean.Dim(1)
	h := make([]float32, n*k)
	be.Download(h, zClean)
	p := make([]float32, n*k)
	for i := 0; i < n; i++ {
		softmax(p[i*k:(i+1)*k], h[i*k:(i+1)*k])
	}
	return &AttackLoss{be: be, p: p, k: k}
}

// Grad implements attack.Loss: d KL(p ‖ softmax z)/dz = softmax(z) − p.
func (a *AttackLoss) Grad(dz, z *tensor.Tensor, perExample []float32) {
	n, k := z.Dim(0), a.k
	a.hostZ = grow(a.hostZ, n*k)
	a.hostD = grow(a.hostD, n*k)
	a.be.Download(a.hostZ, z)
	q := make([]float32, k)
	for i := 0; i < n; i++ {
		softmax(q, a.hostZ[i*k:(i+1)*k])
		var kl float64
		for j := 0; j < k; j++ {
			p := float64(a.p[i*k+j])
			a.hostD[i*k+j] = float32(float64(q[j]) - p)
			if p > 0 {
				kl += p * (math.Log(p) - math.Log(math.Max(float64(q[j]), 1e-30)))
			}
		}
		if perExample != nil {
			perExample[i] = float32(kl)
		}
	}
	a.be.Upload(dz, a.hostD)
}

// klPair adds the gradient of weight·(1/m)·Σ KL(p_i ‖ q_i) into dz (host, 2m×K,
// clean rows first) given logits z, and returns (1/m)·Σ KL.
func klPair(z, dz []float32, m, k int, weight float64) float64 {
	p := make([]float64, k)
	q := make([]float64, k)
	lp := make([]float64, k)
	lq := make([]float64, k)
	var total float64
	for i := 0; i < m; i++ {
		logSoftmax(lp, z[i*k:(i+1)*k])
		logSoftmax(lq, z[(m+i)*k:(m+i+1)*k])
		var kl float64
		for j := 0; j < k; j++ {
			p[j], q[j] = math.Exp(lp[j]), math.Exp(lq[j])
			kl += p[j] * (lp[j] - lq[j])
		}
		total += kl
		g := weight / float64(m)
		for j := 0; j < k; j++ {
			dz[i*k+j] += float32(g * p[j] * (lp[j] - lq[j] - kl))
			dz[(m+i)*k+j] += float32(g * (q[j] - p[j]))
		}
	}
	return total / float64(m)
}

func logSoftmax(out []float64, z []float32) {
	mx := float64(z[0])
	for _, v := range z {
		mx = math.Max(mx, float64(v))
	}
	var s float64
	for _, v := range z {
		s += math.Exp(float64(v) - mx)
	}
	l := mx + math.Log(s)
	for j, v := range z {
		out[j] = float64(v) - l
	}
}

func softmax(out, z []float32) {
	l := make([]float64, len(z))
	logSoftmax(l, z)
	for j := range l {
		out[j] = float32(math.Exp(l[j]))
	}
}

func accuracy(z []float32, labels []int32, k int) float64 {
	correct := 0
	for i, y := range labels {
		row := z[i*k : (i+1)*k]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		if best == int(y) {
			correct++
		}
	}
	return float64(correct) / float64(len(labels))
}

func meanNorm(z []float32, n, k int) float64 {
	var s float64
	for i := 0; i < n; i++ {
		var ss float64
		for _, v := range z[i*k : (i+1)*k] {
			ss += float64(v) * float64(v)
		}
		s += math.Sqrt(ss)
	}
	return s / float64(n)
}

func mean(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x)
	}
	return s / float64(len(v))
}

// betaSample draws Beta(α, α) as X/(X+Y) with X, Y ~ Gamma(α, 1)
// (Marsaglia–Tsang, with the α < 1 boost).
func betaSample(rng *rand.Rand, alpha float64) float64 {
	x, y := gammaSample(rng, alpha), gammaSample(rng, alpha)
	if x+y == 0 {
		return 0.5
	}
	return x / (x + y)
}

func gammaSample(rng *rand.Rand, a float64) float64 {
	if a < 1 {
		u := rng.Float64()
		return gammaSample(rng, 1+a) * math.Pow(u, 1/a)
	}
	d := a - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

func (o *Objective) buf(m map[int]*tensor.Tensor, shape ...int) *tensor.Tensor {
	key := tensor.Shape(shape).Numel()*31 + len(shape)
	for _, d := range shape {
		key = key*131 + d
	}
	t, ok := m[key]
	if !ok || !t.Shape().Equal(shape) {
		t = o.be.New(shape...)
		m[key] = t
	}
	return t
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func growI(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}
