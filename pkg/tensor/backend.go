package tensor

// ConvParams describes a 2-D convolution's geometry (cross-correlation, as in
// PyTorch and TensorFlow). Padding may be asymmetric so that TensorFlow's
// 'same' padding with stride > 1 (extra row/column at the bottom/right) is
// expressible; PyTorch's symmetric padding has Top==Bottom and Left==Right.
type ConvParams struct {
	StrideH, StrideW  int
	PadTop, PadBottom int
	PadLeft, PadRight int
	// ReLU fuses a ReLU into the convolution: y = max(conv(x, w) + b, 0).
	// Backward's dy is then the gradient with respect to that post-ReLU y
	// and is masked by y > 0 inside the plan, which saves a pass over the
	// activations in each direction.
	ReLU bool
}

// OutSize returns the output height and width for an input of h×w and a
// kernel of kh×kw. It panics with ErrShape if the result would be empty.
func (p ConvParams) OutSize(h, w, kh, kw int) (oh, ow int) {
	if p.StrideH <= 0 || p.StrideW <= 0 {
		Panicf("Conv2D", "stride must be positive, got %d×%d", p.StrideH, p.StrideW)
	}
	oh = (h+p.PadTop+p.PadBottom-kh)/p.StrideH + 1
	ow = (w+p.PadLeft+p.PadRight-kw)/p.StrideW + 1
	if h+p.PadTop+p.PadBottom < kh || w+p.PadLeft+p.PadRight < kw || oh <= 0 || ow <= 0 {
		Panicf("Conv2D", "kernel %d×%d does not fit input %d×%d with padding %+v", kh, kw, h, w, p)
	}
	return oh, ow
}

// SamePadding returns TensorFlow's 'same' padding for one spatial dimension:
// output size ceil(in/stride), total padding split with the extra unit at the
// end (bottom/right).
func SamePadding(in, kernel, stride int) (before, after int) {
	out := (in + stride - 1) / stride
	total := (out-1)*stride + kernel - in
	if total < 0 {
		total = 0
	}
	return total / 2, total - total/2
}

// PoolParams describes a 2-D max or average pooling window.
type PoolParams struct {
	KernelH, KernelW int
	StrideH, StrideW int
	PadH, PadW       int // symmetric zero padding (PyTorch convention)
}

// OutSize returns the pooled height and width (PyTorch's floor mode).
func (p PoolParams) OutSize(h, w int) (oh, ow int) {
	if p.KernelH <= 0 || p.KernelW <= 0 || p.StrideH <= 0 || p.StrideW <= 0 {
		Panicf("Pool2D", "kernel and stride must be positive: %+v", p)
	}
	oh = (h+2*p.PadH-p.KernelH)/p.StrideH + 1
	ow = (w+2*p.PadW-p.KernelW)/p.StrideW + 1
	if oh <= 0 || ow <= 0 {
		Panicf("Pool2D", "window %+v does not fit input %d×%d", p, h, w)
	}
	return oh, ow
}

// Conv is a backend's plan for one convolution geometry at one batch size. It
// owns whatever scratch memory the backend needs (im2col buffers on the CPU),
// allocated once when the plan is made, so steady-state steps do not allocate.
// Forward may keep state that the following Backward uses, so a plan serves
// one layer at a time.
type Conv interface {
	// OutShape is (N, Cout, OH, OW).
	OutShape() Shape
	// Forward computes y = conv(x, w) + b. x: (N, Cin, H, W); w: (Cout, Cin,
	// KH, KW) (PyTorch's OIHW); b: (Cout) or nil; y: OutShape().
	Forward(y, x, w, b *Tensor)
	// Backward computes, from dy (same shape as y) and the x of the last
	// Forward: dx (x's shape), dw (w's shape) and db (Cout). Any of dx, dw, db
	// may be nil and is then skipped; with dw and db nil only the input
	// gradient is computed (the weight-gradient GEMMs are skipped). Outputs
	// are overwritten, not accumulated.
	Backward(dx, dw, db, dy, x, w *Tensor)
}

// MaxPool is a backend's plan for max pooling at one input shape. Forward
// records where each window's maximum was; Backward routes dy there.
type MaxPool interface {
	// OutShape is (N, C, OH, OW).
	OutShape() Shape
	// Forward sets y to the window maxima of x (padding counts as −∞).
	Forward(y, x *Tensor)
	// Backward sets dx (x's shape) by routing each dy entry to the first
	// maximal element of its window in the last Forward (PyTorch's tie
	// rule), summing where windows overlap.
	Backward(dx, dy *Tensor)
}

