package optim

import "fmt"

// SGDConfig configures SGD.
type SGDConfig struct {
	Momentum float64 // μ, in [0, 1); 0 is plain SGD (no state)
	Nesterov bool    // Nesterov momentum; needs Momentum > 0
}

// DefaultSGD returns plain SGD (μ = 0, no Nesterov).
func DefaultSGD() SGDConfig { return SGDConfig{} }

// Validate checks the ranges of the settings.
func (c SGDConfig) Validate() error {
	if !unit(c.Momentum) {
		return fmt.Errorf("sgd: momentum must be in [0,1), got %v", c.Momentum)
	}
	if c.Nesterov && c.Momentum == 0 {
		return fmt.Errorf("sgd: nesterov needs momentum > 0, got %v", c.Momentum)
	}
	return nil
}

// SGD is PyTorch's torch.optim.SGD (dampening 0, no weight decay), per
// element:
//
//	buf ← μ·buf + g                 buf starts at 0 (PyTorch's first buf = g is the same)
//	θ   ← θ − lr·buf                (μ = 0: θ ← θ − lr·g, and no state)
//	θ   ← θ − lr·(g + μ·buf)        (Nesterov, with the buf just updated)
type SGD struct {
	cfg SGDConfig
	buf []float32
	n   int
}

// NewSGD returns SGD for n parameters, with buf = 0 when μ > 0.
func NewSGD(cfg SGDConfig, n int) (*SGD, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkLen("sgd", n); err != nil {
		return nil, err
	}
	o := &SGD{cfg: cfg, n: n}
	if cfg.Momentum != 0 {
		o.buf = make([]float32, n)
	}
	return o, nil
}

// Name returns "sgd".
func (o *SGD) Name() string { return KindSGD }

// Config returns the settings the optimizer was built with.
func (o *SGD) Config() SGDConfig { return o.cfg }

// Step applies one SGD update (t is not used). In float32, with lr and μ
// rounded to float32:
//
//	plain:    θ = θ − lr·g
//	momentum: buf = buf·μ + g;  θ = θ − lr·buf
//	Nesterov: buf = buf·μ + g;  θ = θ − lr·(g + μ·buf)
func (o *SGD) Step(params, grad []float32, lr float64, t int64) error {
	if err := checkStep(KindSGD, o.n, params, grad, lr, t); err != nil {
		return err
	}
	lr32, mu := float32(lr), float32(o.cfg.Momentum)
	n := o.n
	p, g := params[:n], grad[:n]
	switch {
	case o.buf == nil:
		forChunks(n, func(lo, hi int) {
			p, g := p[lo:hi], g[lo:hi]
			for i := range p {
				p[i] -= float32(lr32 * g[i])
			}
		})
	case o.cfg.Nesterov:
		b := o.buf[:n]
		forChunks(n, func(lo, hi int) {
			p, g, b := p[lo:hi], g[lo:hi], b[lo:hi]
			for i := range p {
				b[i] = float32(b[i]*mu) + g[i]
				p[i] -= float32(lr32 * (g[i] + float32(mu*b[i])))
			}
		})
	default:
		b := o.buf[:n]
		forChunks(n, func(lo, hi int) {
			p, g, b := p[lo:hi], g[lo:hi], b[lo:hi]
			for i := range p {
				b[i] = float32(b[i]*mu) + g[i]
				p[i] -= float32(lr32 * b[i])
			}
		})
	}
	return nil
}

// State returns "mom" (the momentum buffer, a live view) when μ > 0, and no
// slots for plain SGD.
func (o *SGD) State() []NamedState {
	if o.buf == nil {
		return nil
	}
	return []NamedState{{Name: "mom", Data: o.buf}}
}

// SetState restores "mom" (when μ > 0; plain SGD takes no slots).
func (o *SGD) SetState(states []NamedState) error {
	if o.buf == nil {
		return setSlots(KindSGD, o.n, states, nil, nil)
	}
	return setSlots(KindSGD, o.n, states, []string{"mom"}, [][]float32{o.buf})
}
