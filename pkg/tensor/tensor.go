// Package tensor defines logitpair's float32 tensors and the op-level Backend
// interface that every numeric backend (CPU today, CUDA later) implements.
//
// Layout is always row-major with images in NCHW order. A Tensor is a shape
// plus a Storage that belongs to the Backend that allocated it: models, attacks
// and objectives never index a tensor's memory directly, they call Backend ops,
// so a device backend can keep parameters and activations on the device across
// all PGD steps. Host memory is touched only at explicit boundaries: Upload
// (load a batch or parameters) and Download (read logits or a gradient).
//
// Error policy (as gonum's mat package): a shape mismatch between tensors is a
// programmer error and panics with a *ShapeError wrapping ErrShape; use Maybe
// to turn such a panic into an error. Anything that comes from data or the
// network (a corrupt file, a wrong-length payload) is a returned error, never a
// panic.
package tensor

import (
	"errors"
	"fmt"
	"strings"
)

// ErrShape is the sentinel wrapped by every shape panic raised by this package
// and its backends.
var ErrShape = errors.New("tensor: shape mismatch")

// ShapeError describes a shape mismatch: which operation, what it expected and
// what it got. It wraps ErrShape.
type ShapeError struct {
	Op  string
	Msg string
}

func (e *ShapeError) Error() string { return "tensor: " + e.Op + ": " + e.Msg }

// Unwrap lets errors.Is(err, ErrShape) match.
func (e *ShapeError) Unwrap() error { return ErrShape }

// Panicf panics with a *ShapeError for op. Backends and layers call it when
// the shapes they were given do not fit together.
func Panicf(op, format string, args ...any) {
	panic(&ShapeError{Op: op, Msg: fmt.Sprintf(format, args...)})
}

// Maybe runs fn and returns a shape panic raised inside it as an error. Other
// panics propagate.
func Maybe(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if se, ok := r.(*ShapeError); ok {
				err = se
				return
			}
			panic(r)
		}
	}()
	fn()
	return nil
}

// Shape is a tensor's dimensions, outermost first (N, C, H, W for images).
type Shape []int

// Numel is the number of elements, the product of the dimensions (1 for a
// scalar shape).
func (s Shape) Numel() int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Equal reports whether two shapes have the same dimensions.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy that does not alias s.
func (s Shape) Clone() Shape { return append(Shape(nil), s...) }

func (s Shape) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// Storage is a backend's memory for one tensor. Only the backend that made it
// knows its concrete type.
type Storage interface {
	// Len is the number of float32 elements the storage holds.
	Len() int
	// Slice returns storage aliasing elements [off, off+n).
	Slice(off, n int) Storage
}

// Tensor is a float32 array of a given shape whose memory is owned by a
// Backend. The zero value is not usable; obtain tensors from Backend.New.
type Tensor struct {
	shape   Shape
	storage Storage
}

// FromStorage wraps storage as a tensor of the given shape. It is meant for
// backends; it panics if the storage is smaller than the shape.
func FromStorage(st Storage, shape ...int) *Tensor {
	s := Shape(shape).Clone()
	for _, d := range s {
		if d < 0 {
			Panicf("FromStorage", "negative dimension in %v", s)
		}
	}
	if st.Len() < s.Numel() {
		Panicf("FromStorage", "storage of %d elements cannot hold shape %v", st.Len(), s)
	}
	return &Tensor{shape: s, storage: st}
}

// Shape returns the tensor's shape. Callers must not modify it.
func (t *Tensor) Shape() Shape { return t.shape }

// Dim returns dimension i.
func (t *Tensor) Dim(i int) int { return t.shape[i] }

// Rank is the number of dimensions.
func (t *Tensor) Rank() int { return len(t.shape) }

// Numel is the number of elements.
func (t *Tensor) Numel() int { return t.shape.Numel() }

// Storage returns the backend storage. Only backends should look inside it.
func (t *Tensor) Storage() Storage { return t.storage }

// Reshape returns a view with a new shape over the same storage. It panics
// with ErrShape if the element counts differ. One dimension may be -1 and is
// then inferred.
func (t *Tensor) Reshape(shape ...int) *Tensor {
	s := Shape(shape).Clone()
	infer := -1
	known := 1
	for i, d := range s {
		if d == -1 {
			if infer >= 0 {
				Panicf("Reshape", "more than one -1 in %v", s)
			}
			infer = i
			continue
		}
		known *= d
	}
	if infer >= 0 {
		if known == 0 || t.Numel()%known != 0 {
			Panicf("Reshape", "cannot reshape %v into %v", t.shape, Shape(shape))
		}
		s[infer] = t.Numel() / known
	}
	if s.Numel() != t.Numel() {
		Panicf("Reshape", "cannot reshape %v (%d elements) into %v (%d elements)", t.shape, t.Numel(), s, s.Numel())
	}
	return &Tensor{shape: s, storage: t.storage}
}

// Rows returns a view of rows [lo, hi) along the first dimension (e.g. a
// sub-batch), sharing storage.
func (t *Tensor) Rows(lo, hi int) *Tensor {
	if len(t.shape) == 0 || lo < 0 || hi > t.shape[0] || lo > hi {
		Panicf("Rows", "rows [%d, %d) out of range for shape %v", lo, hi, t.shape)
	}
	inner := 1
	for _, d := range t.shape[1:] {
		inner *= d
	}
	s := t.shape.Clone()
	s[0] = hi - lo
	return &Tensor{shape: s, storage: t.storage.Slice(lo*inner, (hi-lo)*inner)}
}

// SameShape panics with ErrShape unless every tensor has a's shape.
func SameShape(op string, a *Tensor, others ...*Tensor) {
	for _, o := range others {
		if !a.shape.Equal(o.shape) {
			Panicf(op, "shapes differ: %v vs %v", a.shape, o.shape)
		}
	}
}

// CheckShape panics with ErrShape unless t has exactly the given shape.
func CheckShape(op, name string, t *Tensor, want ...int) {
	if !t.shape.Equal(want) {
		Panicf(op, "%s has shape %v, want %v", name, t.shape, Shape(want))
	}
}
