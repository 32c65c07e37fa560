package nn

import (
	"fmt"

	"github.com/logitpair/logitpair/pkg/tensor"
)

// Range is one named tensor's place in a flat parameter vector.
type Range struct {
	Name   string
	Offset int
	Size   int
	Shape  tensor.Shape
	Role   Role
}

// Layout maps named tensors onto one flat []float32 in a stable order (the
// order given), so the parameter servers can shard the vector by ranges
// (paramserver.Partition) and name the tensors each range holds.
type Layout struct {
	Ranges []Range
	Total  int
}

// NewLayout lays params out back to back in the given order.
func NewLayout(params []*Param) Layout {
	var l Layout
	for _, p := range params {
		l.Ranges = append(l.Ranges, Range{Name: p.Name, Offset: l.Total, Size: p.Value.Numel(), Shape: p.Value.Shape().Clone(), Role: p.Role})
		l.Total += p.Value.Numel()
	}
	return l
}

// Trainable returns the trainable parameters of params, in order.
func Trainable(params []*Param) []*Param {
	var out []*Param
	for _, p := range params {
		if p.Role.Trainable() {
			out = append(out, p)
		}
	}
	return out
}

// Buffers returns the non-trainable float buffers of params, in order.
func Buffers(params []*Param) []*Param {
	var out []*Param
	for _, p := range params {
		if !p.Role.Trainable() {
			out = append(out, p)
		}
	}
	return out
}

// Gather copies the values (or, with grads, the gradients) of params into
// dst, laid out as NewLayout(params).
func Gather(be tensor.Backend, params []*Param, dst []float32, grads bool) {
	off := 0
	for _, p := range params {
		t := p.Value
		if grads {
			if p.Grad == nil {
				panic(fmt.Sprintf("nn: Gather: %s has no gradient", p.Name))
			}
			t = p.Grad
		}
		n := t.Numel()
		if off+n > len(dst) {
			tensor.Panicf("Gather", "flat vector of %d is too short for %s at %d", len(dst), p.Name, off)
		}
		be.Download(dst[off:off+n], t)
		off += n
	}
	if off != len(dst) {
		tensor.Panicf("Gather", "flat vector of %d for parameters of total %d", len(dst), off)
	}
}

// Scatter sets the values of params from src, laid out as NewLayout(params).
func Scatter(be tensor.Backend, params []*Param, src []float32) {
	off := 0
	for _, p := range params {
		n := p.Value.Numel()
		if off+n > len(src) {
			tensor.Panicf("Scatter", "flat vector of %d is too short for %s at %d", len(src), p.Name, off)
		}
		be.Upload(p.Value, src[off:off+n])
		off += n
	}
	if off != len(src) {
		tensor.Panicf("Scatter", "flat vector of %d for parameters of total %d", len(src), off)
	}
}
