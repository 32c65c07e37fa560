// fakecuda: a host emulation of the parts of the CUDA driver API, NVRTC and
// cuBLAS that pkg/tensor/cuda uses, built by the package's tests (with g++)
// into a shared library that is installed as libcuda.so.1, libnvrtc.so.12 and
// libcublas.so.12 in a folder LOGITPAIR_CUDA_LIB_DIR points at. It runs the
// real kernels.cu (compiled as C++ through shim.h): blocks one after another,
// the threads of a block as cooperative fibers that switch at __syncthreads,
// so block reductions behave as on a GPU. It checks what a GPU would only
// crash on: a context current on the calling thread for every call, copies
// and GEMM operands inside live allocations, cuBLAS's argument rules, guard
// bytes around every allocation (checked at each stream synchronization).
//
// It is a test double, not a GPU: the NVRTC "compile" checks its options and
// returns a marker the module loader accepts; the kernels are the ones
// compiled into this library.
//
// Environment: FAKECUDA_DEVICES (device count, default 1), FAKECUDA_NO_DEVICE
// (cuInit fails with CUDA_ERROR_NO_DEVICE), FAKECUDA_CC (compute capability
// as major*10+minor, default 86).
#include "shim.h"

#include <ucontext.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

thread_local lp_dim3 threadIdx, blockIdx, blockDim, gridDim;

#include "kernels.cu"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
struct CUctx_st { int dev; };
struct CUmod_st { int id; };
struct CUfunc_st;
struct CUstream_st { int id; };
typedef CUctx_st* CUcontext;
typedef CUmod_st* CUmodule;
typedef CUfunc_st* CUfunction;
typedef CUstream_st* CUstream;

enum {
	OK = 0,
	ERR_INVALID_VALUE = 1,
	ERR_OUT_OF_MEMORY = 2,
	ERR_NOT_INITIALIZED = 3,
	ERR_NO_DEVICE = 100,
	ERR_INVALID_DEVICE = 101,
	ERR_INVALID_IMAGE = 200,
	ERR_INVALID_CONTEXT = 201,
	ERR_INVALID_PTX = 218,
	ERR_INVALID_HANDLE = 400,
	ERR_NOT_FOUND = 500,
	ERR_ILLEGAL_ADDRESS = 700,
	ERR_LAUNCH_OUT_OF_RESOURCES = 701,
};

// ---- kernels and their emulated launch ------------------------------------------

template <typename... A, size_t... I>
static void invoke_impl(void (*f)(A...), void** p, std::index_sequence<I...>) {
	f(*static_cast<std::remove_reference_t<A>*>(p[I])...);
}

template <typename... A>
static void invoke(void (*f)(A...), void** p) {
	invoke_impl(f, p, std::index_sequence_for<A...>{});
}

struct CUfunc_st {
	const char* name;
	void (*call)(void**);
	int uses_sync; // -1 unknown until the first launch
};

#define LP_KERNEL(n) {#n, [](void** p) { invoke(n, p); }, -1},
static CUfunc_st kernels[] = {
#include "registry.inc"
};

struct Fiber {
	ucontext_t ctx;
	std::vector<char> stack;
	bool done;
};

static thread_local ucontext_t sched_ctx;
static thread_local std::vector<Fiber>* fibers;
static thread_local int cur_fiber = -1;
static thread_local int syncs;
static thread_local CUfunction cur_fn;
static thread_local void** cur_params;

void __syncthreads() {
	syncs++;
	if (cur_fiber < 0) {
		std::fprintf(stderr, "fakecuda: kernel %s called __syncthreads outside a fiber launch\n", cur_fn ? cur_fn->name : "?");
		std::abort();
	}
	swapcontext(&(*fibers)[cur_fiber].ctx, &sched_ctx);
}

static void fiber_main() {
	cur_fn->call(cur_params);
	(*fibers)[cur_fiber].done = true;
}

