package optim

import (
	"fmt"
	"math"
)

// RMSPropConfig configures RMSProp as TensorFlow 1's tf.train.RMSPropOptimizer.
type RMSPropConfig struct {
	Decay    float64 // ρ, in [0, 1)
	Momentum float64 // μ, in [0, 1)
	Epsilon  float64 // ε, finite and > 0; added inside the square root
	Centered bool    // TF's centered variant: also track the mean gradient mg
}

// DefaultRMSProp returns the settings of the released ALP code: ρ = 0.9,
// μ = 0.9, ε = 1.0, not centered.
func DefaultRMSProp() RMSPropConfig {
	return RMSPropConfig{Decay: 0.9, Momentum: 0.9, Epsilon: 1.0}
}

// Validate checks the ranges of the settings.
func (c RMSPropConfig) Validate() error {
	if !unit(c.Decay) {
		return fmt.Errorf("rmsprop: decay must be in [0,1), got %v", c.Decay)
	}
	if !unit(c.Momentum) {
		return fmt.Errorf("rmsprop: momentum must be in [0,1), got %v", c.Momentum)
	}
	if !positive(c.Epsilon) {
		return fmt.Errorf("rmsprop: epsilon must be finite and > 0, got %v", c.Epsilon)
	}
	return nil
}

// RMSProp is TensorFlow 1's RMSProp (training_ops ApplyRMSProp and
// ApplyCenteredRMSProp), per element:
//
//	ms  ← ρ·ms + (1−ρ)·g²                 ms starts at 1 (TF's ones_initializer), not 0
//	mg  ← ρ·mg + (1−ρ)·g                  centered only; mg starts at 0
//	mom ← μ·mom + lr·g/√(ms + ε)          centered: lr·g/√(ms − mg² + ε); mom starts at 0
//	θ   ← θ − mom
//
// This is not PyTorch's torch.optim.RMSprop, which starts ms at 0, adds ε
// outside the square root (g/(√ms + ε)) and applies lr after the momentum
// buffer (buf ← μ·buf + g/(√ms + ε); θ ← θ − lr·buf). With the ALP setting
// ε = 1 the two differ a lot: at ms = 1 TF divides by √2 ≈ 1.41 where
// PyTorch divides by √1 + 1 = 2, and on the first step with a small gradient
// TF's ms is ≈ ρ = 0.9 (denominator ≈ √1.9 ≈ 1.38) where PyTorch's is ≈ 0
// (denominator ≈ 1). Hyper-parameters and checkpoints therefore do not move
// between the two rules.
type RMSProp struct {
	cfg         RMSPropConfig
	ms, mom, mg []float32
	omr         float32 // 1 − float32(ρ), rounded as TF rounds it
	mu, eps     float32
	n           int
}

// NewRMSProp returns RMSProp for n parameters with ms = 1, mom = 0 (and
// mg = 0 when centered).
func NewRMSProp(cfg RMSPropConfig, n int) (*RMSProp, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkLen("rmsprop", n); err != nil {
		return nil, err
	}
	rho := float32(cfg.Decay)
	o := &RMSProp{
		cfg: cfg, n: n,
		ms: make([]float32, n), mom: make([]float32, n),
		omr: 1 - rho, mu: float32(cfg.Momentum), eps: float32(cfg.Epsilon),
	}
	for i := range o.ms {
		o.ms[i] = 1
	}
	if cfg.Centered {
		o.mg = make([]float32, n)
	}
	return o, nil
}

// Name returns "rmsprop".
func (o *RMSProp) Name() string { return KindRMSProp }

// Config returns the settings the optimizer was built with.
func (o *RMSProp) Config() RMSPropConfig { return o.cfg }

// Step applies one RMSProp update (t is not used). The float32 order of
// operations is TF's kernel, with r = 1 − float32(ρ) and lr, μ, ε rounded to
// float32:
//
//	ms  = ms + (g·g − ms)·r                        (= ρ·ms + (1−ρ)·g² in exact arithmetic)
//	mg  = mg + (g − mg)·r                          (centered)
//	d   = √(ms + ε)                                (centered: √((ms − mg·mg) + ε))
//	mom = mom·μ + (g·lr)/d
//	θ   = θ − mom
//
// √ is the correctly rounded float32 square root.
func (o *RMSProp) Step(params, grad []float32, lr float64, t int64) error {
	if err := checkStep(KindRMSProp, o.n, params, grad, lr, t); err != nil {
		return err
	}
	lr32, r, mu, eps := float32(lr), o.omr, o.mu, o.eps
	n := o.n
	p, g, ms, mom := params[:n], grad[:n], o.ms[:n], o.mom[:n]
	if o.cfg.Centered {
		mg := o.mg[:n]
		forChunks(n, func(lo, hi int) {
			p, g, ms, mom, mg := p[lo:hi], g[lo:hi], ms[lo:hi], mom[lo:hi], mg[lo:hi]
			for i := range p {
				gi := g[i]
				ms[i] = ms[i] + float32((float32(gi*gi)-ms[i])*r)
				mg[i] = mg[i] + float32((gi-mg[i])*r)
				d := sqrt32(float32(ms[i]-float32(mg[i]*mg[i])) + eps)
				mom[i] = float32(mom[i]*mu) + float32(gi*lr32)/d
				p[i] -= mom[i]
			}
		})
		return nil
	}
	forChunks(n, func(lo, hi int) {
		p, g, ms, mom := p[lo:hi], g[lo:hi], ms[lo:hi], mom[lo:hi]
		for i := range p {
			gi := g[i]
			ms[i] = ms[i] + float32((float32(gi*gi)-ms[i])*r)
			d := sqrt32(ms[i] + eps)
			mom[i] = float32(mom[i]*mu) + float32(gi*lr32)/d
			p[i] -= mom[i]
		}
	})
	return nil
}

func (o *RMSProp) slots() ([]string, [][]float32) {
	if o.cfg.Centered {
		return []string{"ms", "mom", "mg"}, [][]float32{o.ms, o.mom, o.mg}
	}
	return []string{"ms", "mom"}, [][]float32{o.ms, o.mom}
}

// State returns "ms", "mom" and, when centered, "mg" (live views).
func (o *RMSProp) State() []NamedState {
	names, data := o.slots()
	out := make([]NamedState, len(names))
	for i := range names {
		out[i] = NamedState{Name: names[i], Data: data[i]}
	}
	return out
}

// SetState restores "ms", "mom" and, when centered, "mg".
func (o *RMSProp) SetState(states []NamedState) error {
	names, data := o.slots()
	return setSlots(KindRMSProp, o.n, states, names, data)
}

// sqrt32 is the correctly rounded float32 square root (the float64 root of a
// float32 rounds to the same float32 as an exact root would).
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }
