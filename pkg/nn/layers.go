package nn

import (
	"math"

	"github.com/logitpair/logitpair/pkg/tensor"
)

// Conv2D is a 2-D convolution (cross-correlation) with optional bias.
//
//	y[n,o,i,j] = b[o] + Σ_{c,a,d} W[o,c,a,d] · x[n, c, i·sh − pt + a, j·sw − pl + d]
//
// weight: (Cout, Cin, KH, KW) (PyTorch's OIHW); bias: (Cout).
type Conv2D struct {
	be     tensor.Backend
	P      tensor.ConvParams
	W, B   *Param
	states perBatch[convState]
}

type convState struct {
	plan  tensor.Conv
	x     *tensor.Tensor
	y, dx *tensor.Tensor
}

// NewConv2D makes a conv layer named prefix (parameters prefix.weight and,
// with bias, prefix.bias).
func NewConv2D(be tensor.Backend, prefix string, cin, cout, kh, kw int, p tensor.ConvParams, bias bool) *Conv2D {
	fan := cin * kh * kw
	c := &Conv2D{be: be, P: p, W: newParam(be, join(prefix, "weight"), Weight, fan, cout, cin, kh, kw)}
	if bias {
		c.B = newParam(be, join(prefix, "bias"), Bias, fan, cout)
	}
	return c
}

// WithReLU fuses a ReLU after the convolution (y = max(conv + b, 0)), the
// same function as Conv2D followed by ReLU but one pass over the activations
// fewer each way. It returns c.
func (c *Conv2D) WithReLU() *Conv2D {
	c.P.ReLU = true
	return c
}

// Same returns symmetric PyTorch padding k/2 for an odd kernel at stride s
// ('same' for stride 1).
func Same(k, s int) tensor.ConvParams {
	return tensor.ConvParams{StrideH: s, StrideW: s, PadTop: k / 2, PadBottom: k / 2, PadLeft: k / 2, PadRight: k / 2}
}

// Pad returns symmetric explicit padding pad at stride s.
func Pad(pad, s int) tensor.ConvParams {
	return tensor.ConvParams{StrideH: s, StrideW: s, PadTop: pad, PadBottom: pad, PadLeft: pad, PadRight: pad}
}

// Forward implements Layer.
func (c *Conv2D) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	if x.Rank() != 4 {
		tensor.Panicf("Conv2D "+c.W.Name, "want input (N,C,H,W), got %v", x.Shape())
	}
	st := c.states.get(x.Dim(0), func() *convState {
		plan := c.be.NewConv(x.Shape(), c.W.Value.Shape(), c.P)
		return &convState{plan: plan, y: c.be.New(plan.OutShape()...)}
	})
	var b *tensor.Tensor
	if c.B != nil {
		b = c.B.Value
	}
	st.x = x
	st.plan.Forward(st.y, x, c.W.Value, b)
	return st.y
}

// Backward implements Layer.
func (c *Conv2D) Backward(dy *tensor.Tensor, g Grad) *tensor.Tensor {
	st := c.states.last("Conv2D " + c.W.Name)
	var dx, dw, db *tensor.Tensor
	if g.Input {
		if st.dx == nil {
			st.dx = c.be.New(st.x.Shape()...)
		}
		dx = st.dx
	}
	if g.Params {
		dw = c.W.Grad
		if c.B != nil {
			db = c.B.Grad
		}
	}
	st.plan.Backward(dx, dw, db, dy, st.x, c.W.Value)
	return dx
}

// Params implements Layer.
func (c *Conv2D) Params() []*Param {
	if c.B == nil {
		return []*Param{c.W}
	}
	return []*Param{c.W, c.B}
}

// Dense is a fully connected layer: y = x·Wᵀ + b, x: (N, in), W: (out, in),
// b: (out), y: (N, out).
type Dense struct {
	be     tensor.Backend
	W, B   *Param
	states perBatch[denseState]
}

type denseState struct{ x, y, dx *tensor.Tensor }

// NewDense makes a dense layer named prefix.
func NewDense(be tensor.Backend, prefix string, in, out int, bias bool) *Dense {
	d := &Dense{be: be, W: newParam(be, join(prefix, "weight"), Weight, in, out, in)}
	if bias {
		d.B = newParam(be, join(prefix, "bias"), Bias, in, out)
	}
	return d
}

