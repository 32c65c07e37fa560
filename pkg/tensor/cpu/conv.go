package cpu

import (
	"github.com/logitpair/logitpair/pkg/tensor"
)

// conv is the CPU plan for one convolution: im2col + GEMM per image, images
// split over the backend's goroutines.
//
// Shapes: x (N, Cin, H, W); w (Cout, Cin, KH, KW) viewed as Wm (Cout, K) with
// K = Cin·KH·KW; col[n] (K, OH·OW); y[n] (Cout, OH·OW).
//
//	forward:        y[n]   = Wm · col[n] (+ b)
//	backward data:  dcol   = Wmᵀ · dy[n];  dx[n] = col2im(dcol)
//	backward filter: dW    = Σ_n dy[n] · col[n]ᵀ;  db = Σ_n Σ_hw dy[n]
type conv struct {
	b                        *Backend
	n, cin, h, w             int
	cout, kh, kw             int
	oh, ow                   int
	p                        tensor.ConvParams
	k, ohw                   int
	direct                   bool        // 1×1 kernel, stride 1, no padding: col[n] is x[n] itself
	cols                     []float32   // N·K·OHW, kept from Forward for the weight gradient
	y                        []float32   // the last Forward's output (fused ReLU's mask)
	dyMask                   [][]float32 // per goroutine Cout·OHW: dy·[y > 0] with fused ReLU
	haveCols                 bool
	dcol                     [][]float32 // per goroutine K·OHW
	dwPart                   [][]float32 // per goroutine Cout·K (goroutine 0 writes dw directly)
	dbPart                   [][]float32
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
	c.ohw = c.oh * c.ow
	c.direct = c.kh == 1 && c.kw == 1 && p.StrideH == 1 && p.StrideW == 1 &&
		p.PadTop == 0 && p.PadBottom == 0 && p.PadLeft == 0 && p.PadRight == 0
	if !c.direct {
		c.cols = make([]float32, c.n*c.k*c.ohw)
	}
	t := b.threads
	c.dcol = make([][]float32, t)
	c.dwPart = make([][]float32, t)
	c.dbPart = make([][]float32, t)
	c.dyMask = make([][]float32, t)
	c.xShape, c.wShape = x.Clone(), w.Clone()
	c.outShape = tensor.Shape{c.n, c.cout, c.oh, c.ow}
	return c
}

func (c *conv) OutShape() tensor.Shape { return c.outShape }

func (c *conv) col(n int, xd []float32) []float32 {
	if c.direct {
		return xd[n*c.k*c.ohw : (n+1)*c.k*c.ohw]
	}
	return c.cols[n*c.k*c.ohw : (n+1)*c.k*c.ohw]
}

func (c *conv) check(op string, x, w *tensor.Tensor) {
	tensor.CheckShape(op, "x", x, c.xShape...)
	tensor.CheckShape(op, "w", w, c.wShape...)
}

// Forward implements tensor.Conv.
func (c *conv) Forward(y, x, w, bias *tensor.Tensor) {
	c.check("Conv2D", x, w)
	tensor.CheckShape("Conv2D", "y", y, c.outShape...)
	var bd []float32
	if bias != nil {
		tensor.CheckShape("Conv2D", "bias", bias, c.cout)
		bd = Data(bias)
	}
	xd, wd, yd := Data(x), Data(w), Data(y)
	chw := c.cin * c.h * c.w
	c.b.parallel(c.n, 1, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			if !c.direct {
				im2col(c.col(n, xd), xd[n*chw:(n+1)*chw], c)
			}
			yn := yd[n*c.cout*c.ohw : (n+1)*c.cout*c.ohw]
			var beta float32
			if bd != nil {
				for o := 0; o < c.cout; o++ {
					row := yn[o*c.ohw : (o+1)*c.ohw]
					for i := range row {
						row[i] = bd[o]
					}
				}
				beta = 1
			}
			c.b.g.Sgemm(false, false, c.cout, c.ohw, c.k, 1, wd, c.k, c.col(n, xd), c.ohw, beta, yn, c.ohw)
			if c.p.ReLU {
				reluMask(yn, yn, yn)
			}
		}
	})
	c.haveCols = true
	c.y = yd
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
		if !c.haveCols && !c.direct {
			tensor.Panicf("Conv2DBackward", "weight gradient needs a Forward on this plan first")
		}
	}
	if db != nil {
		tensor.CheckShape("Conv2DBackward", "db", db, c.cout)
	}
	xd, wd, dyd := Data(x), Data(w), Data(dy)
	var dxd, dwd, dbd []float32
	if dx != nil {
		dxd = Data(dx)
	}
	if dw != nil {
		dwd = Data(dw)
	}
	if db != nil {
		dbd = Data(db)
	}
	chw := c.cin * c.h * c.w
	parts := c.b.parallelSlots(c.n, 1, func(slot, lo, hi int) {
		var dwAcc, dbAcc []float32
		if dwd != nil {
			if slot == 0 {
				dwAcc = dwd
			} else {
				if c.dwPart[slot] == nil {
					c.dwPart[slot] = make([]float32, c.cout*c.k)
				}
				dwAcc = c.dwPart[slot]
			}
		}
		if dbd != nil {
			if slot == 0 {
				dbAcc = dbd
			} else {
				if c.dbPart[slot] == nil {
					c.dbPart[slot] = make([]float32, c.cout)
				}
				dbAcc = c.dbPart[slot]
			}
			for i := range dbAcc {
				dbAcc[i] = 0
			}
		}
		for n := lo; n < hi; n++ {
			dyn := dyd[n*c.cout*c.ohw : (n+1)*c.cout*c.ohw]
			if c.p.ReLU {
				// The fused ReLU's backward: dy·[y > 0], in scratch so the
				// caller's dy is left as it was.
				if c.dyMask[slot] == nil {
					c.dyMask[slot] = make([]float32, c.cout*c.ohw)
				}
				reluMask(c.dyMask[slot], dyn, c.y[n*c.cout*c.ohw:(n+1)*c.cout*c.ohw])
				dyn = c.dyMask[slot]
			}
			if dwAcc != nil {
				// dW (Cout×K) += dy[n] (Cout×OHW) · col[n]ᵀ (OHW×K)
				beta := float32(1)
				if n == lo {
					beta = 0
				}
				c.b.g.Sgemm(false, true, c.cout, c.k, c.ohw, 1, dyn, c.ohw, c.col(n, xd), c.ohw, beta, dwAcc, c.k)
			}
			if dbAcc != nil {
				for o := 0; o < c.cout; o++ {
					var s float32
					for _, v := range dyn[o*c.ohw : (o+1)*c.ohw] {
						s += v
					}
					dbAcc[o] += s
				}
			}
			if dxd != nil {
				dxn := dxd[n*chw : (n+1)*chw]
				if c.direct {
					// dx[n] (Cin×HW) = Wᵀ (Cin×Cout) · dy[n] (Cout×HW)
					c.b.g.Sgemm(true, false, c.k, c.ohw, c.cout, 1, wd, c.k, dyn, c.ohw, 0, dxn, c.ohw)
					continue
				}
				if c.dcol[slot] == nil {
					c.dcol[slot] = make([]float32, c.k*c.ohw)
				}
				dcol := c.dcol[slot]
				c.b.g.Sgemm(true, false, c.k, c.ohw, c.cout, 1, wd, c.k, dyn, c.ohw, 0, dcol, c.ohw)
				col2im(dxn, dcol, c)
			}
		}
	})
	// Reduce the per-goroutine partial sums into slot 0's (the outputs).
	for slot := 1; slot < parts; slot++ {
		if dwd != nil {
			for i, v := range c.dwPart[slot] {
				dwd[i] += v
			}
		}
		if dbd != nil {
			for i, v := range c.dbPart[slot] {
				dbd[i] += v
			}
		}
	}
}

