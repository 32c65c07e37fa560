//go:build cgo && linux && !static && !purego

package cuda

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/logitpair/logitpair/pkg/tensor"
)

// Scale implements tensor.Backend.
func (b *Backend) Scale(x *tensor.Tensor, alpha float32) {
	p, n := b.ptr(x), x.Numel()
	if n == 0 {
		return
	}
	b.enter()
	defer b.leave()
	b.run("lp_scale", gridFor(n), 1, argP(p), argF(alpha), argI(n))
	keep(x)
}

// Axpy implements tensor.Backend.
func (b *Backend) Axpy(y *tensor.Tensor, alpha float32, x *tensor.Tensor) {
	if x.Numel() != y.Numel() {
		tensor.Panicf("Axpy", "sizes differ: %v vs %v", x.Shape(), y.Shape())
	}
	py, px, n := b.ptr(y), b.ptr(x), y.Numel()
	if n == 0 {
		return
	}
	b.enter()
	defer b.leave()
	b.run("lp_axpy", gridFor(n), 1, argP(py), argF(alpha), argP(px), argI(n))
	keep(x, y)
}

// Add implements tensor.Backend.
func (b *Backend) Add(dst, x, y *tensor.Tensor) {
	tensor.SameShape("Add", dst, x, y)
	pd, px, py, n := b.ptr(dst), b.ptr(x), b.ptr(y), dst.Numel()
	if n == 0 {
		return
	}
	b.enter()
	defer b.leave()
	b.run("lp_add", gridFor(n), 1, argP(pd), argP(px), argP(py), argI(n))
	keep(dst, x, y)
}

// Sum implements tensor.Backend.
func (b *Backend) Sum(x *tensor.Tensor) float64 { return b.reduce(x, false) }

// SumSquares implements tensor.Backend.
func (b *Backend) SumSquares(x *tensor.Tensor) float64 { return b.reduce(x, true) }

// reduce sums x (or x²) in double in two fixed-shape passes (deterministic).
func (b *Backend) reduce(x *tensor.Tensor, squares bool) float64 {
	p, n := b.ptr(x), x.Numel()
	if n == 0 {
		return 0
	}
	b.enter()
	defer b.leave()
	blocks := min(ceilDiv(n, blockSize), maxReduceBlocks)
	part := b.buf(bufPartials, 8*(maxReduceBlocks+1))
	out := part + 8*maxReduceBlocks
	b.run("lp_reduce_partial", blocks, 1, argP(p), argI(n), argB(squares), argP(part))
	b.run("lp_reduce_final", 1, 1, argP(part), argI(blocks), argP(out))
	var s float64
	b.download(unsafe.Pointer(&s), out, 8)
	keep(x)
	return s
}

// ReLU implements tensor.Backend.
func (b *Backend) ReLU(y, x *tensor.Tensor) {
	tensor.SameShape("ReLU", y, x)
	py, px, n := b.ptr(y), b.ptr(x), y.Numel()
	if n == 0 {
		return
	}
	b.enter()
	defer b.leave()
	b.run("lp_relu_mask", gridFor(n), 1, argP(py), argP(px), argP(px), argI(n))
	keep(x, y)
}

// ReLUBackward implements tensor.Backend.
func (b *Backend) ReLUBackward(dx, dy, y *tensor.Tensor) {
	tensor.SameShape("ReLUBackward", dx, dy, y)
	pdx, pdy, py, n := b.ptr(dx), b.ptr(dy), b.ptr(y), y.Numel()
	if n == 0 {
		return
	}
	b.enter()
	defer b.leave()
	b.run("lp_relu_mask", gridFor(n), 1, argP(pdx), argP(pdy), argP(py), argI(n))
	keep(dx, dy, y)
}

// MatMul implements tensor.Backend through cuBLAS.
func (b *Backend) MatMul(c, a, bm *tensor.Tensor, transA, transB bool, alpha, beta float32) {
	if a.Rank() != 2 || bm.Rank() != 2 || c.Rank() != 2 {
		tensor.Panicf("MatMul", "want 2-D tensors, got %v, %v -> %v", a.Shape(), bm.Shape(), c.Shape())
	}
	m, k := a.Dim(0), a.Dim(1)
	if transA {
		m, k = k, m
	}
	k2, n := bm.Dim(0), bm.Dim(1)
	if transB {
		k2, n = n, k2
	}
	if k != k2 || c.Dim(0) != m || c.Dim(1) != n {
		tensor.Panicf("MatMul", "op(a) %d×%d times op(b) %d×%d does not give c %v", m, k, k2, n, c.Shape())
	}
	pa, pb, pc := b.ptr(a), b.ptr(bm), b.ptr(c)
	if m == 0 || n == 0 {
		return
	}
	b.enter()
	defer b.leave()
	if k == 0 { // op(a)·op(b) is zero: c = beta·c (BLAS: beta = 0 overwrites)
		if beta == 0 {
			b.fill(pc, 0, m*n)
		} else {
			b.run("lp_scale", gridFor(m*n), 1, argP(pc), argF(beta), argI(m*n))
		}
		keep(c)
		return
	}
	b.gemm(transA, transB, m, n, k, alpha, pa, a.Dim(1), pb, bm.Dim(1), beta, pc, n)
	keep(a, bm, c)
}