// Forward implements Layer.
func (d *Dense) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	if x.Rank() != 2 || x.Dim(1) != d.W.Value.Dim(1) {
		tensor.Panicf("Dense "+d.W.Name, "input %v, want (N, %d)", x.Shape(), d.W.Value.Dim(1))
	}
	st := d.states.get(x.Dim(0), func() *denseState {
		return &denseState{y: d.be.New(x.Dim(0), d.W.Value.Dim(0))}
	})
	st.x = x
	d.be.MatMul(st.y, x, d.W.Value, false, true, 1, 0) // y = x·Wᵀ
	if d.B != nil {
		d.be.AddBias(st.y, d.B.Value)
	}
	return st.y
}

// Backward implements Layer: dx = dy·W, dW = dyᵀ·x, db = Σ_n dy.
func (d *Dense) Backward(dy *tensor.Tensor, g Grad) *tensor.Tensor {
	st := d.states.last("Dense " + d.W.Name)
	tensor.SameShape("Dense "+d.W.Name, dy, st.y)
	if g.Params {
		d.be.MatMul(d.W.Grad, dy, st.x, true, false, 1, 0)
		if d.B != nil {
			d.be.BiasGrad(d.B.Grad, dy)
		}
	}
	if !g.Input {
		return nil
	}
	if st.dx == nil {
		st.dx = d.be.New(st.x.Shape()...)
	}
	d.be.MatMul(st.dx, dy, d.W.Value, false, false, 1, 0)
	return st.dx
}

// Params implements Layer.
func (d *Dense) Params() []*Param {
	if d.B == nil {
		return []*Param{d.W}
	}
	return []*Param{d.W, d.B}
}

// ReLU is y = max(x, 0); dx = dy·[y > 0].
type ReLU struct {
	be     tensor.Backend
	states perBatch[actState]
}

type actState struct{ y, dx *tensor.Tensor }

// NewReLU returns a ReLU layer.
func NewReLU(be tensor.Backend) *ReLU { return &ReLU{be: be} }

// Forward implements Layer.
func (r *ReLU) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	st := r.states.get(x.Dim(0), func() *actState { return &actState{y: r.be.New(x.Shape()...)} })
	r.be.ReLU(st.y, x)
	return st.y
}

// Backward implements Layer.
func (r *ReLU) Backward(dy *tensor.Tensor, g Grad) *tensor.Tensor {
	st := r.states.last("ReLU")
	if !g.Input {
		return nil
	}
	if st.dx == nil {
		st.dx = r.be.New(st.y.Shape()...)
	}
	r.be.ReLUBackward(st.dx, dy, st.y)
	return st.dx
}

// Params implements Layer.
func (r *ReLU) Params() []*Param { return nil }

// Scale multiplies by a constant: y = α·x, dx = α·dy (ResNet-9's 0.125 on
// the logits).
type Scale struct {
	be     tensor.Backend
	Alpha  float32
	states perBatch[actState]
}

// NewScale returns a Scale layer.
func NewScale(be tensor.Backend, alpha float32) *Scale { return &Scale{be: be, Alpha: alpha} }

// Forward implements Layer.
func (s *Scale) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	st := s.states.get(x.Dim(0), func() *actState { return &actState{y: s.be.New(x.Shape()...)} })
	s.be.Copy(st.y, x)
	s.be.Scale(st.y, s.Alpha)
	return st.y
}

// Backward implements Layer.
func (s *Scale) Backward(dy *tensor.Tensor, g Grad) *tensor.Tensor {
	st := s.states.last("Scale")
	if !g.Input {
		return nil
	}
	if st.dx == nil {
		st.dx = s.be.New(st.y.Shape()...)
	}
	s.be.Copy(st.dx, dy)
	s.be.Scale(st.dx, s.Alpha)
	return st.dx
}

// Params implements Layer.
func (s *Scale) Params() []*Param { return nil }

// Flatten reshapes (N, C, H, W) to (N, C·H·W) in C, H, W order (PyTorch's
// flatten), as a view; Backward reshapes dy back.
type Flatten struct{ in tensor.Shape }

