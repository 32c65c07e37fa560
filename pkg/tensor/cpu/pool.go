package cpu

import (
	"math"

	"github.com/logitpair/logitpair/pkg/tensor"
)

// poolDims checks x (N, C, H, W) against y and returns the plane count N·C and
// the sizes.
func poolDims(op string, y, x *tensor.Tensor, p tensor.PoolParams) (planes, h, w, oh, ow int) {
	if x.Rank() != 4 {
		tensor.Panicf(op, "want x (N,C,H,W), got %v", x.Shape())
	}
	h, w = x.Dim(2), x.Dim(3)
	oh, ow = p.OutSize(h, w)
	tensor.CheckShape(op, "y", y, x.Dim(0), x.Dim(1), oh, ow)
	return x.Dim(0) * x.Dim(1), h, w, oh, ow
}

// maxPool is the CPU max-pooling plan: Forward stores each window's argmax
// (the flat index in its plane), so Backward is a scatter with no compares.
type maxPool struct {
	b            *Backend
	p            tensor.PoolParams
	planes, h, w int
	oh, ow       int
	xShape       tensor.Shape
	outShape     tensor.Shape
	arg          []int32 // N·C·OH·OW
	ran          bool
}

// NewMaxPool implements tensor.Backend.
func (b *Backend) NewMaxPool(x tensor.Shape, p tensor.PoolParams) tensor.MaxPool {
	if len(x) != 4 {
		tensor.Panicf("MaxPool2D", "want x (N,C,H,W), got %v", x)
	}
	oh, ow := p.OutSize(x[2], x[3])
	mp := &maxPool{b: b, p: p, planes: x[0] * x[1], h: x[2], w: x[3], oh: oh, ow: ow, xShape: x.Clone(),
		outShape: tensor.Shape{x[0], x[1], oh, ow}}
	mp.arg = make([]int32, mp.planes*oh*ow)
	return mp
}

func (mp *maxPool) OutShape() tensor.Shape { return mp.outShape }

// Forward implements tensor.MaxPool.
func (mp *maxPool) Forward(y, x *tensor.Tensor) {
	tensor.CheckShape("MaxPool2D", "x", x, mp.xShape...)
	tensor.CheckShape("MaxPool2D", "y", y, mp.outShape...)
	xd, yd := Data(x), Data(y)
	h, w, oh, ow, p := mp.h, mp.w, mp.oh, mp.ow, mp.p
	fast := isPool2x2(p)
	mp.b.parallel(mp.planes, 1, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			xp, yp, ap := xd[pl*h*w:(pl+1)*h*w], yd[pl*oh*ow:(pl+1)*oh*ow], mp.arg[pl*oh*ow:(pl+1)*oh*ow]
			if fast {
				for i := 0; i < oh; i++ {
					r0, r1 := xp[2*i*w:2*i*w+2*ow], xp[(2*i+1)*w:(2*i+1)*w+2*ow]
					yr, ar := yp[i*ow:(i+1)*ow], ap[i*ow:(i+1)*ow]
					base := int32(2 * i * w)
					for j := range yr {
						k, m := argmax4(r0[2*j], r0[2*j+1], r1[2*j], r1[2*j+1])
						yr[j] = m
						ar[j] = base + int32(2*j) + int32(k&1) + int32(k>>1)*int32(w)
					}
				}
				continue
			}
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					k, v := windowMax(xp, h, w, i, j, p)
					yp[i*ow+j], ap[i*ow+j] = v, int32(k)
				}
			}
		}
	})
	mp.ran = true
}

// windowMax returns the flat index and value of the first maximum (scanning
// rows, then columns) of window (i, j); NaN wins, as in PyTorch.
func windowMax(xp []float32, h, w, i, j int, p tensor.PoolParams) (int, float32) {
	best, bi := float32(math.Inf(-1)), -1
	for a := 0; a < p.KernelH; a++ {
		ih := i*p.StrideH - p.PadH + a
		if ih < 0 || ih >= h {
			continue
		}
		for c := 0; c < p.KernelW; c++ {
			iw := j*p.StrideW - p.PadW + c
			if iw < 0 || iw >= w {
				continue
			}
			v := xp[ih*w+iw]
			if bi < 0 || v > best || (v != v && best == best) {
				best, bi = v, ih*w+iw
			}
		}
	}
	return bi, best
}

