package nn

import (
	"github.com/logitpair/logitpair/pkg/tensor"
)

// Concat applies several branches to the same input and concatenates their
// outputs along dimension 1 (channels), as torch.cat([b(x) for b in
// branches], 1) does; Inception's mixed blocks are Concats. Every branch's
// output must have the same batch size and the same trailing dimensions
// (H, W for images); only dimension 1 may differ.
//
// Backward splits dy along dimension 1 into one contiguous gradient per
// branch, back-propagates each through its branch, and returns the sum of
// the branches' input gradients (the input feeds every branch).
//
// Only backend ops are used (row views, Copy, Add), so Concat runs on any
// backend: one Copy per example and branch each way.
type Concat struct {
	be       tensor.Backend
	Branches []Layer
	states   perBatch[concatState]
}

type concatState struct {
	y, dx *tensor.Tensor
	chans []int            // each branch's dimension 1
	inner int              // product of the dimensions after 1
	outs  []*tensor.Tensor // the branches' outputs in the last Forward
	dys   []*tensor.Tensor // per branch (N, C_i, ...): dy split, contiguous
	// yViews[i][e] and dyBranch[i][e] are example e's channels of branch i
	// in y and in dys[i]. The views of each branch output (forward) and of
	// dy (backward) are rebuilt only when the tensor they view changes.
	yViews   [][]*tensor.Tensor
	dyBranch [][]*tensor.Tensor
	outSrc   []*tensor.Tensor
	outViews [][]*tensor.Tensor
	dySrc    *tensor.Tensor
	dyViews  [][]*tensor.Tensor
}

// NewConcat returns the channel concatenation of branches, in order.
func NewConcat(be tensor.Backend, branches ...Layer) *Concat {
	if len(branches) == 0 {
		panic("nn: NewConcat: no branches")
	}
	return &Concat{be: be, Branches: branches}
}

// rowViews splits t, viewed as (N·C, inner), into N views of C rows each:
// example n's channels of t.
func rowViews(t *tensor.Tensor, n, c, inner int) []*tensor.Tensor {
	flat := t.Reshape(n*c, inner)
	out := make([]*tensor.Tensor, n)
	for i := range out {
		out[i] = flat.Rows(i*c, (i+1)*c)
	}
	return out
}

// Forward implements Layer.
func (c *Concat) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	if x.Rank() < 2 {
		tensor.Panicf("Concat", "want input of rank ≥ 2 (N, C, ...), got %v", x.Shape())
	}
	n := x.Dim(0)
	st := c.states.get(n, func() *concatState { return &concatState{outs: make([]*tensor.Tensor, len(c.Branches))} })
	outs := st.outs
	for i, b := range c.Branches {
		outs[i] = b.Forward(x, train)
	}
	first := outs[0].Shape()
	if len(first) < 2 {
		tensor.Panicf("Concat", "branch 0 output %v has no channel dimension", first)
	}
	total := 0
	for i, o := range outs {
		s := o.Shape()
		same := len(s) == len(first) && s[0] == first[0]
		for d := 2; same && d < len(s); d++ {
			same = s[d] == first[d]
		}
		if !same {
			tensor.Panicf("Concat", "branch %d output %v does not fit branch 0's %v (only dimension 1 may differ)", i, s, first)
		}
		total += s[1]
	}
	if !st.fits(outs) {
		c.setUp(st, outs, total)
	}
	for i, o := range outs {
		if st.outSrc[i] != o {
			st.outSrc[i], st.outViews[i] = o, rowViews(o, n, st.chans[i], st.inner)
		}
		for e := 0; e < n; e++ {
			c.be.Copy(st.yViews[i][e], st.outViews[i][e])
		}
	}
	return st.y
}

// fits reports whether st's buffers were set up for branch outputs of
// these shapes.
func (st *concatState) fits(outs []*tensor.Tensor) bool {
	if st.y == nil || st.y.Rank() != outs[0].Rank() {
		return false
	}
	for d := 2; d < st.y.Rank(); d++ {
		if st.y.Dim(d) != outs[0].Dim(d) {
			return false
		}
	}
	for i, o := range outs {
		if st.chans[i] != o.Dim(1) {
			return false
		}
	}
	return true
}

// setUp (re)allocates st's output and views for branch outputs outs whose
// dimension 1 sums to total.
func (c *Concat) setUp(st *concatState, outs []*tensor.Tensor, total int) {
	n := outs[0].Dim(0)
	yshape := outs[0].Shape().Clone()
	yshape[1] = total
	inner := 1
	for _, d := range yshape[2:] {
		inner *= d
	}
	chans := make([]int, len(outs))
	for i, o := range outs {
		chans[i] = o.Dim(1)
	}
	*st = concatState{y: c.be.New(yshape...), chans: chans, inner: inner, outs: outs,
		outSrc: make([]*tensor.Tensor, len(outs)), outViews: make([][]*tensor.Tensor, len(outs)),
		yViews: make([][]*tensor.Tensor, len(outs))}
	yflat := st.y.Reshape(n*total, inner)
	off := 0
	for i, ci := range chans {
		st.yViews[i] = make([]*tensor.Tensor, n)
		for e := 0; e < n; e++ {
			st.yViews[i][e] = yflat.Rows(e*total+off, e*total+off+ci)
		}
		off += ci
	}
}

// Backward implements Layer.
func (c *Concat) Backward(dy *tensor.Tensor, g Grad) *tensor.Tensor {
	st := c.states.last("Concat")
	tensor.SameShape("Concat", dy, st.y)
	if !g.Params && !g.Input {
		return nil
	}
	n := st.y.Dim(0)
	if st.dys == nil {
		st.dys = make([]*tensor.Tensor, len(c.Branches))
		st.dyBranch = make([][]*tensor.Tensor, len(c.Branches))
		for i, o := range st.outs {
			st.dys[i] = c.be.New(o.Shape()...)
			st.dyBranch[i] = rowViews(st.dys[i], n, st.chans[i], st.inner)
		}
	}
	if st.dySrc != dy {
		st.dySrc = dy
		st.dyViews = make([][]*tensor.Tensor, len(c.Branches))
		total := st.y.Dim(1)
		flat := dy.Reshape(n*total, st.inner)
		off := 0
		for i, ci := range st.chans {
			st.dyViews[i] = make([]*tensor.Tensor, n)
			for e := 0; e < n; e++ {
				st.dyViews[i][e] = flat.Rows(e*total+off, e*total+off+ci)
			}
			off += ci
		}
	}
	var dx *tensor.Tensor
	for i, b := range c.Branches {
		for e := 0; e < n; e++ {
			c.be.Copy(st.dyBranch[i][e], st.dyViews[i][e])
		}
		dxi := b.Backward(st.dys[i], g)
		if !g.Input {
			continue
		}
		if len(c.Branches) == 1 {
			return dxi
		}
		if i == 0 {
			if st.dx == nil {
				st.dx = c.be.New(dxi.Shape()...)
			}
			tensor.SameShape("Concat", st.dx, dxi)
			c.be.Copy(st.dx, dxi)
			dx = st.dx
			continue
		}
		c.be.Add(dx, dx, dxi) // panics with ErrShape if a branch's dx is misshapen
	}
	return dx
}

// Params implements Layer: the branches' parameters in branch order.
func (c *Concat) Params() []*Param {
	var out []*Param
	for _, b := range c.Branches {
		out = append(out, b.Params()...)
	}
	return out
}

// IntBuffers implements IntBufferer.
func (c *Concat) IntBuffers() []*IntBuffer { return CollectIntBuffers(c.Branches...) }
