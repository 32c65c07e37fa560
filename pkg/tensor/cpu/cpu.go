// Package cpu is logitpair's CPU backend: tensor.Backend over host []float32
// memory and a gemm.Gemmer (OpenBLAS through cgo by default, pure-Go gonum
// with the purego build tag or CGO_ENABLED=0).
//
// Parallelism is the backend's own: work is split over Threads goroutines,
// each calling a single-threaded GEMM (convolutions split over the batch,
// dense layers over output columns), which on this project's small per-image
// GEMMs beats threading inside one BLAS call.
package cpu

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/logitpair/logitpair/pkg/gemm"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// Options configures a Backend.
type Options struct {
	// Threads is the number of goroutines ops may use; 0 means GOMAXPROCS.
	Threads int
	// Gemm is the matrix-multiply implementation; nil means gemm.Default().
	Gemm gemm.Gemmer
}

// Backend implements tensor.Backend on the host.
type Backend struct {
	threads int
	g       gemm.Gemmer
}

var _ tensor.Backend = (*Backend)(nil)

// New returns a CPU backend.
func New(o Options) *Backend {
	if o.Threads <= 0 {
		o.Threads = runtime.GOMAXPROCS(0)
	}
	if o.Gemm == nil {
		o.Gemm = gemm.Default()
	}
	return &Backend{threads: o.Threads, g: o.Gemm}
}

// Name implements tensor.Backend.
func (b *Backend) Name() string { return "cpu/" + b.g.Name() }

// Threads implements tensor.Backend.
func (b *Backend) Threads() int { return b.threads }

type storage struct{ data []float32 }

func (s *storage) Len() int { return len(s.data) }

func (s *storage) Slice(off, n int) tensor.Storage {
	if off < 0 || n < 0 || off+n > len(s.data) {
		tensor.Panicf("Slice", "[%d, %d) out of range for storage of %d", off, off+n, len(s.data))
	}
	return &storage{s.data[off : off+n : off+n]}
}

// Data returns the host memory behind a tensor allocated by a CPU backend.
// Writing to it changes the tensor. It panics if t belongs to another backend.
func Data(t *tensor.Tensor) []float32 {
	s, ok := t.Storage().(*storage)
	if !ok {
		panic(fmt.Sprintf("cpu: tensor of shape %v was not allocated by the CPU backend (%T)", t.Shape(), t.Storage()))
	}
	return s.data[:t.Numel()]
}

// Wrap makes a tensor over existing host memory (no copy).
func Wrap(data []float32, shape ...int) *tensor.Tensor {
	return tensor.FromStorage(&storage{data}, shape...)
}

// New implements tensor.Backend.
func (b *Backend) New(shape ...int) *tensor.Tensor {
	n := tensor.Shape(shape).Numel()
	return tensor.FromStorage(&storage{make([]float32, n)}, shape...)
}

// Upload implements tensor.Backend.
func (b *Backend) Upload(t *tensor.Tensor, src []float32) {
	d := Data(t)
	if len(src) != len(d) {
		tensor.Panicf("Upload", "%d values for a tensor of shape %v", len(src), t.Shape())
	}
	copy(d, src)
}

// Download implements tensor.Backend.
func (b *Backend) Download(dst []float32, t *tensor.Tensor) {
	d := Data(t)
	if len(dst) != len(d) {
		tensor.Panicf("Download", "buffer of %d for a tensor of shape %v", len(dst), t.Shape())
	}
	copy(dst, d)
}

// Copy implements tensor.Backend.
func (b *Backend) Copy(dst, src *tensor.Tensor) {
	if dst.Numel() != src.Numel() {
		tensor.Panicf("Copy", "sizes differ: %v vs %v", dst.Shape(), src.Shape())
	}
	copy(Data(dst), Data(src))
}

// Fill implements tensor.Backend.
func (b *Backend) Fill(t *tensor.Tensor, v float32) {
	d := Data(t)
	for i := range d {
		d[i] = v
	}
}

// Scale implements tensor.Backend.
func (b *Backend) Scale(x *tensor.Tensor, alpha float32) {
	d := Data(x)
	for i := range d {
		d[i] *= alpha
	}
}

