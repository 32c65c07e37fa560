//go:build cgo && linux && !static && !purego

package cuda

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <stddef.h>

// The few CUDA driver API, NVRTC and cuBLAS types and prototypes the backend
// needs, declared here so that no CUDA header is needed to build. They follow
// cuda.h, nvrtc.h and cublas_api.h (ABI-stable since CUDA 11).
typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st* CUcontext;
typedef struct CUmod_st* CUmodule;
typedef struct CUfunc_st* CUfunction;
typedef struct CUstream_st* CUstream;
typedef unsigned long long CUdeviceptr;

typedef int nvrtcResult;
typedef struct _nvrtcProgram* nvrtcProgram;

typedef int cublasStatus_t;
typedef struct cublasContext* cublasHandle_t;
typedef int cublasOperation_t;

#define LP_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define LP_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define LP_CU_STREAM_NON_BLOCKING 1

static CUresult (*p_cuInit)(unsigned int);
static CUresult (*p_cuDriverGetVersion)(int*);
static CUresult (*p_cuDeviceGetCount)(int*);
static CUresult (*p_cuDeviceGet)(CUdevice*, int);
static CUresult (*p_cuDeviceGetName)(char*, int, CUdevice);
static CUresult (*p_cuDeviceGetAttribute)(int*, int, CUdevice);
static CUresult (*p_cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
static CUresult (*p_cuDevicePrimaryCtxRelease)(CUdevice);
static CUresult (*p_cuCtxSetCurrent)(CUcontext);
static CUresult (*p_cuStreamCreate)(CUstream*, unsigned int);
static CUresult (*p_cuStreamDestroy)(CUstream);
static CUresult (*p_cuStreamSynchronize)(CUstream);
static CUresult (*p_cuMemAlloc)(CUdeviceptr*, size_t);
static CUresult (*p_cuMemFree)(CUdeviceptr);
static CUresult (*p_cuMemcpyHtoDAsync)(CUdeviceptr, const void*, size_t, CUstream);
static CUresult (*p_cuMemcpyDtoHAsync)(void*, CUdeviceptr, size_t, CUstream);
static CUresult (*p_cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
static CUresult (*p_cuMemsetD32Async)(CUdeviceptr, unsigned int, size_t, CUstream);
static CUresult (*p_cuModuleLoadData)(CUmodule*, const void*);
static CUresult (*p_cuModuleUnload)(CUmodule);
static CUresult (*p_cuModuleGetFunction)(CUfunction*, CUmodule, const char*);
static CUresult (*p_cuLaunchKernel)(CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,
	unsigned int, unsigned int, unsigned int, CUstream, void**, void**);
static CUresult (*p_cuGetErrorName)(CUresult, const char**);
static CUresult (*p_cuGetErrorString)(CUresult, const char**);

static nvrtcResult (*p_nvrtcVersion)(int*, int*);
static nvrtcResult (*p_nvrtcCreateProgram)(nvrtcProgram*, const char*, const char*, int, const char* const*,
	const char* const*);
static nvrtcResult (*p_nvrtcCompileProgram)(nvrtcProgram, int, const char* const*);
static nvrtcResult (*p_nvrtcGetProgramLogSize)(nvrtcProgram, size_t*);
static nvrtcResult (*p_nvrtcGetProgramLog)(nvrtcProgram, char*);
static nvrtcResult (*p_nvrtcGetPTXSize)(nvrtcProgram, size_t*);
static nvrtcResult (*p_nvrtcGetPTX)(nvrtcProgram, char*);
static nvrtcResult (*p_nvrtcDestroyProgram)(nvrtcProgram*);
static const char* (*p_nvrtcGetErrorString)(nvrtcResult);
static nvrtcResult (*p_nvrtcGetNumSupportedArchs)(int*);
static nvrtcResult (*p_nvrtcGetSupportedArchs)(int*);

static cublasStatus_t (*p_cublasCreate)(cublasHandle_t*);
static cublasStatus_t (*p_cublasDestroy)(cublasHandle_t);
static cublasStatus_t (*p_cublasSetStream)(cublasHandle_t, CUstream);
static cublasStatus_t (*p_cublasSgemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
	const float*, const float*, int, const float*, int, const float*, float*, int);

static void* lp_dlopen(const char* path, char** err) {
	dlerror();
	void* h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
	if (!h) {
		const char* e = dlerror();
		*err = (char*)(e ? e : "dlopen failed");
	}
	return h;
}

#define LP_BIND(h, ptr, name) do { *(void**)(&(ptr)) = dlsym((h), (name)); if (!(ptr)) return (name); } while (0)
#define LP_BIND_OPT(h, ptr, name) do { *(void**)(&(ptr)) = dlsym((h), (name)); } while (0)

// lp_bind_driver resolves the driver API; it returns the first missing
// symbol's name, or NULL.
static const char* lp_bind_driver(void* h) {
	LP_BIND(h, p_cuInit, "cuInit");
	LP_BIND(h, p_cuDriverGetVersion, "cuDriverGetVersion");
	LP_BIND(h, p_cuDeviceGetCount, "cuDeviceGetCount");
	LP_BIND(h, p_cuDeviceGet, "cuDeviceGet");
	LP_BIND(h, p_cuDeviceGetName, "cuDeviceGetName");
	LP_BIND(h, p_cuDeviceGetAttribute, "cuDeviceGetAttribute");
	LP_BIND(h, p_cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
	LP_BIND_OPT(h, p_cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
	if (!p_cuDevicePrimaryCtxRelease) LP_BIND(h, p_cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease");
	LP_BIND(h, p_cuCtxSetCurrent, "cuCtxSetCurrent");
	LP_BIND(h, p_cuStreamCreate, "cuStreamCreate");
	LP_BIND(h, p_cuStreamDestroy, "cuStreamDestroy_v2");
	LP_BIND(h, p_cuStreamSynchronize, "cuStreamSynchronize");
	LP_BIND(h, p_cuMemAlloc, "cuMemAlloc_v2");
	LP_BIND(h, p_cuMemFree, "cuMemFree_v2");
	LP_BIND(h, p_cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
	LP_BIND(h, p_cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
	LP_BIND(h, p_cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
	LP_BIND(h, p_cuMemsetD32Async, "cuMemsetD32Async");
	LP_BIND(h, p_cuModuleLoadData, "cuModuleLoadData");
	LP_BIND(h, p_cuModuleUnload, "cuModuleUnload");
	LP_BIND(h, p_cuModuleGetFunction, "cuModuleGetFunction");
	LP_BIND(h, p_cuLaunchKernel, "cuLaunchKernel");
	LP_BIND(h, p_cuGetErrorName, "cuGetErrorName");
	LP_BIND(h, p_cuGetErrorString, "cuGetErrorString");
	return NULL;
}

static const char* lp_bind_nvrtc(void* h) {
	LP_BIND(h, p_nvrtcVersion, "nvrtcVersion");
	LP_BIND(h, p_nvrtcCreateProgram, "nvrtcCreateProgram");
	LP_BIND(h, p_nvrtcCompileProgram, "nvrtcCompileProgram");
	LP_BIND(h, p_nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize");
	LP_BIND(h, p_nvrtcGetProgramLog, "nvrtcGetProgramLog");
	LP_BIND(h, p_nvrtcGetPTXSize, "nvrtcGetPTXSize");
	LP_BIND(h, p_nvrtcGetPTX, "nvrtcGetPTX");
	LP_BIND(h, p_nvrtcDestroyProgram, "nvrtcDestroyProgram");
	LP_BIND(h, p_nvrtcGetErrorString, "nvrtcGetErrorString");
	LP_BIND_OPT(h, p_nvrtcGetNumSupportedArchs, "nvrtcGetNumSupportedArchs");
	LP_BIND_OPT(h, p_nvrtcGetSupportedArchs, "nvrtcGetSupportedArchs");
	return NULL;
}

static const char* lp_bind_cublas(void* h) {
	LP_BIND(h, p_cublasCreate, "cublasCreate_v2");
	LP_BIND(h, p_cublasDestroy, "cublasDestroy_v2");
	LP_BIND(h, p_cublasSetStream, "cublasSetStream_v2");
	LP_BIND(h, p_cublasSgemm, "cublasSgemm_v2");
	return NULL;
}

static CUresult lp_cuInit(void) { return p_cuInit(0); }
static CUresult lp_cuDriverGetVersion(int* v) { return p_cuDriverGetVersion(v); }
static CUresult lp_cuDeviceGetCount(int* n) { return p_cuDeviceGetCount(n); }
static CUresult lp_cuDeviceGet(CUdevice* d, int ordinal) { return p_cuDeviceGet(d, ordinal); }
static CUresult lp_cuDeviceGetName(char* name, int len, CUdevice d) { return p_cuDeviceGetName(name, len, d); }
static CUresult lp_cuComputeCapability(CUdevice d, int* major, int* minor) {
	CUresult r = p_cuDeviceGetAttribute(major, LP_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d);
	if (r != 0) return r;
	return p_cuDeviceGetAttribute(minor, LP_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d);
}
static CUresult lp_cuDevicePrimaryCtxRetain(CUcontext* c, CUdevice d) { return p_cuDevicePrimaryCtxRetain(c, d); }
static CUresult lp_cuDevicePrimaryCtxRelease(CUdevice d) { return p_cuDevicePrimaryCtxRelease(d); }
static CUresult lp_cuCtxSetCurrent(CUcontext c) { return p_cuCtxSetCurrent(c); }
static CUresult lp_cuStreamCreate(CUstream* s) { return p_cuStreamCreate(s, LP_CU_STREAM_NON_BLOCKING); }
static CUresult lp_cuStreamDestroy(CUstream s) { return p_cuStreamDestroy(s); }
static CUresult lp_cuStreamSynchronize(CUstream s) { return p_cuStreamSynchronize(s); }
static CUresult lp_cuMemAlloc(CUdeviceptr* p, size_t n) { return p_cuMemAlloc(p, n); }
static CUresult lp_cuMemFree(CUdeviceptr p) { return p_cuMemFree(p); }
static CUresult lp_cuMemcpyHtoDAsync(CUdeviceptr d, const void* h, size_t n, CUstream s) { return p_cuMemcpyHtoDAsync(d, h, n, s); }
static CUresult lp_cuMemcpyDtoHAsync(void* h, CUdeviceptr d, size_t n, CUstream s) { return p_cuMemcpyDtoHAsync(h, d, n, s); }
static CUresult lp_cuMemcpyDtoDAsync(CUdeviceptr d, CUdeviceptr src, size_t n, CUstream s) { return p_cuMemcpyDtoDAsync(d, src, n, s); }
static CUresult lp_cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, CUstream s) { return p_cuMemsetD32Async(d, v, n, s); }
static CUresult lp_cuModuleLoadData(CUmodule* m, const void* image) { return p_cuModuleLoadData(m, image); }
static CUresult lp_cuModuleUnload(CUmodule m) { return p_cuModuleUnload(m); }
static CUresult lp_cuModuleGetFunction(CUfunction* f, CUmodule m, const char* name) { return p_cuModuleGetFunction(f, m, name); }

// lp_launch launches f with nargs arguments, each stored in its own 8-byte
// slot of args (an int or float in the slot's first 4 bytes: little endian);
// the driver copies the argument values before returning.
static CUresult lp_launch(CUfunction f, unsigned int gx, unsigned int gy, unsigned int bx, CUstream s,
	unsigned long long* args, int nargs) {
	void* params[32];
	if (nargs > 32) return 1; // CUDA_ERROR_INVALID_VALUE
	for (int i = 0; i < nargs; i++) params[i] = &args[i];
	return p_cuLaunchKernel(f, gx, gy, 1, bx, 1, 1, 0, s, params, NULL);
}

static const char* lp_cuErrorName(CUresult r) {
	const char* s = NULL;
	if (p_cuGetErrorName == NULL || p_cuGetErrorName(r, &s) != 0 || s == NULL) return "unknown CUDA error";
	return s;
}
static const char* lp_cuErrorString(CUresult r) {
	const char* s = NULL;
	if (p_cuGetErrorString == NULL || p_cuGetErrorString(r, &s) != 0 || s == NULL) return "";
	return s;
}

static nvrtcResult lp_nvrtcVersion(int* major, int* minor) { return p_nvrtcVersion(major, minor); }
static const char* lp_nvrtcErrorString(nvrtcResult r) { return p_nvrtcGetErrorString(r); }

// lp_nvrtc_archs writes up to max supported architectures (e.g. 52, ..., 90)
// into out and returns how many, or -1 when this NVRTC cannot tell.
static int lp_nvrtc_archs(int* out, int max) {
	int n = 0;
	if (p_nvrtcGetNumSupportedArchs == NULL || p_nvrtcGetSupportedArchs == NULL) return -1;
	if (p_nvrtcGetNumSupportedArchs(&n) != 0 || n < 0 || n > max) return -1;
	if (p_nvrtcGetSupportedArchs(out) != 0) return -1;
	return n;
}

// lp_nvrtc_compile compiles src with the options; on success *ptx (malloc'd,
// NUL-terminated) holds the PTX; the log (malloc'd) is returned in *log
// either way. Returns the NVRTC status.
static nvrtcResult lp_nvrtc_compile(const char* src, const char* name, int nopts, char** opts, char** ptx,
	char** log) {
	nvrtcProgram prog;
	*ptx = NULL;
	*log = NULL;
	nvrtcResult r = p_nvrtcCreateProgram(&prog, src, name, 0, NULL, NULL);
	if (r != 0) return r;
	nvrtcResult cr = p_nvrtcCompileProgram(prog, nopts, (const char* const*)opts);
	size_t n = 0;
	if (p_nvrtcGetProgramLogSize(prog, &n) == 0 && n > 0) {
		*log = (char*)malloc(n + 1);
		if (*log) {
			if (p_nvrtcGetProgramLog(prog, *log) != 0) (*log)[0] = 0;
			(*log)[n] = 0;
		}
	}
	if (cr == 0) {
		size_t m = 0;
		cr = p_nvrtcGetPTXSize(prog, &m);
		if (cr == 0) {
			*ptx = (char*)malloc(m + 1);
			if (*ptx == NULL) {
				cr = 1; // NVRTC_ERROR_OUT_OF_MEMORY
			} else {
				cr = p_nvrtcGetPTX(prog, *ptx);
				(*ptx)[m] = 0;
			}
		}
	}
	p_nvrtcDestroyProgram(&prog);
	return cr;
}

static cublasStatus_t lp_cublasCreate(cublasHandle_t* h) { return p_cublasCreate(h); }
static cublasStatus_t lp_cublasDestroy(cublasHandle_t h) { return p_cublasDestroy(h); }
static cublasStatus_t lp_cublasSetStream(cublasHandle_t h, CUstream s) { return p_cublasSetStream(h, s); }
static cublasStatus_t lp_sgemm(cublasHandle_t h, int transa, int transb, int m, int n, int k, float alpha,
	CUdeviceptr a, int lda, CUdeviceptr b, int ldb, float beta, CUdeviceptr c, int ldc) {
	return p_cublasSgemm(h, transa, transb, m, n, k, &alpha, (const float*)a, lda, (const float*)b, ldb, &beta,
		(float*)c, ldc);
}
*/
import "C"

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"unsafe"
)

// cuError is a failed CUDA driver API call.
type cuError struct {
	call string
	code C.CUresult
}

func (e *cuError) Error() string {
	msg := fmt.Sprintf("cuda: %s: %s (%d)", e.call, C.GoString(C.lp_cuErrorName(e.code)), int(e.code))
	if s := C.GoString(C.lp_cuErrorString(e.code)); s != "" {
		msg += ": " + s
	}
	return msg
}

// CUDA_ERROR_NO_DEVICE and CUDA_ERROR_OUT_OF_MEMORY from cuda.h.
const (
	cuErrorOutOfMemory = 2
	cuErrorNoDevice    = 100
)

func cuCheck(call string, r C.CUresult) error {
	if r == 0 {
		return nil
	}
	return &cuError{call: call, code: r}
}

// must panics with the error of a failed CUDA call inside a tensor op (the
// Backend interface has no error returns; a failed launch or copy is not a
// recoverable condition).
func must(call string, r C.CUresult) {
	if err := cuCheck(call, r); err != nil {
		panic(err)
	}
}

// cublasStatusName names a cublasStatus_t (cublas_api.h).
func cublasStatusName(s C.cublasStatus_t) string {
	switch s {
	case 1:
		return "CUBLAS_STATUS_NOT_INITIALIZED"
	case 3:
		return "CUBLAS_STATUS_ALLOC_FAILED"
	case 7:
		return "CUBLAS_STATUS_INVALID_VALUE"
	case 8:
		return "CUBLAS_STATUS_ARCH_MISMATCH"
	case 11:
		return "CUBLAS_STATUS_MAPPING_ERROR"
	case 13:
		return "CUBLAS_STATUS_EXECUTION_FAILED"
	case 14:
		return "CUBLAS_STATUS_INTERNAL_ERROR"
	case 15:
		return "CUBLAS_STATUS_NOT_SUPPORTED"
	case 16:
		return "CUBLAS_STATUS_LICENSE_ERROR"
	}
	return fmt.Sprintf("cuBLAS status %d", int(s))
}

// openLib dlopens the first loadable candidate of spec (after its companion
// from the same folder, if any).
func openLib(spec libSpec) (unsafe.Pointer, string, error) {
	le := &LoadError{Missing: spec.Missing}
	for _, path := range candidates(spec, os.Getenv) {
		if spec.Companion != nil && strings.Contains(path, "/") {
			cp := C.CString(spec.Companion(path))
			var cerr *C.char
			C.lp_dlopen(cp, &cerr) // best effort: the dependency may also be found on the loader's path
			C.free(unsafe.Pointer(cp))
		}
		cp := C.CString(path)
		var cerr *C.char
		h := C.lp_dlopen(cp, &cerr)
		C.free(unsafe.Pointer(cp))
		if h != nil {
			return h, path, nil
		}
		le.Tried = append(le.Tried, C.GoString(cerr))
	}
	return nil, "", le
}

// libs is the process-wide state of the loaded libraries.
type libs struct {
	driverPath, nvrtcPath, cublasPath string
	driverVersion                     int
	nvrtcMajor, nvrtcMinor            int
	devices                           int
}

// loadMu guards loaded. A failed load is not remembered: the next call tries
// again (LOGITPAIR_CUDA_LIB_DIR may have changed; tests rely on it).
var (
	loadMu            sync.Mutex
	driverOK, toolsOK bool
	loaded            libs
)

// loadDriver loads libcuda and initializes it (once per process on success).
func loadDriver() error {
	loadMu.Lock()
	defer loadMu.Unlock()
	if driverOK {
		return nil
	}
	h, path, err := openLib(driverLib)
	if err != nil {
		return err
	}
	if missing := C.lp_bind_driver(h); missing != nil {
		return fmt.Errorf("%s: %s lacks %s (driver too old?)", driverLib.Missing, path, C.GoString(missing))
	}
	if r := C.lp_cuInit(); r != 0 {
		if r == cuErrorNoDevice {
			return fmt.Errorf("no CUDA device: cuInit found no GPU (driver from %s): %w", path, cuCheck("cuInit", r))
		}
		return fmt.Errorf("CUDA driver from %s: %w", path, cuCheck("cuInit", r))
	}
	var v C.int
	if err := cuCheck("cuDriverGetVersion", C.lp_cuDriverGetVersion(&v)); err != nil {
		return err
	}
	var n C.int
	if err := cuCheck("cuDeviceGetCount", C.lp_cuDeviceGetCount(&n)); err != nil {
		return err
	}
	if n <= 0 {
		return fmt.Errorf("no CUDA device: cuDeviceGetCount returned 0 (driver %s from %s)", versionString(int(v)), path)
	}
	loaded.driverPath, loaded.driverVersion, loaded.devices = path, int(v), int(n)
	driverOK = true
	return nil
}

// loadTools loads NVRTC and cuBLAS (once per process on success).
func loadTools() error {
	loadMu.Lock()
	defer loadMu.Unlock()
	if toolsOK {
		return nil
	}
	h, path, err := openLib(nvrtcLib)
	if err != nil {
		return err
	}
	if missing := C.lp_bind_nvrtc(h); missing != nil {
		return fmt.Errorf("%s: %s lacks %s", nvrtcLib.Missing, path, C.GoString(missing))
	}
	var major, minor C.int
	if r := C.lp_nvrtcVersion(&major, &minor); r != 0 {
		return fmt.Errorf("nvrtcVersion (%s): %s", path, C.GoString(C.lp_nvrtcErrorString(r)))
	}
	loaded.nvrtcPath, loaded.nvrtcMajor, loaded.nvrtcMinor = path, int(major), int(minor)
	h, path, err = openLib(cublasLib)
	if err != nil {
		return err
	}
	if missing := C.lp_bind_cublas(h); missing != nil {
		return fmt.Errorf("%s: %s lacks %s", cublasLib.Missing, path, C.GoString(missing))
	}
	loaded.cublasPath = path
	toolsOK = true
	return nil
}

// versionString formats a CUDA version number (12040 → "12.4").
func versionString(v int) string { return fmt.Sprintf("%d.%d", v/1000, v%1000/10) }

// Available reports whether the CUDA driver loads and finds at least one GPU;
// the error says why not (which library failed to load, or that there is no
// device). It does not load NVRTC or cuBLAS (New does).
func Available() error { return loadDriver() }

// DeviceCount is the number of CUDA devices, or 0 with the reason there are
// none usable.
func DeviceCount() (int, error) {
	if err := loadDriver(); err != nil {
		return 0, err
	}
	return loaded.devices, nil
}

// ---- typed wrappers (the rest of the package calls only these) --------------

// Opaque driver handles, held by the pure-Go parts of the package.
type (
	cuContext  struct{ h C.CUcontext }
	cuModule   struct{ h C.CUmodule }
	cuFunction struct{ h C.CUfunction }
	cuStream   struct{ h C.CUstream }
	blasHandle struct{ h C.cublasHandle_t }
)

func deviceGet(ordinal int) (int, error) {
	var d C.CUdevice
	if err := cuCheck("cuDeviceGet", C.lp_cuDeviceGet(&d, C.int(ordinal))); err != nil {
		return 0, err
	}
	return int(d), nil
}

func deviceName(dev int) (string, error) {
	var buf [256]C.char
	if err := cuCheck("cuDeviceGetName", C.lp_cuDeviceGetName(&buf[0], C.int(len(buf)), C.CUdevice(dev))); err != nil {
		return "", err
	}
	return C.GoString(&buf[0]), nil
}

func computeCapability(dev int) (major, minor int, err error) {
	var ma, mi C.int
	if err := cuCheck("cuDeviceGetAttribute", C.lp_cuComputeCapability(C.CUdevice(dev), &ma, &mi)); err != nil {
		return 0, 0, err
	}
	return int(ma), int(mi), nil
}

func primaryCtxRetain(dev int) (cuContext, error) {
	var c C.CUcontext
	err := cuCheck("cuDevicePrimaryCtxRetain", C.lp_cuDevicePrimaryCtxRetain(&c, C.CUdevice(dev)))
	return cuContext{c}, err
}

func primaryCtxRelease(dev int) error {
	return cuCheck("cuDevicePrimaryCtxRelease", C.lp_cuDevicePrimaryCtxRelease(C.CUdevice(dev)))
}

func ctxSetCurrent(c cuContext) error { return cuCheck("cuCtxSetCurrent", C.lp_cuCtxSetCurrent(c.h)) }

func streamCreate() (cuStream, error) {
	var s C.CUstream
	err := cuCheck("cuStreamCreate", C.lp_cuStreamCreate(&s))
	return cuStream{s}, err
}

func streamDestroy(s cuStream) error { return cuCheck("cuStreamDestroy", C.lp_cuStreamDestroy(s.h)) }

func streamSync(s cuStream) error {
	return cuCheck("cuStreamSynchronize", C.lp_cuStreamSynchronize(s.h))
}

// memAlloc returns a device allocation of n bytes; oom reports
// CUDA_ERROR_OUT_OF_MEMORY.
func memAlloc(n int) (ptr uint64, oom bool, err error) {
	var p C.CUdeviceptr
	r := C.lp_cuMemAlloc(&p, C.size_t(n))
	if r == cuErrorOutOfMemory {
		return 0, true, cuCheck("cuMemAlloc", r)
	}
	return uint64(p), false, cuCheck("cuMemAlloc", r)
}

func memFree(p uint64) error { return cuCheck("cuMemFree", C.lp_cuMemFree(C.CUdeviceptr(p))) }

func memcpyHtoD(dst uint64, src unsafe.Pointer, n int, s cuStream) error {
	return cuCheck("cuMemcpyHtoDAsync", C.lp_cuMemcpyHtoDAsync(C.CUdeviceptr(dst), src, C.size_t(n), s.h))
}

func memcpyDtoH(dst unsafe.Pointer, src uint64, n int, s cuStream) error {
	return cuCheck("cuMemcpyDtoHAsync", C.lp_cuMemcpyDtoHAsync(dst, C.CUdeviceptr(src), C.size_t(n), s.h))
}

func memcpyDtoD(dst, src uint64, n int, s cuStream) error {
	return cuCheck("cuMemcpyDtoDAsync", C.lp_cuMemcpyDtoDAsync(C.CUdeviceptr(dst), C.CUdeviceptr(src), C.size_t(n), s.h))
}

func memsetD32(dst uint64, v uint32, count int, s cuStream) error {
	return cuCheck("cuMemsetD32Async", C.lp_cuMemsetD32Async(C.CUdeviceptr(dst), C.uint(v), C.size_t(count), s.h))
}

// moduleLoad loads PTX (JIT-compiled by the driver for the current context's
// device).
func moduleLoad(ptx []byte) (cuModule, error) {
	img := C.CBytes(append(append([]byte(nil), ptx...), 0))
	defer C.free(img)
	var m C.CUmodule
	err := cuCheck("cuModuleLoadData", C.lp_cuModuleLoadData(&m, img))
	return cuModule{m}, err
}

func moduleUnload(m cuModule) error { return cuCheck("cuModuleUnload", C.lp_cuModuleUnload(m.h)) }

func moduleFunction(m cuModule, name string) (cuFunction, error) {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	var f C.CUfunction
	if err := cuCheck("cuModuleGetFunction", C.lp_cuModuleGetFunction(&f, m.h, cn)); err != nil {
		return cuFunction{}, fmt.Errorf("kernel %s: %w", name, err)
	}
	return cuFunction{f}, nil
}

// maxKernelArgs is the most arguments launch passes (lp_launch's limit).
const maxKernelArgs = 32

// launch runs f on a gx × gy grid of bx-thread blocks on stream s; args[i]
// is the i-th kernel argument in an 8-byte slot.
func launch(f cuFunction, gx, gy, bx int, s cuStream, args *[maxKernelArgs]uint64, nargs int) C.CUresult {
	return C.lp_launch(f.h, C.uint(gx), C.uint(gy), C.uint(bx), s.h, (*C.ulonglong)(unsafe.Pointer(&args[0])), C.int(nargs))
}

func launchError(name string, r C.CUresult) error { return cuCheck("cuLaunchKernel("+name+")", r) }

// nvrtcArchs returns the virtual architectures this NVRTC can target (e.g.
// 52 … 90), or nil when it cannot tell (before CUDA 11.2).
func nvrtcArchs() []int {
	var buf [128]C.int
	n := C.lp_nvrtc_archs(&buf[0], C.int(len(buf)))
	if n < 0 {
		return nil
	}
	out := make([]int, int(n))
	for i := range out {
		out[i] = int(buf[i])
	}
	return out
}

// nvrtcCompile compiles src to PTX with the options.
func nvrtcCompile(src, name string, opts []string) ([]byte, error) {
	csrc, cname := C.CString(src), C.CString(name)
	defer C.free(unsafe.Pointer(csrc))
	defer C.free(unsafe.Pointer(cname))
	copts := C.malloc(C.size_t(max(len(opts), 1)) * C.size_t(unsafe.Sizeof(uintptr(0))))
	defer C.free(copts)
	optv := unsafe.Slice((**C.char)(copts), max(len(opts), 1))
	for i, o := range opts {
		optv[i] = C.CString(o)
		defer C.free(unsafe.Pointer(optv[i]))
	}
	var ptx, clog *C.char
	r := C.lp_nvrtc_compile(csrc, cname, C.int(len(opts)), (**C.char)(copts), &ptx, &clog)
	var log string
	if clog != nil {
		log = strings.TrimSpace(C.GoString(clog))
		C.free(unsafe.Pointer(clog))
	}
	if r != 0 {
		if ptx != nil {
			C.free(unsafe.Pointer(ptx))
		}
		msg := fmt.Sprintf("nvrtc: compiling %s with %s: %s", name, strings.Join(opts, " "), C.GoString(C.lp_nvrtcErrorString(r)))
		if log != "" {
			msg += "\n" + log
		}
		return nil, fmt.Errorf("%s", msg)
	}
	out := []byte(C.GoString(ptx))
	C.free(unsafe.Pointer(ptx))
	return out, nil
}

func blasCreate() (blasHandle, error) {
	var h C.cublasHandle_t
	if s := C.lp_cublasCreate(&h); s != 0 {
		return blasHandle{}, fmt.Errorf("cuda: cublasCreate: %s", cublasStatusName(s))
	}
	return blasHandle{h}, nil
}

func blasDestroy(h blasHandle) error {
	if s := C.lp_cublasDestroy(h.h); s != 0 {
		return fmt.Errorf("cuda: cublasDestroy: %s", cublasStatusName(s))
	}
	return nil
}

func blasSetStream(h blasHandle, s cuStream) error {
	if st := C.lp_cublasSetStream(h.h, s.h); st != 0 {
		return fmt.Errorf("cuda: cublasSetStream: %s", cublasStatusName(st))
	}
	return nil
}

// sgemmColMajor is cublasSgemm on column-major operands (opA/opB: 0 = N,
// 1 = T), alpha and beta passed by host pointer.
func sgemmColMajor(h blasHandle, opA, opB, m, n, k int, alpha float32, a uint64, lda int, b uint64, ldb int,
	beta float32, c uint64, ldc int) error {
	s := C.lp_sgemm(h.h, C.int(opA), C.int(opB), C.int(m), C.int(n), C.int(k), C.float(alpha), C.CUdeviceptr(a),
		C.int(lda), C.CUdeviceptr(b), C.int(ldb), C.float(beta), C.CUdeviceptr(c), C.int(ldc))
	if s != 0 {
		return fmt.Errorf("cuda: cublasSgemm(m=%d n=%d k=%d lda=%d ldb=%d ldc=%d): %s", m, n, k, lda, ldb, ldc, cublasStatusName(s))
	}
	return nil
}
