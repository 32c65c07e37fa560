// shim.h lets kernels.cu compile as host C++ for fakecuda.cpp, the host
// emulation of the CUDA driver that the package's tests use where there is no
// GPU. It maps the few CUDA C extensions the kernels use onto C++: the
// qualifiers become nothing (or static storage for __shared__), the built-in
// index variables are per-OS-thread globals the emulator sets, and
// __syncthreads switches to the next emulated thread of the block.
#pragma once
#include <cmath>
#include <cstring>

struct lp_dim3 {
	unsigned x, y, z;
};

extern thread_local lp_dim3 threadIdx, blockIdx, blockDim, gridDim;

void __syncthreads();

#define __global__
#define __device__
#define __forceinline__ inline
// Blocks run one after another on an OS thread, so one static copy per OS
// thread is exactly one block's shared memory.
#define __shared__ static thread_local

inline int __float_as_int(float f) {
	int i;
	std::memcpy(&i, &f, sizeof i);
	return i;
}

inline float __int_as_float(int i) {
	float f;
	std::memcpy(&f, &i, sizeof f);
	return f;
}