// im2col writes the patches of one image x (Cin, H, W) into col (K, OH·OW),
// row (ci·KH + i)·KW + j holding input pixel (ci, oh·sh − padTop + i,
// ow·sw − padLeft + j) for every output position, zero where it falls in the
// padding.
func im2col(col, x []float32, c *conv) {
	sh, sw := c.p.StrideH, c.p.StrideW
	for ci := 0; ci < c.cin; ci++ {
		plane := x[ci*c.h*c.w : (ci+1)*c.h*c.w]
		for i := 0; i < c.kh; i++ {
			for j := 0; j < c.kw; j++ {
				row := col[((ci*c.kh+i)*c.kw+j)*c.ohw:]
				// Output columns whose input column is inside the image:
				// 0 <= ow·sw − padLeft + j < W.
				owLo, owHi := validRange(c.ow, sw, j-c.p.PadLeft, c.w)
				for oh := 0; oh < c.oh; oh++ {
					dst := row[oh*c.ow : (oh+1)*c.ow]
					ih := oh*sh - c.p.PadTop + i
					if ih < 0 || ih >= c.h {
						clear(dst)
						continue
					}
					clear(dst[:owLo])
					clear(dst[owHi:])
					src := plane[ih*c.w:]
					iw0 := owLo*sw - c.p.PadLeft + j
					if sw == 1 {
						copy(dst[owLo:owHi], src[iw0:iw0+owHi-owLo])
					} else {
						for ow, iw := owLo, iw0; ow < owHi; ow, iw = ow+1, iw+sw {
							dst[ow] = src[iw]
						}
					}
				}
			}
		}
	}
}

// col2im is im2col's adjoint: it sets x (Cin, H, W) to the sum of col's
// entries over every patch position that reads each pixel.
func col2im(x, col []float32, c *conv) {
	clear(x)
	sh, sw := c.p.StrideH, c.p.StrideW
	for ci := 0; ci < c.cin; ci++ {
		plane := x[ci*c.h*c.w : (ci+1)*c.h*c.w]
		for i := 0; i < c.kh; i++ {
			for j := 0; j < c.kw; j++ {
				row := col[((ci*c.kh+i)*c.kw+j)*c.ohw:]
				owLo, owHi := validRange(c.ow, sw, j-c.p.PadLeft, c.w)
				for oh := 0; oh < c.oh; oh++ {
					ih := oh*sh - c.p.PadTop + i
					if ih < 0 || ih >= c.h {
						continue
					}
					src := row[oh*c.ow : (oh+1)*c.ow]
					dst := plane[ih*c.w:]
					iw := owLo*sw - c.p.PadLeft + j
					if sw == 1 {
						addTo(dst[iw:iw+owHi-owLo], src[owLo:owHi])
						continue
					}
					for ow := owLo; ow < owHi; ow, iw = ow+1, iw+sw {
						dst[iw] += src[ow]
					}
				}
			}
		}
	}
}

// validRange returns [lo, hi): the outputs o in [0, n) with 0 <= o·s + off < size.
func validRange(n, s, off, size int) (lo, hi int) {
	lo = 0
	if off < 0 {
		lo = (-off + s - 1) / s
	}
	hi = 0
	if size-off > 0 {
		hi = (size - off + s - 1) / s
	}
	lo, hi = min(lo, n), min(hi, n)
	if hi < lo {
		hi = lo
	}
	return lo, hi
}

// addTo sets dst[i] += src[i]; len(src) must be at least len(dst).
func addTo(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}
