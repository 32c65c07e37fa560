//go:build cgo && linux && !static && !purego

package cuda

import (
	"github.com/logitpair/logitpair/pkg/tensor"
)

// conv is the CUDA plan for one convolution: im2col over the whole batch
// into col (K, N·OH·OW), K = Cin·KH·KW, then single GEMMs whose inner or
// outer dimension is the whole batch:
//
//	forward:         Yt (Cout, N·OHW) = W (Cout, K) · col;  y = NCHW(Yt) (+ b, ReLU)
//	backward data:   dcol = Wᵀ · dYt;  dx = col2im(dcol)
//	backward filter: dW = dYt · colᵀ;  db = row sums of dYt
//
// where dYt is dy (masked by y > 0 with a fused ReLU) in Yt's layout. col is
// the plan's and kept from Forward for the weight gradient; Yt/dYt and dcol
// are the backend's scratch buffers.
type conv struct {
	b                        *Backend
	n, cin, h, w             int
	cout, kh, kw             int
	oh, ow                   int
	k, np                    int // K and N·OH·OW
	p                        tensor.ConvParams
	cols                     *tensor.Tensor // (K, N·OHW)
	haveCols                 bool
	y                        *tensor.Tensor // the last Forward's output (the fused ReLU's mask)
	xShape, wShape, outShape tensor.Shape
}

// NewConv implements tensor.Backend.
func (b *Backend) NewConv(x, w tensor.Shape, p tensor.ConvParams) tensor.Conv {
	if len(x) != 4 || len(w) != 4 {
		tensor.Panicf("Conv2D", "want x (N,C,H,W) and w (O,I,KH,KW), got %v and %v", x, w)
	}
	if x[1] != w[1] {
		tensor.Panicf("Conv2D", "input has %d channels but weight %v expects %d", x[1], w, w[1])
	}
	c := &conv{b: b, n: x[0], cin: x[1], h: x[2], w: x[3], cout: w[0], kh: w[2], kw: w[3], p: p}
	c.oh, c.ow = p.OutSize(c.h, c.w, c.kh, c.kw)
	c.k = c.cin * c.kh * c.kw
	c.np = c.n * c.oh * c.ow
	checkInt32("Conv2D", c.k*c.np)
	checkInt32("Conv2D", c.cout*c.np)
	c.cols = b.New(c.k, c.np)
	c.xShape, c.wShape = x.Clone(), w.Clone()
	c.outShape = tensor.Shape{c.n, c.cout, c.oh, c.ow}
	return c
}

func (c *conv) OutShape() tensor.Shape { return c.outShape }

func (c *conv) check(op string, x, w *tensor.Tensor) {
	tensor.CheckShape(op, "x", x, c.xShape...)
	tensor.CheckShape(op, "w", w, c.wShape...)
}

// geometry is the argument tail shared by lp_im2col and lp_col2im.
func (c *conv) geometry() []uint64 {
	return []uint64{argI(c.n), argI(c.cin), argI(c.h), argI(c.w), argI(c.kh), argI(c.kw),
		argI(c.p.StrideH), argI(c.p.StrideW), argI(c.p.PadTop), argI(c.p.PadLeft), argI(c.oh), argI(c.ow)}
}

// im2col fills cols from x. Caller has entered.
func (c *conv) im2col(px uint64) {
	args := append([]uint64{argP(px), argP(c.b.ptr(c.cols))}, c.geometry()...)
	c.b.run("lp_im2col", gridFor(c.cin*c.np), 1, args...)
	c.haveCols = true
}