// Backward implements tensor.MaxPool.
func (mp *maxPool) Backward(dx, dy *tensor.Tensor) {
	if !mp.ran {
		tensor.Panicf("MaxPool2DBackward", "Backward before Forward")
	}
	tensor.CheckShape("MaxPool2DBackward", "dx", dx, mp.xShape...)
	tensor.CheckShape("MaxPool2DBackward", "dy", dy, mp.outShape...)
	dxd, dyd := Data(dx), Data(dy)
	hw, ohw := mp.h*mp.w, mp.oh*mp.ow
	mp.b.parallel(mp.planes, 1, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			dxp := dxd[pl*hw : (pl+1)*hw]
			clear(dxp)
			for i, g := range dyd[pl*ohw : (pl+1)*ohw] {
				dxp[mp.arg[pl*ohw+i]] += g
			}
		}
	})
}

// AvgPool2D implements tensor.Backend.
func (b *Backend) AvgPool2D(y, x *tensor.Tensor, p tensor.PoolParams) {
	planes, h, w, oh, ow := poolDims("AvgPool2D", y, x, p)
	xd, yd := Data(x), Data(y)
	inv := 1 / float32(p.KernelH*p.KernelW)
	b.parallel(planes, 1, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			xp, yp := xd[pl*h*w:(pl+1)*h*w], yd[pl*oh*ow:(pl+1)*oh*ow]
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					var s float32
					for a := 0; a < p.KernelH; a++ {
						ih := i*p.StrideH - p.PadH + a
						if ih < 0 || ih >= h {
							continue
						}
						for c := 0; c < p.KernelW; c++ {
							iw := j*p.StrideW - p.PadW + c
							if iw >= 0 && iw < w {
								s += xp[ih*w+iw]
							}
						}
					}
					yp[i*ow+j] = s * inv
				}
			}
		}
	})
}

// AvgPool2DBackward implements tensor.Backend.
func (b *Backend) AvgPool2DBackward(dx, dy *tensor.Tensor, p tensor.PoolParams) {
	planes, h, w, oh, ow := poolDims("AvgPool2DBackward", dy, dx, p)
	dyd, dxd := Data(dy), Data(dx)
	inv := 1 / float32(p.KernelH*p.KernelW)
	b.parallel(planes, 1, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			dyp, dxp := dyd[pl*oh*ow:(pl+1)*oh*ow], dxd[pl*h*w:(pl+1)*h*w]
			clear(dxp)
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					g := dyp[i*ow+j] * inv
					for a := 0; a < p.KernelH; a++ {
						ih := i*p.StrideH - p.PadH + a
						if ih < 0 || ih >= h {
							continue
						}
						for c := 0; c < p.KernelW; c++ {
							iw := j*p.StrideW - p.PadW + c
							if iw >= 0 && iw < w {
								dxp[ih*w+iw] += g
							}
						}
					}
				}
			}
		}
	})
}

// isPool2x2 reports the common 2×2, stride 2, unpadded window, which has a
// fast path.
func isPool2x2(p tensor.PoolParams) bool {
	return p.KernelH == 2 && p.KernelW == 2 && p.StrideH == 2 && p.StrideW == 2 && p.PadH == 0 && p.PadW == 0
}

// argmax4 is windowMax for a 2×2 window given in scan order: the index of
// the first maximum (NaN wins) and its value.
func argmax4(a, b, c, d float32) (int, float32) {
	k, best := 0, a
	if b > best || (b != b && best == best) {
		k, best = 1, b
	}
	if c > best || (c != c && best == best) {
		k, best = 2, c
	}
	if d > best || (d != d && best == best) {
		k, best = 3, d
	}
	return k, best
}
