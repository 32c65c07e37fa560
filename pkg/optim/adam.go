package optim

import (
	"fmt"
	"math"
)

// AdamConfig configures Adam.
type AdamConfig struct {
	Beta1   float64 // β1, in [0, 1)
	Beta2   float64 // β2, in [0, 1)
	Epsilon float64 // ε, finite and > 0; added to √v̂ (PyTorch's place)
}

// DefaultAdam returns β1 = 0.9, β2 = 0.999, ε = 1e-8 (the TF and PyTorch
// defaults; Madry's MNIST setting pairs them with lr = 1e-4).
func DefaultAdam() AdamConfig { return AdamConfig{Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8} }

// Validate checks the ranges of the settings.
func (c AdamConfig) Validate() error {
	if !unit(c.Beta1) {
		return fmt.Errorf("adam: beta1 must be in [0,1), got %v", c.Beta1)
	}
	if !unit(c.Beta2) {
		return fmt.Errorf("adam: beta2 must be in [0,1), got %v", c.Beta2)
	}
	if !positive(c.Epsilon) {
		return fmt.Errorf("adam: epsilon must be finite and > 0, got %v", c.Epsilon)
	}
	return nil
}

// Adam is PyTorch's torch.optim.Adam (without weight decay or amsgrad), per
// element at 0-based step t, with k = t+1:
//
//	m ← β1·m + (1−β1)·g                       m starts at 0
//	v ← β2·v + (1−β2)·g²                      v starts at 0
//	θ ← θ − lr·m̂/(√v̂ + ε),   m̂ = m/(1−β1^k),  v̂ = v/(1−β2^k)
//
// TF's tf.train.AdamOptimizer computes the same thing except where ε sits:
//
//	lr_k = lr·√(1−β2^k)/(1−β1^k);   θ ← θ − lr_k·m/(√v + ε̂)
//
// which is PyTorch's rule with ε = ε̂/√(1−β2^k): for the same ε TF's
// effective ε is larger by 1/√(1−β2^k) (≈ 31.6× at k = 1 with β2 = 0.999,
// tending to 1× as k grows). This matters only while √v̂ is comparable to ε,
// e.g. on the first steps of parameters with tiny gradients. We implement
// PyTorch's form.
type Adam struct {
	cfg  AdamConfig
	m, v []float32
	n    int
}

// NewAdam returns Adam for n parameters with m = v = 0.
func NewAdam(cfg AdamConfig, n int) (*Adam, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkLen("adam", n); err != nil {
		return nil, err
	}
	return &Adam{cfg: cfg, n: n, m: make([]float32, n), v: make([]float32, n)}, nil
}

// Name returns "adam".
func (o *Adam) Name() string { return KindAdam }

// Config returns the settings the optimizer was built with.
func (o *Adam) Config() AdamConfig { return o.cfg }

// Step applies one Adam update at 0-based step t. The scalars are computed
// in float64 and rounded to float32 once, as PyTorch's Python-side scalars
// are:
//
//	b1 = float32(β1), c1 = float32(1−β1), b2 = float32(β2), c2 = float32(1−β2), e = float32(ε)
//	s  = float32(lr / (1 − β1^(t+1)))        step size
//	q  = float32(√(1 − β2^(t+1)))            root of the second bias correction
//
// and then per element, in float32:
//
//	m = m·b1 + c1·g
//	v = v·b2 + (c2·g)·g
//	d = √v/q + e
//	θ = θ − (s·m)/d
func (o *Adam) Step(params, grad []float32, lr float64, t int64) error {
	if err := checkStep(KindAdam, o.n, params, grad, lr, t); err != nil {
		return err
	}
	k := float64(t) + 1
	b1, c1 := float32(o.cfg.Beta1), float32(1-o.cfg.Beta1)
	b2, c2 := float32(o.cfg.Beta2), float32(1-o.cfg.Beta2)
	e := float32(o.cfg.Epsilon)
	s := float32(lr / (1 - math.Pow(o.cfg.Beta1, k)))
	q := float32(math.Sqrt(1 - math.Pow(o.cfg.Beta2, k)))
	n := o.n
	p, g, m, v := params[:n], grad[:n], o.m[:n], o.v[:n]
	forChunks(n, func(lo, hi int) {
		p, g, m, v := p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
		for i := range p {
			gi := g[i]
			m[i] = float32(m[i]*b1) + float32(c1*gi)
			v[i] = float32(v[i]*b2) + float32(float32(c2*gi)*gi)
			d := sqrt32(v[i])/q + e
			p[i] -= float32(s*m[i]) / d
		}
	})
	return nil
}

// State returns "m" and "v" (live views).
func (o *Adam) State() []NamedState {
	return []NamedState{{Name: "m", Data: o.m}, {Name: "v", Data: o.v}}
}

// SetState restores "m" and "v".
func (o *Adam) SetState(states []NamedState) error {
	return setSlots(KindAdam, o.n, states, []string{"m", "v"}, [][]float32{o.m, o.v})
}
