//go:build cgo && linux && !static && !purego

package cuda

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/logitpair/logitpair/pkg/tensor"
)

// Backend implements tensor.Backend on one CUDA device. All its work goes to
// one stream in issue order (kernels, cuBLAS and copies), so no op needs an
// explicit dependency; the host waits only where data reaches it (Download,
// the scalar results, Upload's completion). A mutex serializes the ops of
// one Backend; several Backends may share a device (each has its own stream
// and cuBLAS handle) but tensors may not move between them.
type Backend struct {
	g      *gpu
	mu     sync.Mutex
	stream cuStream
	blas   blasHandle
	pool   *pool
	args   [maxKernelArgs]uint64
	bufs   [numBufs]rawBuf
	closed bool
	prof   *profiler // nil unless LOGITPAIR_CUDA_PROFILE=1 (profile.go)
}

var _ tensor.Backend = (*Backend)(nil)

// Scratch buffers, each used within one op only (ops are serialized).
const (
	bufGemmOut  = iota // the convolution's (Cout, N·OHW) output or gradient
	bufCols            // the convolution's col gradient
	bufPartials        // reduction partial sums
	bufLabels          // softmax cross-entropy labels
	bufLosses          // softmax cross-entropy per-example losses
	numBufs
)

type rawBuf struct {
	ptr   uint64
	bytes int
}

// blockSize is every kernel's block size (kernels.cu's LP_BLOCK).
const blockSize = 256

// maxReduceBlocks bounds the first pass of Sum and SumSquares.
const maxReduceBlocks = 256

// New opens device o.Device: it loads the CUDA driver, NVRTC and cuBLAS
// (the first time in the process), compiles or reads the kernels from the
// cache, and creates the Backend's stream and cuBLAS handle. The error names
// which library did not load or that there is no GPU.
func New(o Options) (*Backend, error) {
	dir := o.CacheDir
	if dir == "" {
		dir = DefaultCacheDir()
	}
	g, err := openGPU(o.Device, dir)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := ctxSetCurrent(g.ctx); err != nil {
		return nil, err
	}
	b := &Backend{g: g, pool: &pool{free: map[int][]uint64{}, ctx: g.ctx}, prof: newProfiler()}
	if b.stream, err = streamCreate(); err != nil {
		return nil, err
	}
	if b.blas, err = blasCreate(); err != nil {
		_ = streamDestroy(b.stream)
		return nil, err
	}
	if err := blasSetStream(b.blas, b.stream); err != nil {
		_ = blasDestroy(b.blas)
		_ = streamDestroy(b.stream)
		return nil, err
	}
	return b, nil
}

// Open is New as a tensor.Backend (the form device selection uses in every
// build).
func Open(o Options) (tensor.Backend, error) {
	b, err := New(o)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Name implements tensor.Backend: "cuda/<device name>".
func (b *Backend) Name() string { return "cuda/" + b.g.name }

// Threads implements tensor.Backend: the host drives the device from one
// thread.
func (b *Backend) Threads() int { return 1 }

// Info describes the device and the libraries in use, for logs.
func (b *Backend) Info() string {
	return fmt.Sprintf("CUDA device %d: %s (compute capability %d.%d, PTX for compute_%d); driver %s from %s; NVRTC %d.%d from %s; cuBLAS from %s; %s",
		b.g.ordinal, b.g.name, b.g.major, b.g.minor, b.g.arch, versionString(loaded.driverVersion), loaded.driverPath,
		loaded.nvrtcMajor, loaded.nvrtcMinor, loaded.nvrtcPath, loaded.cublasPath, b.g.kernels)
}

// Close waits for the device, then frees the Backend's pooled memory,
// scratch buffers, stream and cuBLAS handle. Tensors still alive are freed
// when the garbage collector finalizes them; the Backend may not be used
// after Close.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := ctxSetCurrent(b.g.ctx); err != nil {
		return err
	}
	err := streamSync(b.stream)
	for _, p := range b.pool.close() {
		if e := memFree(p); err == nil {
			err = e
		}
	}
	for i := range b.bufs {
		if b.bufs[i].ptr != 0 {
			if e := memFree(b.bufs[i].ptr); err == nil {
				err = e
			}
			b.bufs[i] = rawBuf{}
		}
	}
	if e := blasDestroy(b.blas); err == nil {
		err = e
	}
	if e := streamDestroy(b.stream); err == nil {
		err = e
	}
	b.closed = true
	return err
}

// enter serializes an op, pins the goroutine to its OS thread and makes the
// device's context current there (CUDA contexts are per thread); leave
// undoes it.
func (b *Backend) enter() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		panic("cuda: Backend used after Close")
	}
	runtime.LockOSThread()
	if err := ctxSetCurrent(b.g.ctx); err != nil {
		runtime.UnlockOSThread()
		b.mu.Unlock()
		panic(err)
	}
}