// gemm computes the row-major C (m×n, leading dimension ldc) = alpha·op(A)·
// op(B) + beta·C with cuBLAS, which is column-major: a row-major matrix is
// its transpose in column-major order, so it asks for Cᵀ = op(B)ᵀ·op(A)ᵀ,
// i.e. swaps the operands and the dimensions m and n. Caller has entered.
func (b *Backend) gemm(transA, transB bool, m, n, k int, alpha float32, pa uint64, lda int, pb uint64, ldb int,
	beta float32, pc uint64, ldc int) {
	op := func(t bool) int {
		if t {
			return 1
		}
		return 0
	}
	launch := func() {
		if err := sgemmColMajor(b.blas, op(transB), op(transA), n, m, k, alpha, pb, max(ldb, 1), pa, max(lda, 1), beta, pc, max(ldc, 1)); err != nil {
			panic(err)
		}
	}
	if b.prof == nil {
		launch()
		return
	}
	b.timed(fmt.Sprintf("sgemm %s%s m=%d n=%d k=%d", tn(transA), tn(transB), m, n, k), launch)
}

// AddBias implements tensor.Backend.
func (b *Backend) AddBias(y, bias *tensor.Tensor) {
	if y.Rank() < 2 || bias.Numel() != y.Dim(1) {
		tensor.Panicf("AddBias", "bias %v does not match dimension 1 of %v", bias.Shape(), y.Shape())
	}
	py, pb, n := b.ptr(y), b.ptr(bias), y.Numel()
	if n == 0 {
		return
	}
	c := y.Dim(1)
	inner := n / (y.Dim(0) * c)
	b.enter()
	defer b.leave()
	b.run("lp_add_bias", gridFor(n), 1, argP(py), argP(pb), argI(c), argI(inner), argI(n))
	keep(y, bias)
}

// BiasGrad implements tensor.Backend.
func (b *Backend) BiasGrad(db, dy *tensor.Tensor) {
	if dy.Rank() < 2 || db.Numel() != dy.Dim(1) {
		tensor.Panicf("BiasGrad", "db %v does not match dimension 1 of %v", db.Shape(), dy.Shape())
	}
	pdb, pdy := b.ptr(db), b.ptr(dy)
	c := dy.Dim(1)
	if c == 0 {
		return
	}
	b.enter()
	defer b.leave()
	if dy.Numel() == 0 {
		b.fill(pdb, 0, c)
		keep(db)
		return
	}
	inner := dy.Numel() / (dy.Dim(0) * c)
	b.run("lp_bias_grad", c, 1, argP(pdb), argP(pdy), argI(dy.Dim(0)), argI(c), argI(inner))
	keep(db, dy)
}

// PGDStep implements tensor.Backend in one kernel (sign, step, projection
// onto the ε-ball around x0, clip to [0, 1]).
func (b *Backend) PGDStep(x, g, x0 *tensor.Tensor, alpha, eps float32) {
	tensor.SameShape("PGDStep", x, g, x0)
	px, pg, p0, n := b.ptr(x), b.ptr(g), b.ptr(x0), x.Numel()
	if n == 0 {
		return
	}
	b.enter()
	defer b.leave()
	b.run("lp_pgd_step", gridFor(n), 1, argP(px), argP(pg), argP(p0), argF(alpha), argF(eps), argI(n))
	keep(x, g, x0)
}

// SoftmaxCrossEntropy implements tensor.Backend: one block per example
// computes, in double, the log-sum-exp (after subtracting the row maximum),
// the loss and the gradient; the per-example losses come back to the host
// (N doubles), which sums them in example order as the CPU backend does.
func (b *Backend) SoftmaxCrossEntropy(dz, z *tensor.Tensor, labels []int32, smoothing, scale float32, perExample []float32) float64 {
	if z.Rank() != 2 || len(labels) != z.Dim(0) {
		tensor.Panicf("SoftmaxCrossEntropy", "logits %v with %d labels", z.Shape(), len(labels))
	}
	if dz != nil {
		tensor.SameShape("SoftmaxCrossEntropy", dz, z)
	}
	if perExample != nil && len(perExample) != len(labels) {
		tensor.Panicf("SoftmaxCrossEntropy", "perExample has %d entries for %d examples", len(perExample), len(labels))
	}
	n, k := z.Dim(0), z.Dim(1)
	for i, y := range labels {
		if y < 0 || int(y) >= k {
			tensor.Panicf("SoftmaxCrossEntropy", "label %d of example %d out of range [0, %d)", y, i, k)
		}
	}
	pz := b.ptr(z)
	var pdz uint64
	if dz != nil {
		pdz = b.ptr(dz)
	}
	if n == 0 {
		return math.NaN() // 0/0, as the CPU backend
	}
	b.enter()
	defer b.leave()
	pl := b.buf(bufLabels, 4*n)
	if err := memcpyHtoD(pl, unsafe.Pointer(&labels[0]), 4*n, b.stream); err != nil {
		panic(err)
	}
	pce := b.buf(bufLosses, 8*n)
	off := float64(smoothing) / float64(k)
	on := 1 - float64(smoothing) + off
	g := float64(scale) / float64(n)
	b.run("lp_softmax_ce", n, 1, argP(pdz), argP(pce), argP(pz), argP(pl), argI(n), argI(k), argD(off), argD(on), argD(g), argB(dz != nil))
	ce := make([]float64, n)
	b.download(unsafe.Pointer(&ce[0]), pce, 8*n)
	var total float64
	for i, v := range ce {
		total += v
		if perExample != nil {
			perExample[i] = float32(v)
		}
	}
	keep(z, dz)
	runtime.KeepAlive(labels)
	return float64(scale) * total / float64(n)
}

// tn is a GEMM operand's transposition as BLAS writes it.
func tn(t bool) string {
	if t {
		return "T"
	}
	return "N"
}