// NewFlatten returns a Flatten layer.
func NewFlatten() *Flatten { return &Flatten{} }

// Forward implements Layer.
func (f *Flatten) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	f.in = x.Shape()
	return x.Reshape(x.Dim(0), -1)
}

// Backward implements Layer.
func (f *Flatten) Backward(dy *tensor.Tensor, g Grad) *tensor.Tensor {
	if f.in == nil {
		panic("nn: Flatten: Backward before Forward")
	}
	if !g.Input {
		return nil
	}
	return dy.Reshape(f.in...)
}

// Params implements Layer.
func (f *Flatten) Params() []*Param { return nil }

// Pool is max or average pooling over a fixed window, or over the whole
// spatial extent when Global is set (global average pool, or ResNet-9's
// global max pool).
type Pool struct {
	be     tensor.Backend
	Max    bool
	Global bool
	P      tensor.PoolParams
	states perBatch[poolState]
}

type poolState struct {
	p        tensor.PoolParams
	plan     tensor.MaxPool
	x, y, dx *tensor.Tensor
}

// NewMaxPool returns max pooling with a k×k window at stride s and padding pad.
func NewMaxPool(be tensor.Backend, k, s, pad int) *Pool {
	return &Pool{be: be, Max: true, P: tensor.PoolParams{KernelH: k, KernelW: k, StrideH: s, StrideW: s, PadH: pad, PadW: pad}}
}

// NewAvgPool returns average pooling (padding counted in the divisor).
func NewAvgPool(be tensor.Backend, k, s, pad int) *Pool {
	p := NewMaxPool(be, k, s, pad)
	p.Max = false
	return p
}

// NewGlobalAvgPool averages each channel's H×W plane: (N,C,H,W) → (N,C,1,1).
func NewGlobalAvgPool(be tensor.Backend) *Pool { return &Pool{be: be, Global: true} }

// NewGlobalMaxPool takes each channel's maximum: (N,C,H,W) → (N,C,1,1).
func NewGlobalMaxPool(be tensor.Backend) *Pool { return &Pool{be: be, Global: true, Max: true} }

// Forward implements Layer.
func (p *Pool) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	if x.Rank() != 4 {
		tensor.Panicf("Pool2D", "want input (N,C,H,W), got %v", x.Shape())
	}
	st := p.states.get(x.Dim(0), func() *poolState {
		pp := p.P
		if p.Global {
			pp = tensor.PoolParams{KernelH: x.Dim(2), KernelW: x.Dim(3), StrideH: 1, StrideW: 1}
		}
		oh, ow := pp.OutSize(x.Dim(2), x.Dim(3))
		st := &poolState{p: pp, y: p.be.New(x.Dim(0), x.Dim(1), oh, ow)}
		if p.Max {
			st.plan = p.be.NewMaxPool(x.Shape(), pp)
		}
		return st
	})
	if p.Global && (st.p.KernelH != x.Dim(2) || st.p.KernelW != x.Dim(3)) {
		tensor.Panicf("Pool2D", "global pool set up for %d×%d, got input %v", st.p.KernelH, st.p.KernelW, x.Shape())
	}
	st.x = x
	if p.Max {
		st.plan.Forward(st.y, x)
	} else {
		p.be.AvgPool2D(st.y, x, st.p)
	}
	return st.y
}

// Backward implements Layer.
func (p *Pool) Backward(dy *tensor.Tensor, g Grad) *tensor.Tensor {
	st := p.states.last("Pool2D")
	if !g.Input {
		return nil
	}
	if st.dx == nil {
		st.dx = p.be.New(st.x.Shape()...)
	}
	if p.Max {
		st.plan.Backward(st.dx, dy)
	} else {
		p.be.AvgPool2DBackward(st.dx, dy, st.p)
	}
	return st.dx
}

// Params implements Layer.
func (p *Pool) Params() []*Param { return nil }