// Axpy implements tensor.Backend.
func (b *Backend) Axpy(y *tensor.Tensor, alpha float32, x *tensor.Tensor) {
	if x.Numel() != y.Numel() {
		tensor.Panicf("Axpy", "sizes differ: %v vs %v", x.Shape(), y.Shape())
	}
	xd, yd := Data(x), Data(y)
	for i, v := range xd {
		yd[i] += alpha * v
	}
}

// Add implements tensor.Backend.
func (b *Backend) Add(dst, x, y *tensor.Tensor) {
	tensor.SameShape("Add", dst, x, y)
	dd, xd, yd := Data(dst), Data(x), Data(y)
	for i := range dd {
		dd[i] = xd[i] + yd[i]
	}
}

// Sum implements tensor.Backend.
func (b *Backend) Sum(x *tensor.Tensor) float64 {
	var s float64
	for _, v := range Data(x) {
		s += float64(v)
	}
	return s
}

// SumSquares implements tensor.Backend.
func (b *Backend) SumSquares(x *tensor.Tensor) float64 {
	var s float64
	for _, v := range Data(x) {
		s += float64(v) * float64(v)
	}
	return s
}

// ReLU implements tensor.Backend.
func (b *Backend) ReLU(y, x *tensor.Tensor) {
	tensor.SameShape("ReLU", y, x)
	yd, xd := Data(y), Data(x)
	b.parallel(len(xd), 1<<14, func(lo, hi int) {
		reluMask(yd[lo:hi], xd[lo:hi], xd[lo:hi])
	})
}

// ReLUBackward implements tensor.Backend.
func (b *Backend) ReLUBackward(dx, dy, y *tensor.Tensor) {
	tensor.SameShape("ReLUBackward", dx, dy, y)
	dxd, dyd, yd := Data(dx), Data(dy), Data(y)
	b.parallel(len(yd), 1<<14, func(lo, hi int) {
		reluMask(dxd[lo:hi], dyd[lo:hi], yd[lo:hi])
	})
}

// reluMask sets dx = dy·[y > 0] without branches (with dy = y it is the ReLU
// itself, y·[y > 0], NaN passing through as in PyTorch) (the signs of a ReLU's
// outputs are unpredictable, so a branch mispredicts half the time): the bits
// s of y read as an int32 are positive exactly when y > 0 (NaN with the sign
// bit clear aside), and then (−s & ^s) has its sign bit set, so >>31 gives all
// ones; for y ≤ 0, −0 included, it gives zero. dx may alias dy.
func reluMask(dx, dy, y []float32) {
	dy, y = dy[:len(dx)], y[:len(dx)]
	for i := range dx {
		s := int32(math.Float32bits(y[i]))
		mask := uint32((-s & ^s) >> 31)
		dx[i] = math.Float32frombits(math.Float32bits(dy[i]) & mask)
	}
}

// MatMul implements tensor.Backend. The product is split over Threads
// goroutines along the larger of C's two dimensions.
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
	ad, bd, cd := Data(a), Data(bm), Data(c)
	lda, ldb := a.Dim(1), bm.Dim(1)
	work := m * n * max(k, 1)
	if m >= n {
		b.parallel(m, ceilDiv(m*(1<<15), max(work, 1)), func(lo, hi int) {
			aoff := lo * lda
			if transA {
				aoff = lo
			}
			b.g.Sgemm(transA, transB, hi-lo, n, k, alpha, ad[aoff:], lda, bd, ldb, beta, cd[lo*n:], n)
		})
		return
	}
	b.parallel(n, ceilDiv(n*(1<<15), max(work, 1)), func(lo, hi int) {
		boff := lo
		if transB {
			boff = lo * ldb
		}
		b.g.Sgemm(transA, transB, m, hi-lo, k, alpha, ad, lda, bd[boff:], ldb, beta, cd[lo:], n)
	})
}

// AddBias implements tensor.Backend.
func (b *Backend) AddBias(y, bias *tensor.Tensor) {
	if y.Rank() < 2 || bias.Numel() != y.Dim(1) {
		tensor.Panicf("AddBias", "bias %v does not match dimension 1 of %v", bias.Shape(), y.Shape())
	}
	yd, bd := Data(y), Data(bias)
	c := y.Dim(1)
	inner := y.Numel() / (y.Dim(0) * c)
	for n := 0; n < y.Dim(0); n++ {
		for j := 0; j < c; j++ {
			row := yd[(n*c+j)*inner : (n*c+j+1)*inner]
			bj := bd[j]
			for i := range row {
				row[i] += bj
			}
		}
	}
}