// Backend is the op-level interface over which models, attacks and objectives
// are written. Tensors passed to a backend's ops must have been allocated by
// that backend. Unless said otherwise, ops overwrite their first (output)
// argument, and output tensors may not alias inputs.
type Backend interface {
	// Name identifies the backend and its GEMM, e.g. "cpu/openblas".
	Name() string
	// Threads is the number of threads the backend computes with.
	Threads() int

	// New returns a zero-filled tensor.
	New(shape ...int) *Tensor
	// Upload copies host data into t; len(src) must equal t.Numel().
	Upload(t *Tensor, src []float32)
	// Download copies t into host memory; len(dst) must equal t.Numel().
	Download(dst []float32, t *Tensor)
	// Copy sets dst = src (same number of elements).
	Copy(dst, src *Tensor)
	// Fill sets every element of t to v.
	Fill(t *Tensor, v float32)

	// Scale sets x = alpha·x.
	Scale(x *Tensor, alpha float32)
	// Axpy sets y = y + alpha·x.
	Axpy(y *Tensor, alpha float32, x *Tensor)
	// Add sets dst = a + b (dst may alias a or b).
	Add(dst, a, b *Tensor)
	// Sum returns Σ x.
	Sum(x *Tensor) float64
	// SumSquares returns Σ x².
	SumSquares(x *Tensor) float64

	// ReLU sets y = max(x, 0) (y may alias x).
	ReLU(y, x *Tensor)
	// ReLUBackward sets dx = dy · [y > 0] where y is ReLU's output (dx may
	// alias dy).
	ReLUBackward(dx, dy, y *Tensor)

	// MatMul sets c = alpha·op(a)·op(b) + beta·c for 2-D tensors, where op
	// transposes when the flag is set.
	MatMul(c, a, b *Tensor, transA, transB bool, alpha, beta float32)
	// AddBias adds bias[j] to every element of channel j of y, where the
	// channel is dimension 1: y is (N, C) or (N, C, H, W).
	AddBias(y, bias *Tensor)
	// BiasGrad sets db[j] = Σ dy over every dimension but 1.
	BiasGrad(db, dy *Tensor)

	// NewConv plans a convolution of input shape x and weight shape w.
	NewConv(x, w Shape, p ConvParams) Conv

	// NewMaxPool plans max pooling of input shape x (N, C, H, W).
	NewMaxPool(x Shape, p PoolParams) MaxPool
	// AvgPool2D sets y to window means of x; padded zeros count in the
	// divisor (PyTorch's count_include_pad=True).
	AvgPool2D(y, x *Tensor, p PoolParams)
	// AvgPool2DBackward spreads dy evenly over each window.
	AvgPool2DBackward(dx, dy *Tensor, p PoolParams)

	// BatchNormTrain normalizes x (N, C, H, W) or (N, C) with the batch's
	// per-channel mean and biased variance, y = γ·x̂ + β, saves mean and
	// 1/sqrt(var+eps) for the backward pass, and updates the running
	// statistics with PyTorch's convention:
	//   running = (1−momentum)·running + momentum·batch,
	// using the unbiased variance for running_var.
	BatchNormTrain(y, x, gamma, beta, runMean, runVar, saveMean, saveInvStd *Tensor, momentum, eps float32)
	// BatchNormEval sets y = γ·(x − running_mean)/sqrt(running_var + eps) + β.
	BatchNormEval(y, x, gamma, beta, runMean, runVar *Tensor, eps float32)
	// BatchNormBackward is the training-mode backward from the saved batch
	// statistics. dgamma and dbeta may be nil (input gradient only).
	BatchNormBackward(dx, dgamma, dbeta, dy, x, gamma, saveMean, saveInvStd *Tensor)
	// BatchNormEvalBackward is the backward of BatchNormEval, where the
	// statistics are constants. dgamma and dbeta may be nil.
	BatchNormEvalBackward(dx, dgamma, dbeta, dy, x, gamma, runMean, runVar *Tensor, eps float32)

	// PGDStep takes one projected signed-gradient step under L∞:
	//   x ← clip( clip(x + α·sign(g), x0 − ε, x0 + ε), 0, 1 ),
	// with sign(0) = 0. α < 0 descends (targeted attacks).
	PGDStep(x, g, x0 *Tensor, alpha, eps float32)

	// SoftmaxCrossEntropy computes, for logits z (N, K) and labels y,
	//   CE_i = −Σ_k t_ik · log softmax(z_i)_k,
	// with TensorFlow's label-smoothing target t_ik = (1−δ)·[k=y_i] + δ/K, and
	// returns scale·(1/N)·Σ_i CE_i. It sets dz = scale·(1/N)·(softmax(z) − t).
	// dz may be nil. If perExample is non-nil (length N) it receives CE_i.
	SoftmaxCrossEntropy(dz, z *Tensor, labels []int32, smoothing, scale float32, perExample []float32) float64
}