// run_block runs one block: directly, thread after thread, for a kernel known
// not to synchronize; otherwise as fibers resumed round-robin, each round
// taking every thread to its next __syncthreads (or its end).
static void run_block(CUfunction f, void** params, unsigned bx) {
	if (f->uses_sync == 0) {
		cur_fiber = -1;
		for (unsigned t = 0; t < bx; t++) {
			threadIdx = {t, 0, 0};
			f->call(params);
		}
		return;
	}
	if (!fibers) fibers = new std::vector<Fiber>();
	if (fibers->size() < bx) fibers->resize(bx);
	int before = syncs;
	for (unsigned t = 0; t < bx; t++) {
		Fiber& fb = (*fibers)[t];
		if (fb.stack.empty()) fb.stack.resize(1 << 16);
		getcontext(&fb.ctx);
		fb.ctx.uc_stack.ss_sp = fb.stack.data();
		fb.ctx.uc_stack.ss_size = fb.stack.size();
		fb.ctx.uc_link = &sched_ctx;
		makecontext(&fb.ctx, fiber_main, 0);
		fb.done = false;
	}
	for (bool more = true; more;) {
		more = false;
		for (unsigned t = 0; t < bx; t++) {
			if ((*fibers)[t].done) continue;
			more = true;
			cur_fiber = (int)t;
			threadIdx = {t, 0, 0};
			swapcontext(&sched_ctx, &(*fibers)[t].ctx);
		}
	}
	cur_fiber = -1;
	if (f->uses_sync < 0) f->uses_sync = syncs != before;
}

// ---- state ---------------------------------------------------------------------

static int n_devices = -1;
static int cc = 86;
static CUctx_st primary_ctx[8];
static thread_local CUcontext current;
static std::mutex mem_mu;
static std::map<uintptr_t, size_t> live; // device address -> size
static const size_t guard = 256;
static const unsigned char guard_byte = 0xA5;

static bool ctx_ok() { return current != nullptr; }

// inside reports whether [p, p+n) lies in one live allocation.
static bool inside(uintptr_t p, size_t n) {
	std::lock_guard<std::mutex> l(mem_mu);
	auto it = live.upper_bound(p);
	if (it == live.begin()) return false;
	--it;
	return p >= it->first && p + n <= it->first + it->second;
}

static bool guards_ok(uintptr_t p, size_t n) {
	unsigned char* base = (unsigned char*)p - guard;
	for (size_t i = 0; i < guard; i++)
		if (base[i] != guard_byte || base[guard + n + i] != guard_byte) return false;
	return true;
}

static CUresult check_guards() {
	std::lock_guard<std::mutex> l(mem_mu);
	for (auto& [p, n] : live)
		if (!guards_ok(p, n)) {
			std::fprintf(stderr, "fakecuda: write outside the allocation at 0x%lx (%zu bytes)\n", (unsigned long)p, n);
			return ERR_ILLEGAL_ADDRESS;
		}
	return OK;
}

extern "C" {

// ---- driver API ------------------------------------------------------------------

CUresult cuInit(unsigned int) {
	if (std::getenv("FAKECUDA_NO_DEVICE")) return ERR_NO_DEVICE;
	const char* d = std::getenv("FAKECUDA_DEVICES");
	n_devices = d ? std::atoi(d) : 1;
	if (n_devices > 8) n_devices = 8;
	if (const char* c = std::getenv("FAKECUDA_CC")) cc = std::atoi(c);
	return OK;
}

CUresult cuDriverGetVersion(int* v) {
	*v = 12040;
	return OK;
}

CUresult cuDeviceGetCount(int* n) {
	if (n_devices < 0) return ERR_NOT_INITIALIZED;
	*n = n_devices;
	return OK;
}

CUresult cuDeviceGet(CUdevice* d, int ordinal) {
	if (ordinal < 0 || ordinal >= n_devices) return ERR_INVALID_DEVICE;
	*d = ordinal;
	return OK;
}

CUresult cuDeviceGetName(char* name, int len, CUdevice) {
	std::snprintf(name, len, "fakecuda (host emulation)");
	return OK;
}

CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice) {
	if (attr == 75) *v = cc / 10;
	else if (attr == 76) *v = cc % 10;
	else return ERR_INVALID_VALUE;
	return OK;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext* c, CUdevice d) {
	if (d < 0 || d >= n_devices) return ERR_INVALID_DEVICE;
	primary_ctx[d].dev = d;
	*c = &primary_ctx[d];
	return OK;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return OK; }