// BatchNorm normalizes over every dimension but 1 (BatchNorm1d on (N, C),
// BatchNorm2d on (N, C, H, W)), with PyTorch's parameters and buffers:
// weight (γ), bias (β), running_mean, running_var and num_batches_tracked.
//
// Training mode uses the batch statistics and updates the running ones with
// running = (1−momentum)·running + momentum·batch (unbiased variance);
// evaluation mode uses the running statistics.
type BatchNorm struct {
	be                tensor.Backend
	Momentum, Eps     float32
	Gamma, Beta       *Param
	Mean, Var         *Param
	NumBatchesTracked int64
	numName           string
	saveMean, saveInv *tensor.Tensor
	states            perBatch[bnState]
}

type bnState struct {
	train    bool
	x, y, dx *tensor.Tensor
}

// NewBatchNorm makes a batch-norm layer named prefix over c channels with
// PyTorch's defaults (momentum 0.1, eps 1e-5).
func NewBatchNorm(be tensor.Backend, prefix string, c int) *BatchNorm {
	return &BatchNorm{
		be: be, Momentum: 0.1, Eps: 1e-5,
		Gamma:    newParam(be, join(prefix, "weight"), Gamma, c, c),
		Beta:     newParam(be, join(prefix, "bias"), Beta, c, c),
		Mean:     newParam(be, join(prefix, "running_mean"), RunningMean, c, c),
		Var:      newParam(be, join(prefix, "running_var"), RunningVar, c, c),
		numName:  join(prefix, "num_batches_tracked"),
		saveMean: be.New(c),
		saveInv:  be.New(c),
	}
}

// Forward implements Layer.
func (b *BatchNorm) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	st := b.states.get(x.Dim(0), func() *bnState { return &bnState{y: b.be.New(x.Shape()...)} })
	st.x, st.train = x, train
	if train {
		b.be.BatchNormTrain(st.y, x, b.Gamma.Value, b.Beta.Value, b.Mean.Value, b.Var.Value, b.saveMean, b.saveInv, b.Momentum, b.Eps)
		b.NumBatchesTracked++
	} else {
		b.be.BatchNormEval(st.y, x, b.Gamma.Value, b.Beta.Value, b.Mean.Value, b.Var.Value, b.Eps)
	}
	return st.y
}

// Backward implements Layer.
func (b *BatchNorm) Backward(dy *tensor.Tensor, g Grad) *tensor.Tensor {
	st := b.states.last("BatchNorm " + b.Gamma.Name)
	var dg, db *tensor.Tensor
	if g.Params {
		dg, db = b.Gamma.Grad, b.Beta.Grad
	}
	if st.dx == nil {
		st.dx = b.be.New(st.x.Shape()...)
	}
	if st.train {
		// Training mode needs dx for the parameter gradients too; it is cheap.
		b.be.BatchNormBackward(st.dx, dg, db, dy, st.x, b.Gamma.Value, b.saveMean, b.saveInv)
	} else {
		b.be.BatchNormEvalBackward(st.dx, dg, db, dy, st.x, b.Gamma.Value, b.Mean.Value, b.Var.Value, b.Eps)
	}
	if !g.Input {
		return nil
	}
	return st.dx
}

// Params implements Layer.
func (b *BatchNorm) Params() []*Param { return []*Param{b.Gamma, b.Beta, b.Mean, b.Var} }

// IntBuffers implements IntBufferer.
func (b *BatchNorm) IntBuffers() []*IntBuffer {
	return []*IntBuffer{{Name: b.numName, Value: &b.NumBatchesTracked}}
}

// InitDefault initializes parameters as PyTorch does by default: conv and
// dense weights and biases U(−1/√fan_in, 1/√fan_in) (kaiming_uniform with
// a=√5), batch-norm γ=1, β=0, running mean 0 and variance 1. uniform must
// return values in [0, 1).
func InitDefault(be tensor.Backend, params []*Param, uniform func() float64) {
	for _, p := range params {
		vals := make([]float32, p.Value.Numel())
		switch p.Role {
		case Weight, Bias:
			bound := 1 / math.Sqrt(float64(max(p.FanIn, 1)))
			for i := range vals {
				vals[i] = float32((2*uniform() - 1) * bound)
			}
		case Gamma, RunningVar:
			for i := range vals {
				vals[i] = 1
			}
		}
		be.Upload(p.Value, vals)
	}
}