// Forward implements tensor.Conv.
func (c *conv) Forward(y, x, w, bias *tensor.Tensor) {
	c.check("Conv2D", x, w)
	tensor.CheckShape("Conv2D", "y", y, c.outShape...)
	var pbias uint64
	if bias != nil {
		tensor.CheckShape("Conv2D", "bias", bias, c.cout)
		pbias = c.b.ptr(bias)
	}
	b := c.b
	px, pw, py := b.ptr(x), b.ptr(w), b.ptr(y)
	c.y = y
	if y.Numel() == 0 {
		return
	}
	b.enter()
	defer b.leave()
	c.im2col(px)
	yt := b.buf(bufGemmOut, 4*c.cout*c.np)
	b.gemm(false, false, c.cout, c.np, c.k, 1, pw, c.k, b.ptr(c.cols), c.np, 0, yt, c.np)
	b.run("lp_conv_out", gridFor(c.cout*c.np), 1, argP(py), argP(yt), argP(pbias), argB(bias != nil),
		argI(c.n), argI(c.cout), argI(c.oh*c.ow), argB(c.p.ReLU))
	keep(x, w, y, bias)
}

// Backward implements tensor.Conv.
func (c *conv) Backward(dx, dw, db, dy, x, w *tensor.Tensor) {
	c.check("Conv2DBackward", x, w)
	tensor.CheckShape("Conv2DBackward", "dy", dy, c.outShape...)
	if dx != nil {
		tensor.CheckShape("Conv2DBackward", "dx", dx, c.xShape...)
	}
	if c.p.ReLU && c.y == nil {
		tensor.Panicf("Conv2DBackward", "fused ReLU needs a Forward on this plan first")
	}
	if dw != nil {
		tensor.CheckShape("Conv2DBackward", "dw", dw, c.wShape...)
	}
	if db != nil {
		tensor.CheckShape("Conv2DBackward", "db", db, c.cout)
	}
	b := c.b
	px, pw, pdy := b.ptr(x), b.ptr(w), b.ptr(dy)
	var pdx, pdw, pdb, py uint64
	if dx != nil {
		pdx = b.ptr(dx)
	}
	if dw != nil {
		pdw = b.ptr(dw)
	}
	if db != nil {
		pdb = b.ptr(db)
	}
	if c.p.ReLU {
		py = b.ptr(c.y)
	}
	if dx == nil && dw == nil && db == nil {
		return
	}
	b.enter()
	defer b.leave()
	if c.np == 0 || c.cout == 0 || c.k == 0 {
		// Empty batch or output, or no inputs per output: every gradient
		// is a sum over nothing.
		if pdx != 0 && dx.Numel() > 0 {
			b.fill(pdx, 0, dx.Numel())
		}
		if pdw != 0 && dw.Numel() > 0 {
			b.fill(pdw, 0, dw.Numel())
		}
		if pdb != 0 && c.cout > 0 {
			b.fill(pdb, 0, c.cout)
		}
		keep(dx, dw, db)
		return
	}
	dyt := b.buf(bufGemmOut, 4*c.cout*c.np)
	b.run("lp_conv_dy", gridFor(c.cout*c.np), 1, argP(dyt), argP(pdy), argP(py), argI(c.n), argI(c.cout),
		argI(c.oh*c.ow), argB(c.p.ReLU))
	if pdb != 0 {
		b.run("lp_row_sum", c.cout, 1, argP(pdb), argP(dyt), argI(c.cout), argI(c.np))
	}
	if pdw != 0 {
		if !c.haveCols {
			c.im2col(px) // no Forward on this plan yet: the patches of this x
		}
		// dW (Cout×K) = dYt (Cout×NP) · colᵀ (NP×K)
		b.gemm(false, true, c.cout, c.k, c.np, 1, dyt, c.np, b.ptr(c.cols), c.np, 0, pdw, c.k)
	}
	if pdx != 0 {
		// dcol (K×NP) = Wᵀ (K×Cout) · dYt (Cout×NP)
		dcol := b.buf(bufCols, 4*c.k*c.np)
		b.gemm(true, false, c.k, c.np, c.cout, 1, pw, c.k, dyt, c.np, 0, dcol, c.np)
		args := append([]uint64{argP(dcol), argP(pdx)}, c.geometry()...)
		b.run("lp_col2im", gridFor(dx.Numel()), 1, args...)
	}
	keep(dx, dw, db, dy, x, w, c.y)
}
