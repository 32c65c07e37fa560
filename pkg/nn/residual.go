package nn

import "github.com/logitpair/logitpair/pkg/tensor"

// Residual adds its input to a branch's output: y = x + f(x), so
// dx = dy + f'(x)ᵀ·dy (ResNet-9's residual blocks).
type Residual struct {
	be     tensor.Backend
	F      Layer
	states perBatch[actState]
}

// NewResidual wraps f as x + f(x).
func NewResidual(be tensor.Backend, f Layer) *Residual { return &Residual{be: be, F: f} }

// Forward implements Layer.
func (r *Residual) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	fx := r.F.Forward(x, train)
	st := r.states.get(x.Dim(0), func() *actState { return &actState{y: r.be.New(x.Shape()...)} })
	r.be.Add(st.y, x, fx)
	return st.y
}

// Backward implements Layer.
func (r *Residual) Backward(dy *tensor.Tensor, g Grad) *tensor.Tensor {
	st := r.states.last("Residual")
	dfx := r.F.Backward(dy, Grad{Params: g.Params, Input: g.Input})
	if !g.Input {
		return nil
	}
	if st.dx == nil {
		st.dx = r.be.New(st.y.Shape()...)
	}
	r.be.Add(st.dx, dy, dfx)
	return st.dx
}

// Params implements Layer.
func (r *Residual) Params() []*Param { return r.F.Params() }

// IntBuffers implements IntBufferer.
func (r *Residual) IntBuffers() []*IntBuffer { return CollectIntBuffers(r.F) }
