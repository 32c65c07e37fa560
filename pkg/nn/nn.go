// Package nn holds logitpair's layers, each with its Forward and Backward side
// by side, written only against the op-level tensor.Backend so they run
// unchanged on any backend.
//
// Conventions (PyTorch's, so weights move to and from PyTorch with no
// conversion): images are NCHW; conv weights are OIHW; dense weights are
// (out, in); parameters carry their state_dict names ("conv1.weight").
//
// A layer allocates its output and gradient buffers once per batch size and
// reuses them, so a steady-state training or attack step allocates (nearly)
// nothing. The tensor a Forward or Backward returns belongs to the layer and
// is overwritten by the next call with the same batch size.
//
// Backward overwrites parameter gradients (it does not accumulate), computes
// them only when asked (Grad.Params), and computes the input gradient only
// when asked (Grad.Input): a PGD step needs dL/dx alone and skips the
// weight-gradient GEMMs, while a training step on the first layer needs the
// weight gradients alone.
package nn

import (
	"fmt"

	"github.com/logitpair/logitpair/pkg/tensor"
)

// Role says what a parameter or buffer is, which decides its initialization
// and whether weight decay applies.
type Role int

const (
	// Weight is a conv or dense kernel: weight decay applies.
	Weight Role = iota
	// Bias is an additive bias.
	Bias
	// Gamma is a batch-norm scale.
	Gamma
	// Beta is a batch-norm shift.
	Beta
	// RunningMean is a batch-norm buffer (non-trainable).
	RunningMean
	// RunningVar is a batch-norm buffer (non-trainable).
	RunningVar
)

// Trainable reports whether parameters of this role receive gradients.
func (r Role) Trainable() bool { return r <= Beta }

// Decayed reports whether TF-slim's l2_regularizer applies (conv and dense
// kernels only, not biases or batch-norm parameters).
func (r Role) Decayed() bool { return r == Weight }

// Param is a named tensor of a model: a trainable parameter (Grad non-nil) or
// a float buffer such as batch norm's running statistics (Grad nil).
type Param struct {
	Name  string
	Role  Role
	Value *tensor.Tensor
	Grad  *tensor.Tensor
	// FanIn is the number of inputs per output unit (for initialization).
	FanIn int
}

// IntBuffer is an integer buffer saved with a model (PyTorch's int64
// num_batches_tracked).
type IntBuffer struct {
	Name  string
	Value *int64
}

// Grad selects what a Backward computes.
type Grad struct {
	// Params: compute parameter gradients.
	Params bool
	// Input: compute and return the input gradient.
	Input bool
}

// Layer is one differentiable stage. Forward's train flag selects training
// behaviour (batch statistics in batch norm); Backward must follow the
// Forward whose output it differentiates, with dy of that output's shape. It
// returns dx when g.Input is set, nil otherwise.
type Layer interface {
	Forward(x *tensor.Tensor, train bool) *tensor.Tensor
	Backward(dy *tensor.Tensor, g Grad) *tensor.Tensor
	// Params lists trainable parameters and float buffers, in a stable order.
	Params() []*Param
}

// IntBufferer is implemented by layers that hold integer buffers.
type IntBufferer interface {
	IntBuffers() []*IntBuffer
}

func newParam(be tensor.Backend, name string, role Role, fanIn int, shape ...int) *Param {
	p := &Param{Name: name, Role: role, Value: be.New(shape...), FanIn: fanIn}
	if role.Trainable() {
		p.Grad = be.New(shape...)
	}
	return p
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// perBatch caches a layer's buffers per batch size (attacks run at batch m,
// training at 2m: both stay allocated).
type perBatch[T any] struct {
	m   map[int]*T
	cur *T
}

func (p *perBatch[T]) get(n int, alloc func() *T) *T {
	if p.m == nil {
		p.m = map[int]*T{}
	}
	s, ok := p.m[n]
	if !ok {
		s = alloc()
		p.m[n] = s
	}
	p.cur = s
	return s
}

// last returns the state of the last Forward, panicking if there was none.
func (p *perBatch[T]) last(op string) *T {
	if p.cur == nil {
		panic(fmt.Sprintf("nn: %s: Backward before Forward", op))
	}
	return p.cur
}

// Sequential runs layers one after another.
type Sequential struct {
	Layers []Layer
}

// NewSequential returns a Sequential of the given layers.
func NewSequential(layers ...Layer) *Sequential { return &Sequential{Layers: layers} }

// Forward implements Layer.
func (s *Sequential) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	for _, l := range s.Layers {
		x = l.Forward(x, train)
	}
	return x
}

// Backward implements Layer. Every layer but the first must produce its input
// gradient for the layer before it.
func (s *Sequential) Backward(dy *tensor.Tensor, g Grad) *tensor.Tensor {
	return s.BackwardEach(dy, g, nil)
}

// BackwardEach is Backward that also reports its progress: done(i), when
// done is not nil, is called as soon as leaf i of Leaves() has returned
// from its Backward, so that (with g.Params) the gradients of its
// parameters are final. The leaves finish from the last to the first, so
// done sees i = len(Leaves())−1, …, 1, 0, one call each, on the calling
// goroutine. The layers' Backward calls are exactly Backward's: a nested
// Sequential is descended into rather than called, with the Grad it would
// have been given.
func (s *Sequential) BackwardEach(dy *tensor.Tensor, g Grad, done func(leaf int)) *tensor.Tensor {
	next := 0
	if done != nil {
		next = s.countLeaves()
	}
	return s.backwardEach(dy, g, done, &next)
}

// backwardEach runs the layers from the last to the first; *next is one
// above the index (in Leaves()) of the last leaf it will finish.
func (s *Sequential) backwardEach(dy *tensor.Tensor, g Grad, done func(int), next *int) *tensor.Tensor {
	for i := len(s.Layers) - 1; i >= 0; i-- {
		gi := g
		if i > 0 {
			gi.Input = true
		}
		if inner, ok := s.Layers[i].(*Sequential); ok {
			dy = inner.backwardEach(dy, gi, done, next)
			continue
		}
		dy = s.Layers[i].Backward(dy, gi)
		if done != nil {
			*next--
			done(*next)
		}
	}
	return dy
}

// Leaves returns the layers of s in forward order with every nested
// Sequential replaced by its own leaves: the units whose completion
// BackwardEach reports. Their Params, concatenated, are s.Params().
func (s *Sequential) Leaves() []Layer {
	var out []Layer
	for _, l := range s.Layers {
		if inner, ok := l.(*Sequential); ok {
			out = append(out, inner.Leaves()...)
		} else {
			out = append(out, l)
		}
	}
	return out
}

func (s *Sequential) countLeaves() int {
	n := 0
	for _, l := range s.Layers {
		if inner, ok := l.(*Sequential); ok {
			n += inner.countLeaves()
		} else {
			n++
		}
	}
	return n
}

// Params implements Layer.
func (s *Sequential) Params() []*Param {
	var out []*Param
	for _, l := range s.Layers {
		out = append(out, l.Params()...)
	}
	return out
}

// IntBuffers collects the integer buffers of every layer.
func (s *Sequential) IntBuffers() []*IntBuffer { return CollectIntBuffers(s.Layers...) }

// CollectIntBuffers returns the integer buffers of the given layers in order.
func CollectIntBuffers(layers ...Layer) []*IntBuffer {
	var out []*IntBuffer
	for _, l := range layers {
		if ib, ok := l.(IntBufferer); ok {
			out = append(out, ib.IntBuffers()...)
		}
	}
	return out
}
