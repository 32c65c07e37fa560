// Package cuda is logitpair's GPU backend: tensor.Backend on an NVIDIA GPU
// through the CUDA driver API, NVRTC and cuBLAS, all three loaded at run time
// with dlopen, so neither a CUDA header nor a CUDA library is needed to build
// or link (cgo links only -ldl) and one binary runs on machines with and
// without a GPU.
//
// Loading: libcuda.so.1 (the driver), libnvrtc.so.{13,12,11.2} and
// libcublas.so.{13,12,11} are looked up in LOGITPAIR_CUDA_LIB_DIR when that is
// set (a colon-separated list of folders; nothing else is searched then),
// otherwise by the dynamic loader's search (LD_LIBRARY_PATH, ld.so.cache) and
// the usual toolkit folders. The project's own kernels (kernels.cu, embedded)
// are compiled by NVRTC for the device's compute capability at start-up and
// the PTX is cached on disk by content hash (see Cache).
//
// What stays on the device: every tensor the backend allocates (parameters,
// activations, gradients, im2col buffers, the attack's iterate). Host memory
// is touched only by Upload and Download, by the scalar results of Sum,
// SumSquares and SoftmaxCrossEntropy, and by SoftmaxCrossEntropy's labels and
// per-example losses, exactly where tensor.Backend hands data to the host.
//
// The cgo implementation is built with cgo on Linux unless the static or
// purego build tag is set (`make static` sets static: dlopen does not work in
// a static glibc binary); otherwise New returns ErrNotBuilt.
package cuda

import "errors"

// ErrNotBuilt is returned by New in binaries built without the CUDA backend.
var ErrNotBuilt = errors.New("CUDA backend not built into this binary (built with static/purego or without cgo)")

// Options configures a Backend.
type Options struct {
	// Device is the CUDA device ordinal (after CUDA_VISIBLE_DEVICES).
	Device int
	// CacheDir is the folder of the compiled-kernel cache; empty means
	// DefaultCacheDir().
	CacheDir string
}
