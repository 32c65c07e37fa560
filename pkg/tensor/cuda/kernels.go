package cuda

import (
	_ "embed"
	"regexp"
)

// kernelSource is the CUDA C source of every kernel the backend launches.
//
//go:embed kernels.cu
var kernelSource string

// kernelNames lists every kernel the Go side looks up with
// cuModuleGetFunction; a test checks that kernels.cu defines each of them.
var kernelNames = []string{
	"lp_scale", "lp_axpy", "lp_add", "lp_relu_mask", "lp_pgd_step",
	"lp_reduce_partial", "lp_reduce_final",
	"lp_add_bias", "lp_bias_grad", "lp_row_sum",
	"lp_im2col", "lp_col2im", "lp_conv_out", "lp_conv_dy",
	"lp_maxpool_fwd", "lp_maxpool_bwd", "lp_avgpool_fwd", "lp_avgpool_bwd",
	"lp_bn_train", "lp_bn_eval", "lp_bn_backward", "lp_bn_eval_backward",
	"lp_softmax_ce",
}

// kernelDefRE matches a kernel definition: extern "C" __global__ void name(.
var kernelDefRE = regexp.MustCompile(`extern\s+"C"\s+__global__\s+void\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(`)

// definedKernels returns the names of the extern "C" __global__ kernels
// defined in src, in order.
func definedKernels(src string) []string {
	var out []string
	for _, m := range kernelDefRE.FindAllStringSubmatch(src, -1) {
		out = append(out, m[1])
	}
	return out
}

// pickArch returns the virtual architecture to compile for: the newest one
// NVRTC supports that the device (compute capability cc, e.g. 86) can run,
// or cc itself when NVRTC cannot list what it supports.
func pickArch(cc int, supported []int) int {
	if len(supported) == 0 {
		return cc
	}
	best, lowest := -1, supported[0]
	for _, a := range supported {
		if a <= cc && a > best {
			best = a
		}
		lowest = min(lowest, a)
	}
	if best < 0 {
		return lowest // NVRTC is newer than the device; loading will say so
	}
	return best
}