// BiasGrad implements tensor.Backend.
func (b *Backend) BiasGrad(db, dy *tensor.Tensor) {
	if dy.Rank() < 2 || db.Numel() != dy.Dim(1) {
		tensor.Panicf("BiasGrad", "db %v does not match dimension 1 of %v", db.Shape(), dy.Shape())
	}
	dyd, dbd := Data(dy), Data(db)
	c := dy.Dim(1)
	inner := dy.Numel() / (dy.Dim(0) * c)
	for j := range dbd {
		dbd[j] = 0
	}
	for n := 0; n < dy.Dim(0); n++ {
		for j := 0; j < c; j++ {
			var s float32
			for _, v := range dyd[(n*c+j)*inner : (n*c+j+1)*inner] {
				s += v
			}
			dbd[j] += s
		}
	}
}

// PGDStep implements tensor.Backend.
func (b *Backend) PGDStep(x, g, x0 *tensor.Tensor, alpha, eps float32) {
	tensor.SameShape("PGDStep", x, g, x0)
	xd, gd, x0d := Data(x), Data(g), Data(x0)
	for i, v := range xd {
		switch s := gd[i]; {
		case s > 0:
			v += alpha
		case s < 0:
			v -= alpha
		}
		v = min(max(v, x0d[i]-eps), x0d[i]+eps)
		xd[i] = min(max(v, 0), 1)
	}
}

// SoftmaxCrossEntropy implements tensor.Backend.
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
	zd := Data(z)
	var dzd []float32
	if dz != nil {
		dzd = Data(dz)
	}
	off := float64(smoothing) / float64(k) // target mass on every class
	on := 1 - float64(smoothing) + off     // target mass on the label
	var total float64
	for i := 0; i < n; i++ {
		y := int(labels[i])
		if y < 0 || y >= k {
			tensor.Panicf("SoftmaxCrossEntropy", "label %d of example %d out of range [0, %d)", y, i, k)
		}
		row := zd[i*k : (i+1)*k]
		mx := float64(row[0])
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var se float64
		for _, v := range row {
			se += math.Exp(float64(v) - mx)
		}
		lse := mx + math.Log(se)
		// CE_i = lse − Σ_k t_k z_k, since Σ_k t_k = 1.
		var tz float64
		for j, v := range row {
			t := off
			if j == y {
				t = on
			}
			tz += t * float64(v)
		}
		ce := lse - tz
		total += ce
		if perExample != nil {
			perExample[i] = float32(ce)
		}
		if dzd != nil {
			g := float64(scale) / float64(n)
			drow := dzd[i*k : (i+1)*k]
			for j, v := range row {
				t := off
				if j == y {
					t = on
				}
				drow[j] = float32(g * (math.Exp(float64(v)-lse) - t))
			}
		}
	}
	return float64(scale) * total / float64(n)
}

// parallel splits [0, n) into at most Threads contiguous chunks of at least
// minChunk items and runs fn on each, the last chunk on the calling goroutine.
func (b *Backend) parallel(n, minChunk int, fn func(lo, hi int)) {
	b.parallelSlots(n, minChunk, func(_, lo, hi int) { fn(lo, hi) })
}

// parallelSlots is parallel that also tells each chunk its slot index in
// [0, parts), so chunks can own per-goroutine scratch; it returns parts.
func (b *Backend) parallelSlots(n, minChunk int, fn func(slot, lo, hi int)) (parts int) {
	if n <= 0 {
		return 0
	}
	parts = b.threads
	if minChunk > 0 {
		parts = min(parts, ceilDiv(n, minChunk))
	}
	parts = max(min(parts, n), 1)
	if parts == 1 {
		fn(0, 0, n)
		return 1
	}
	var wg sync.WaitGroup
	wg.Add(parts - 1)
	for p := 0; p < parts-1; p++ {
		lo, hi := p*n/parts, (p+1)*n/parts
		go func() {
			defer wg.Done()
			fn(p, lo, hi)
		}()
	}
	fn(parts-1, (parts-1)*n/parts, n)
	wg.Wait()
	return parts
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