CUresult cuCtxSetCurrent(CUcontext c) {
	current = c;
	return OK;
}

CUresult cuStreamCreate(CUstream* s, unsigned int) {
	if (!ctx_ok()) return ERR_INVALID_CONTEXT;
	*s = new CUstream_st{1};
	return OK;
}

CUresult cuStreamDestroy_v2(CUstream s) {
	if (!ctx_ok()) return ERR_INVALID_CONTEXT;
	delete s;
	return OK;
}

CUresult cuStreamSynchronize(CUstream) {
	if (!ctx_ok()) return ERR_INVALID_CONTEXT;
	return check_guards();
}

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) {
	if (!ctx_ok()) return ERR_INVALID_CONTEXT;
	if (n == 0) return ERR_INVALID_VALUE;
	unsigned char* raw = (unsigned char*)std::malloc(n + 2 * guard);
	if (!raw) return ERR_OUT_OF_MEMORY;
	std::memset(raw, guard_byte, guard);
	std::memset(raw + guard, 0xCD, n); // device memory starts as garbage
	std::memset(raw + guard + n, guard_byte, guard);
	uintptr_t addr = (uintptr_t)(raw + guard);
	std::lock_guard<std::mutex> l(mem_mu);
	live[addr] = n;
	*p = addr;
	return OK;
}

CUresult cuMemFree_v2(CUdeviceptr p) {
	if (!ctx_ok()) return ERR_INVALID_CONTEXT;
	std::lock_guard<std::mutex> l(mem_mu);
	auto it = live.find((uintptr_t)p);
	if (it == live.end()) return ERR_INVALID_VALUE;
	bool ok = guards_ok(it->first, it->second);
	std::free((unsigned char*)it->first - guard);
	live.erase(it);
	return ok ? OK : ERR_ILLEGAL_ADDRESS;
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* h, size_t n, CUstream) {
	if (!ctx_ok()) return ERR_INVALID_CONTEXT;
	if (!inside(d, n)) return ERR_INVALID_VALUE;
	std::memcpy((void*)d, h, n);
	return OK;
}

CUresult cuMemcpyDtoHAsync_v2(void* h, CUdeviceptr d, size_t n, CUstream) {
	if (!ctx_ok()) return ERR_INVALID_CONTEXT;
	if (!inside(d, n)) return ERR_INVALID_VALUE;
	std::memcpy(h, (const void*)d, n);
	return OK;
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream) {
	if (!ctx_ok()) return ERR_INVALID_CONTEXT;
	if (!inside(d, n) || !inside(s, n)) return ERR_INVALID_VALUE;
	std::memmove((void*)d, (const void*)s, n);
	return OK;
}

CUresult cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, CUstream) {
	if (!ctx_ok()) return ERR_INVALID_CONTEXT;
	if (!inside(d, 4 * n)) return ERR_INVALID_VALUE;
	unsigned int* p = (unsigned int*)d;
	for (size_t i = 0; i < n; i++) p[i] = v;
	return OK;
}

static const char ptx_marker[] = "// fakecuda PTX";

CUresult cuModuleLoadData(CUmodule* m, const void* image) {
	if (!ctx_ok()) return ERR_INVALID_CONTEXT;
	if (std::strncmp((const char*)image, ptx_marker, sizeof ptx_marker - 1) != 0) return ERR_INVALID_PTX;
	*m = new CUmod_st{1};
	return OK;
}

