package nn

import "github.com/logitpair/logitpair/pkg/tensor"

// SoftmaxCrossEntropy returns the mean softmax cross-entropy of logits z
// (N, K) against labels, with TensorFlow's label smoothing δ (target
// 1−δ+δ/K on the label, δ/K elsewhere), and writes dL/dz into dz (may be
// nil):
//
//	L = (1/N) Σ_i −Σ_k t_ik · log softmax(z_i)_k
func SoftmaxCrossEntropy(be tensor.Backend, dz, z *tensor.Tensor, labels []int32, smoothing float32) float64 {
	return be.SoftmaxCrossEntropy(dz, z, labels, smoothing, 1, nil)
}

// SquaredL2Pair is the released ALP code's logit-pairing distance, the mean
// squared error over batch × classes of two logit tensors a, b (N, K):
//
//	L = (1/(N·K)) Σ_i ‖a_i − b_i‖²,   dL/da = (2/(N·K))·(a − b) = −dL/db
//
// The paper writes λ·(1/m)·Σ_i ‖f(x_i) − f(x̃_i)‖², which is K times this.
// da and db receive the gradients (either may be nil).
func SquaredL2Pair(be tensor.Backend, da, db, a, b *tensor.Tensor, scratch *tensor.Tensor) float64 {
	tensor.SameShape("SquaredL2Pair", a, b, scratch)
	nk := float32(a.Numel())
	be.Copy(scratch, a)
	be.Axpy(scratch, -1, b) // scratch = a − b
	loss := be.SumSquares(scratch) / float64(nk)
	if da != nil {
		be.Copy(da, scratch)
		be.Scale(da, 2/nk)
	}
	if db != nil {
		be.Copy(db, scratch)
		be.Scale(db, -2/nk)
	}
	return loss
}