func (b *Backend) leave() {
	runtime.UnlockOSThread()
	b.mu.Unlock()
}

// Synchronize waits until the device has finished all work queued so far
// (for timings; ops that hand data to the host wait by themselves).
func (b *Backend) Synchronize() {
	b.enter()
	defer b.leave()
	b.sync()
}

func (b *Backend) sync() {
	if err := streamSync(b.stream); err != nil {
		panic(err)
	}
}

// ---- memory -------------------------------------------------------------------

// block is one device allocation; the garbage collector's finalizer returns
// it to its Backend's pool.
type block struct {
	ptr   uint64
	bytes int
	pool  *pool
}

// storage is a tensor's view of elements [off, off+n) of a block.
type storage struct {
	blk    *block
	be     *Backend
	off, n int
}

func (s *storage) Len() int { return s.n }

func (s *storage) Slice(off, n int) tensor.Storage {
	if off < 0 || n < 0 || off+n > s.n {
		tensor.Panicf("Slice", "[%d, %d) out of range for storage of %d", off, off+n, s.n)
	}
	return &storage{blk: s.blk, be: s.be, off: s.off + off, n: n}
}

// pool keeps freed blocks by size for reuse. Reuse is safe without a sync:
// all of a Backend's work is on one stream, so whatever last used a block is
// ordered before its next use.
type pool struct {
	mu     sync.Mutex
	free   map[int][]uint64
	closed bool
	ctx    cuContext
}

func (p *pool) get(bytes int) (uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.free[bytes]
	if len(l) == 0 {
		return 0, false
	}
	ptr := l[len(l)-1]
	p.free[bytes] = l[:len(l)-1]
	return ptr, true
}

// put runs in the finalizer goroutine. After Close the block is freed at
// once (on a pinned thread with the context current).
func (p *pool) put(ptr uint64, bytes int) {
	p.mu.Lock()
	if !p.closed {
		p.free[bytes] = append(p.free[bytes], ptr)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if ctxSetCurrent(p.ctx) == nil {
		_ = memFree(ptr)
	}
}

// drain empties the pool and returns its blocks.
func (p *pool) drain() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []uint64
	for k, l := range p.free {
		out = append(out, l...)
		delete(p.free, k)
	}
	return out
}

func (p *pool) close() []uint64 {
	out := p.drain()
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return out
}

// allocBytes returns device memory of at least n bytes (a multiple of 256):
// from the pool, else cuMemAlloc; when the device is out of memory it frees
// the pool, then lets the garbage collector return unreachable tensors, and
// retries. Caller has entered.
func (b *Backend) allocBytes(n int) (uint64, int) {
	n = max((n+255)&^255, 256)
	if p, ok := b.pool.get(n); ok {
		return p, n
	}
	for attempt := 0; ; attempt++ {
		p, oom, err := memAlloc(n)
		if err == nil {
			return p, n
		}
		if !oom || attempt == 4 {
			panic(fmt.Errorf("cuda: allocating %d bytes on %s: %w", n, b.g.name, err))
		}
		if attempt > 0 {
			runtime.GC()
			time.Sleep(time.Duration(attempt) * 20 * time.Millisecond) // let finalizers run
		}
		b.sync()
		for _, q := range b.pool.drain() {
			if err := memFree(q); err != nil {
				panic(err)
			}
		}
	}
}

// newStorage allocates n float32 (at least one) and zero-fills them.
func (b *Backend) newStorage(n int) *storage {
	ptr, bytes := b.allocBytes(max(n, 1) * 4)
	blk := &block{ptr: ptr, bytes: bytes, pool: b.pool}
	runtime.SetFinalizer(blk, func(k *block) { k.pool.put(k.ptr, k.bytes) })
	if err := memsetD32(ptr, 0, max(n, 1), b.stream); err != nil {
		panic(err)
	}
	return &storage{blk: blk, be: b, n: n}
}

// buf returns scratch buffer i with room for n bytes, growing it (after
// the stream drains, since queued work may still use the old one).
func (b *Backend) buf(i, n int) uint64 {
	if b.bufs[i].bytes >= n && b.bufs[i].ptr != 0 {
		return b.bufs[i].ptr
	}
	if b.bufs[i].ptr != 0 {
		b.sync()
		if err := memFree(b.bufs[i].ptr); err != nil {
			panic(err)
		}
		b.bufs[i] = rawBuf{}
	}
	ptr, bytes := b.allocBytes(n)
	b.bufs[i] = rawBuf{ptr: ptr, bytes: bytes}
	return ptr
}