CUresult cuModuleUnload(CUmodule m) {
	delete m;
	return OK;
}

CUresult cuModuleGetFunction(CUfunction* f, CUmodule, const char* name) {
	if (!ctx_ok()) return ERR_INVALID_CONTEXT;
	for (auto& k : kernels)
		if (std::strcmp(k.name, name) == 0) {
			*f = &k;
			return OK;
		}
	return ERR_NOT_FOUND;
}

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
	unsigned shmem, CUstream, void** params, void** extra) {
	if (!ctx_ok()) return ERR_INVALID_CONTEXT;
	if (!f || !params || extra || shmem != 0) return ERR_INVALID_VALUE;
	if (gx == 0 || gy == 0 || gz != 1 || by != 1 || bz != 1 || gy > 65535) return ERR_INVALID_VALUE;
	if (bx == 0 || bx > 1024) return ERR_LAUNCH_OUT_OF_RESOURCES;
	cur_fn = f;
	cur_params = params;
	gridDim = {gx, gy, 1};
	blockDim = {bx, 1, 1};
	for (unsigned y = 0; y < gy; y++)
		for (unsigned x = 0; x < gx; x++) {
			blockIdx = {x, y, 0};
			run_block(f, params, bx);
		}
	cur_fn = nullptr;
	return OK;
}

static const char* err_name(CUresult r) {
	switch (r) {
	case OK: return "CUDA_SUCCESS";
	case ERR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
	case ERR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
	case ERR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
	case ERR_NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
	case ERR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
	case ERR_INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
	case ERR_INVALID_PTX: return "CUDA_ERROR_INVALID_PTX";
	case ERR_NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
	case ERR_ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
	case ERR_LAUNCH_OUT_OF_RESOURCES: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
	}
	return nullptr;
}

CUresult cuGetErrorName(CUresult r, const char** s) {
	*s = err_name(r);
	return *s ? OK : ERR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult r, const char** s) {
	*s = err_name(r) ? "fakecuda error" : nullptr;
	return *s ? OK : ERR_INVALID_VALUE;
}

// ---- NVRTC ---------------------------------------------------------------------------

struct _nvrtcProgram {
	std::string src, ptx, log;
};
typedef _nvrtcProgram* nvrtcProgram;

int nvrtcVersion(int* major, int* minor) {
	*major = 12;
	*minor = 4;
	return 0;
}

int nvrtcCreateProgram(nvrtcProgram* p, const char* src, const char*, int nh, const char* const*, const char* const*) {
	if (!src || nh != 0) return 3; // NVRTC_ERROR_INVALID_INPUT
	*p = new _nvrtcProgram{src, "", ""};
	return 0;
}

int nvrtcCompileProgram(nvrtcProgram p, int n, const char* const* opts) {
	std::string arch;
	for (int i = 0; i < n; i++) {
		std::string o = opts[i];
		if (o.rfind("--gpu-architecture=compute_", 0) == 0) arch = o.substr(std::strlen("--gpu-architecture="));
		else {
			p->log = "unknown option " + o;
			return 5; // NVRTC_ERROR_INVALID_OPTION
		}
	}
	if (arch.empty()) {
		p->log = "no --gpu-architecture";
		return 5;
	}
	for (auto& k : kernels)
		if (p->src.find(std::string("void ") + k.name + "(") == std::string::npos) {
			p->log = std::string("kernels.cu: ") + k.name + " not defined";
			return 6; // NVRTC_ERROR_COMPILATION
		}
	p->ptx = std::string(ptx_marker) + " " + arch + "\n";
	return 0;
}

int nvrtcGetProgramLogSize(nvrtcProgram p, size_t* n) {
	*n = p->log.size() + 1;
	return 0;
}

int nvrtcGetProgramLog(nvrtcProgram p, char* out) {
	std::memcpy(out, p->log.c_str(), p->log.size() + 1);
	return 0;
}

