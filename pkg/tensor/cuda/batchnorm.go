//go:build cgo && linux && !static && !purego

package cuda

import (
	"github.com/logitpair/logitpair/pkg/tensor"
)

// bnDims checks x (N, C, ...) against the per-channel tensors and returns
// N, C and the spatial size.
func bnDims(op string, x *tensor.Tensor, perChannel ...*tensor.Tensor) (n, c, inner int) {
	if x.Rank() < 2 {
		tensor.Panicf(op, "want x (N,C) or (N,C,H,W), got %v", x.Shape())
	}
	n, c = x.Dim(0), x.Dim(1)
	for _, t := range perChannel {
		if t != nil && t.Numel() != c {
			tensor.Panicf(op, "per-channel tensor %v for %d channels", t.Shape(), c)
		}
	}
	if n*c == 0 {
		return n, c, 0
	}
	return n, c, x.Numel() / (n * c)
}

// optPtr is t's device address, or 0 for a nil tensor.
func (b *Backend) optPtr(t *tensor.Tensor) uint64 {
	if t == nil {
		return 0
	}
	return b.ptr(t)
}

// BatchNormTrain implements tensor.Backend (one block per channel; the
// statistics in double, two passes, as the CPU backend).
func (b *Backend) BatchNormTrain(y, x, gamma, beta, runMean, runVar, saveMean, saveInvStd *tensor.Tensor, momentum, eps float32) {
	n, c, inner := bnDims("BatchNormTrain", x, gamma, beta, runMean, runVar, saveMean, saveInvStd)
	tensor.SameShape("BatchNormTrain", y, x)
	ps := []uint64{b.ptr(y), b.ptr(x), b.ptr(gamma), b.ptr(beta), b.ptr(runMean), b.ptr(runVar), b.ptr(saveMean), b.ptr(saveInvStd)}
	if c == 0 {
		return
	}
	b.enter()
	defer b.leave()
	args := append(ps, argI(n), argI(c), argI(inner), argF(momentum), argF(eps))
	b.run("lp_bn_train", c, 1, args...)
	keep(y, x, gamma, beta, runMean, runVar, saveMean, saveInvStd)
}

// BatchNormEval implements tensor.Backend.
func (b *Backend) BatchNormEval(y, x, gamma, beta, runMean, runVar *tensor.Tensor, eps float32) {
	n, c, inner := bnDims("BatchNormEval", x, gamma, beta, runMean, runVar)
	tensor.SameShape("BatchNormEval", y, x)
	ps := []uint64{b.ptr(y), b.ptr(x), b.ptr(gamma), b.ptr(beta), b.ptr(runMean), b.ptr(runVar)}
	if y.Numel() == 0 {
		return
	}
	checkInt32("BatchNormEval", c)
	b.enter()
	defer b.leave()
	args := append(ps, argI(n), argI(c), argI(inner), argF(eps))
	// blockIdx.y is the channel (at most 65535 of them).
	if c > 65535 {
		tensor.Panicf("BatchNormEval", "%d channels: the CUDA backend handles at most 65535", c)
	}
	b.run("lp_bn_eval", min(gridFor(n*inner), 1024), c, args...)
	keep(y, x, gamma, beta, runMean, runVar)
}

// BatchNormBackward implements tensor.Backend.
func (b *Backend) BatchNormBackward(dx, dgamma, dbeta, dy, x, gamma, saveMean, saveInvStd *tensor.Tensor) {
	n, c, inner := bnDims("BatchNormBackward", x, dgamma, dbeta, gamma, saveMean, saveInvStd)
	tensor.SameShape("BatchNormBackward", dx, dy, x)
	ps := []uint64{b.ptr(dx), b.optPtr(dgamma), b.optPtr(dbeta), b.ptr(dy), b.ptr(x), b.ptr(gamma), b.ptr(saveMean), b.ptr(saveInvStd)}
	if c == 0 {
		return
	}
	b.enter()
	defer b.leave()
	args := append(ps, argI(n), argI(c), argI(inner))
	b.run("lp_bn_backward", c, 1, args...)
	keep(dx, dgamma, dbeta, dy, x, gamma, saveMean, saveInvStd)
}

// BatchNormEvalBackward implements tensor.Backend.
func (b *Backend) BatchNormEvalBackward(dx, dgamma, dbeta, dy, x, gamma, runMean, runVar *tensor.Tensor, eps float32) {
	n, c, inner := bnDims("BatchNormEvalBackward", x, dgamma, dbeta, gamma, runMean, runVar)
	tensor.SameShape("BatchNormEvalBackward", dx, dy, x)
	ps := []uint64{b.ptr(dx), b.optPtr(dgamma), b.optPtr(dbeta), b.ptr(dy), b.ptr(x), b.ptr(gamma), b.ptr(runMean), b.ptr(runVar)}
	if c == 0 {
		return
	}
	b.enter()
	defer b.leave()
	args := append(ps, argI(n), argI(c), argI(inner), argF(eps))
	b.run("lp_bn_eval_backward", c, 1, args...)
	keep(dx, dgamma, dbeta, dy, x, gamma, runMean, runVar)
}