// ptr returns the device address of t's first element; it panics if t was
// not allocated by b.
func (b *Backend) ptr(t *tensor.Tensor) uint64 {
	s, ok := t.Storage().(*storage)
	if !ok || s.be != b {
		panic(fmt.Sprintf("cuda: tensor of shape %v was not allocated by this CUDA backend (%T)", t.Shape(), t.Storage()))
	}
	return s.blk.ptr + uint64(s.off)*4
}

// keep holds t's memory alive until this point (the device address alone
// does not keep the block from being finalized).
func keep(ts ...*tensor.Tensor) { runtime.KeepAlive(ts) }

// New implements tensor.Backend.
func (b *Backend) New(shape ...int) *tensor.Tensor {
	for _, d := range shape {
		if d < 0 {
			tensor.Panicf("New", "negative dimension in %v", tensor.Shape(shape))
		}
	}
	n := tensor.Shape(shape).Numel()
	if n > math.MaxInt32 {
		tensor.Panicf("New", "%v has %d elements, more than the CUDA backend's limit of 2³¹−1", tensor.Shape(shape), n)
	}
	b.enter()
	defer b.leave()
	return tensor.FromStorage(b.newStorage(n), shape...)
}

// Upload implements tensor.Backend.
func (b *Backend) Upload(t *tensor.Tensor, src []float32) {
	if len(src) != t.Numel() {
		tensor.Panicf("Upload", "%d values for a tensor of shape %v", len(src), t.Shape())
	}
	p := b.ptr(t)
	if len(src) == 0 {
		return
	}
	b.enter()
	defer b.leave()
	if err := memcpyHtoD(p, unsafe.Pointer(&src[0]), 4*len(src), b.stream); err != nil {
		panic(err)
	}
	b.sync() // src may be reused by the caller as soon as we return
	keep(t)
}

// Download implements tensor.Backend.
func (b *Backend) Download(dst []float32, t *tensor.Tensor) {
	if len(dst) != t.Numel() {
		tensor.Panicf("Download", "buffer of %d for a tensor of shape %v", len(dst), t.Shape())
	}
	p := b.ptr(t)
	if len(dst) == 0 {
		return
	}
	b.enter()
	defer b.leave()
	b.download(unsafe.Pointer(&dst[0]), p, 4*len(dst))
	keep(t)
}

func (b *Backend) download(dst unsafe.Pointer, src uint64, n int) {
	if err := memcpyDtoH(dst, src, n, b.stream); err != nil {
		panic(err)
	}
	b.sync()
}

// Copy implements tensor.Backend.
func (b *Backend) Copy(dst, src *tensor.Tensor) {
	if dst.Numel() != src.Numel() {
		tensor.Panicf("Copy", "sizes differ: %v vs %v", dst.Shape(), src.Shape())
	}
	d, s := b.ptr(dst), b.ptr(src)
	if d == s || dst.Numel() == 0 {
		return
	}
	b.enter()
	defer b.leave()
	if err := memcpyDtoD(d, s, 4*dst.Numel(), b.stream); err != nil {
		panic(err)
	}
	keep(dst, src)
}

// Fill implements tensor.Backend.
func (b *Backend) Fill(t *tensor.Tensor, v float32) {
	p := b.ptr(t)
	if t.Numel() == 0 {
		return
	}
	b.enter()
	defer b.leave()
	b.fill(p, v, t.Numel())
	keep(t)
}

func (b *Backend) fill(p uint64, v float32, n int) {
	if err := memsetD32(p, math.Float32bits(v), n, b.stream); err != nil {
		panic(err)
	}
}

// ---- launching --------------------------------------------------------------------

// Kernel argument slots: device pointers, ints, floats and doubles each in
// an 8-byte slot, 4-byte values in the low half (little endian).
func argP(p uint64) uint64  { return p }
func argI(v int) uint64     { return uint64(uint32(int32(v))) }
func argF(v float32) uint64 { return uint64(math.Float32bits(v)) }
func argD(v float64) uint64 { return math.Float64bits(v) }
func argB(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}
func ceilDiv(a, b int) int { return (a + b - 1) / b }
func gridFor(n int) int    { return max(min(ceilDiv(n, blockSize), 1<<18), 1) }
func checkInt32(op string, n int) {
	if n > math.MaxInt32 {
		tensor.Panicf(op, "%d elements: more than the CUDA backend's limit of 2³¹−1", n)
	}
}

// run launches kernel name on a gx × gy grid of blockSize-thread blocks.
// Caller has entered.
func (b *Backend) run(name string, gx, gy int, args ...uint64) {
	f, ok := b.g.fns[name]
	if !ok {
		panic("cuda: kernel " + name + " was not loaded")
	}
	if len(args) > maxKernelArgs {
		panic("cuda: too many kernel arguments for " + name)
	}
	copy(b.args[:], args)
	b.timed(name, func() {
		if r := launch(f, gx, gy, blockSize, b.stream, &b.args, len(args)); r != 0 {
			panic(launchError(name, r))
		}
	})
}