int nvrtcGetPTXSize(nvrtcProgram p, size_t* n) {
	*n = p->ptx.size() + 1;
	return 0;
}

int nvrtcGetPTX(nvrtcProgram p, char* out) {
	std::memcpy(out, p->ptx.c_str(), p->ptx.size() + 1);
	return 0;
}

int nvrtcDestroyProgram(nvrtcProgram* p) {
	delete *p;
	*p = nullptr;
	return 0;
}

const char* nvrtcGetErrorString(int r) {
	switch (r) {
	case 0: return "NVRTC_SUCCESS";
	case 3: return "NVRTC_ERROR_INVALID_INPUT";
	case 5: return "NVRTC_ERROR_INVALID_OPTION";
	case 6: return "NVRTC_ERROR_COMPILATION";
	}
	return "NVRTC_ERROR_UNKNOWN";
}

static const int archs[] = {50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90};

int nvrtcGetNumSupportedArchs(int* n) {
	*n = sizeof archs / sizeof archs[0];
	return 0;
}

int nvrtcGetSupportedArchs(int* out) {
	std::memcpy(out, archs, sizeof archs);
	return 0;
}

// ---- cuBLAS ----------------------------------------------------------------------------

struct cublasContext {
	CUstream stream;
};

int cublasCreate_v2(cublasContext** h) {
	if (!ctx_ok()) return 1; // CUBLAS_STATUS_NOT_INITIALIZED
	*h = new cublasContext{nullptr};
	return 0;
}

int cublasDestroy_v2(cublasContext* h) {
	delete h;
	return 0;
}

int cublasSetStream_v2(cublasContext* h, CUstream s) {
	h->stream = s;
	return 0;
}

// cublasSgemm_v2: C = alpha·op(A)·op(B) + beta·C, column-major, with
// cuBLAS's argument checks (CUBLAS_STATUS_INVALID_VALUE = 7) and, beyond
// them, a check that every operand lies inside a live allocation.
int cublasSgemm_v2(cublasContext* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* A, int lda,
	const float* B, int ldb, const float* beta, float* C, int ldc) {
	if (!h) return 1;
	if (!ctx_ok()) return 14; // CUBLAS_STATUS_INTERNAL_ERROR
	if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1) || m < 0 || n < 0 || k < 0) return 7;
	int rowsA = ta == 0 ? m : k, colsA = ta == 0 ? k : m;
	int rowsB = tb == 0 ? k : n, colsB = tb == 0 ? n : k;
	if (lda < (rowsA > 1 ? rowsA : 1) || ldb < (rowsB > 1 ? rowsB : 1) || ldc < (m > 1 ? m : 1)) return 7;
	if (m == 0 || n == 0) return 0;
	auto span = [](int rows, int cols, int ld) { return ((size_t)ld * (cols - 1) + rows) * sizeof(float); };
	if ((k > 0 && (!inside((uintptr_t)A, span(rowsA, colsA, lda)) || !inside((uintptr_t)B, span(rowsB, colsB, ldb)))) ||
		!inside((uintptr_t)C, span(m, n, ldc))) {
		std::fprintf(stderr, "fakecuda: cublasSgemm operand outside its allocation (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d)\n", m, n, k, lda, ldb, ldc);
		return 14;
	}
	for (int j = 0; j < n; j++)
		for (int i = 0; i < m; i++) {
			double s = 0;
			for (int l = 0; l < k; l++) {
				float a = ta == 0 ? A[i + (size_t)l * lda] : A[l + (size_t)i * lda];
				float b = tb == 0 ? B[l + (size_t)j * ldb] : B[j + (size_t)l * ldb];
				s += (double)a * b;
			}
			float* c = &C[i + (size_t)j * ldc];
			*c = (float)(*alpha * s + (*beta == 0 ? 0.0 : (double)*beta * *c));
		}
	return 0;
}

} // extern "C"
