//go:build cgo && linux && !static && !purego

package cuda

import (
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

// poolArgs is the argument tail shared by the pooling kernels.
func poolArgs(planes, h, w, oh, ow int, p tensor.PoolParams) []uint64 {
	return []uint64{argI(planes), argI(h), argI(w), argI(oh), argI(ow), argI(p.KernelH), argI(p.KernelW),
		argI(p.StrideH), argI(p.StrideW), argI(p.PadH), argI(p.PadW)}
}

// maxPool is the CUDA max-pooling plan: Forward records each window's argmax
// (the flat index in its plane, int32, on the device); Backward gathers, for
// every input pixel, the dy of the windows whose maximum it was.
type maxPool struct {
	b            *Backend
	p            tensor.PoolParams
	planes, h, w int
	oh, ow       int
	xShape       tensor.Shape
	outShape     tensor.Shape
	arg          *tensor.Tensor // N·C·OH·OW int32 stored in float32-sized slots
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
	checkInt32("MaxPool2D", mp.planes*mp.h*mp.w)
	mp.arg = b.New(mp.planes * oh * ow)
	return mp
}

func (mp *maxPool) OutShape() tensor.Shape { return mp.outShape }

// Forward implements tensor.MaxPool.
func (mp *maxPool) Forward(y, x *tensor.Tensor) {
	tensor.CheckShape("MaxPool2D", "x", x, mp.xShape...)
	tensor.CheckShape("MaxPool2D", "y", y, mp.outShape...)
	b := mp.b
	py, px, pa := b.ptr(y), b.ptr(x), b.ptr(mp.arg)
	mp.ran = true
	if y.Numel() == 0 {
		return
	}
	b.enter()
	defer b.leave()
	args := append([]uint64{argP(py), argP(pa), argP(px)}, poolArgs(mp.planes, mp.h, mp.w, mp.oh, mp.ow, mp.p)...)
	b.run("lp_maxpool_fwd", gridFor(y.Numel()), 1, args...)
	keep(x, y, mp.arg)
}

// Backward implements tensor.MaxPool.
func (mp *maxPool) Backward(dx, dy *tensor.Tensor) {
	if !mp.ran {
		tensor.Panicf("MaxPool2DBackward", "Backward before Forward")
	}
	tensor.CheckShape("MaxPool2DBackward", "dx", dx, mp.xShape...)
	tensor.CheckShape("MaxPool2DBackward", "dy", dy, mp.outShape...)
	b := mp.b
	pdx, pdy, pa := b.ptr(dx), b.ptr(dy), b.ptr(mp.arg)
	if dx.Numel() == 0 {
		return
	}
	b.enter()
	defer b.leave()
	args := append([]uint64{argP(pdx), argP(pdy), argP(pa)}, poolArgs(mp.planes, mp.h, mp.w, mp.oh, mp.ow, mp.p)...)
	b.run("lp_maxpool_bwd", gridFor(dx.Numel()), 1, args...)
	keep(dx, dy, mp.arg)
}

// AvgPool2D implements tensor.Backend.
func (b *Backend) AvgPool2D(y, x *tensor.Tensor, p tensor.PoolParams) {
	planes, h, w, oh, ow := poolDims("AvgPool2D", y, x, p)
	py, px := b.ptr(y), b.ptr(x)
	if y.Numel() == 0 {
		return
	}
	b.enter()
	defer b.leave()
	args := append([]uint64{argP(py), argP(px)}, poolArgs(planes, h, w, oh, ow, p)...)
	args = append(args, argF(1/float32(p.KernelH*p.KernelW)))
	b.run("lp_avgpool_fwd", gridFor(y.Numel()), 1, args...)
	keep(x, y)
}

// AvgPool2DBackward implements tensor.Backend.
func (b *Backend) AvgPool2DBackward(dx, dy *tensor.Tensor, p tensor.PoolParams) {
	planes, h, w, oh, ow := poolDims("AvgPool2DBackward", dy, dx, p)
	pdx, pdy := b.ptr(dx), b.ptr(dy)
	if dx.Numel() == 0 {
		return
	}
	b.enter()
	defer b.leave()
	args := append([]uint64{argP(pdx), argP(pdy)}, poolArgs(planes, h, w, oh, ow, p)...)
	args = append(args, argF(1/float32(p.KernelH*p.KernelW)))
	b.run("lp_avgpool_bwd", gridFor(dx.Numel()), 1, args...)
	keep(dx, dy)
}
