// logitpair's CUDA kernels, compiled at start-up by NVRTC for the device's
// compute capability (pkg/tensor/cuda). Every kernel is extern "C" so its
// name is the symbol cuModuleGetFunction looks up; the Go side lists the names
// it uses (kernelNames in kernels.go) and a test checks each is defined here.
//
// Conventions:
//   - tensors are float32, row-major, NCHW; sizes are int (the Go side checks
//     that every element count fits), flat indices are long long;
//   - kernels whose launch the Go side sizes by element count use grid-stride
//     loops, so any grid size is correct;
//   - block reductions assume blockDim.x == LP_BLOCK (a power of two) and sum
//     in a fixed order: results are deterministic run to run (no atomics), as
//     the cluster's bit-for-bit replay needs;
//   - reductions accumulate in double, as the CPU backend does.

#define LP_BLOCK 256

typedef long long i64;

#define LP_FOR(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n); i += (i64)blockDim.x * gridDim.x)

// lp_pos mirrors the CPU backend's branch-free ReLU mask: y's bits read as an
// int are positive exactly when y > 0 (or y is a NaN with the sign bit clear,
// which then passes through, as in PyTorch); -0 and +0 give 0.
__device__ __forceinline__ bool lp_pos(float y) { return __float_as_int(y) > 0; }

__device__ __forceinline__ bool lp_isnan(float v) { return v != v; }

// lp_min and lp_max follow Go's built-in min and max for float32: a NaN
// argument gives NaN, and -0 is smaller than +0.
__device__ __forceinline__ float lp_min(float a, float b) {
	if (lp_isnan(a) || lp_isnan(b)) return a + b;
	if (a == b) return __float_as_int(a) < 0 ? a : b;
	return a < b ? a : b;
}

__device__ __forceinline__ float lp_max(float a, float b) {
	if (lp_isnan(a) || lp_isnan(b)) return a + b;
	if (a == b) return __float_as_int(a) < 0 ? b : a;
	return a > b ? a : b;
}

// lp_block_sum returns the sum of v over the block to every thread, in a fixed
// tree order. sh must hold LP_BLOCK doubles.
__device__ double lp_block_sum(double v, double* sh) {
	sh[threadIdx.x] = v;
	__syncthreads();
	for (int s = LP_BLOCK / 2; s > 0; s >>= 1) {
		if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
		__syncthreads();
	}
	double r = sh[0];
	__syncthreads();
	return r;
}

// lp_dmax is math.Max's rule: NaN wins.
__device__ __forceinline__ double lp_dmax(double a, double b) {
	if (a != a || b != b) return a + b;
	return a > b ? a : b;
}

__device__ double lp_block_max(double v, double* sh) {
	sh[threadIdx.x] = v;
	__syncthreads();
	for (int s = LP_BLOCK / 2; s > 0; s >>= 1) {
		if ((int)threadIdx.x < s) sh[threadIdx.x] = lp_dmax(sh[threadIdx.x], sh[threadIdx.x + s]);
		__syncthreads();
	}
	double r = sh[0];
	__syncthreads();
	return r;
}

// ---- element-wise ----------------------------------------------------------

extern "C" __global__ void lp_scale(float* x, float a, int n) {
	LP_FOR(i, n) x[i] *= a;
}

extern "C" __global__ void lp_axpy(float* y, float a, const float* x, int n) {
	LP_FOR(i, n) y[i] += a * x[i];
}

extern "C" __global__ void lp_add(float* d, const float* a, const float* b, int n) {
	LP_FOR(i, n) d[i] = a[i] + b[i];
}

// lp_relu_mask sets dx = dy·[y > 0]; with dy = y it is the ReLU itself.
extern "C" __global__ void lp_relu_mask(float* dx, const float* dy, const float* y, int n) {
	LP_FOR(i, n) dx[i] = lp_pos(y[i]) ? dy[i] : 0.0f;
}

// lp_pgd_step is the whole projected signed-gradient step of
// tensor.Backend.PGDStep: sign (sign(0) = 0), step, projection onto the
// L∞ ball around x0, clip to [0, 1].
extern "C" __global__ void lp_pgd_step(float* x, const float* g, const float* x0, float alpha, float eps, int n) {
	LP_FOR(i, n) {
		float v = x[i];
		float s = g[i];
		if (s > 0.0f) v += alpha;
		else if (s < 0.0f) v -= alpha;
		float c = x0[i];
		v = lp_min(lp_max(v, c - eps), c + eps);
		x[i] = lp_min(lp_max(v, 0.0f), 1.0f);
	}
}

// ---- reductions --------------------------------------------------------------

// lp_reduce_partial writes, for block b, the sum of x (or of x² when squares
// is set) over the elements it strides over into partial[b].
extern "C" __global__ void lp_reduce_partial(const float* x, int n, int squares, double* partial) {
	__shared__ double sh[LP_BLOCK];
	double s = 0;
	LP_FOR(i, n) {
		double v = (double)x[i];
		s += squares ? v * v : v;
	}
	s = lp_block_sum(s, sh);
	if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// lp_reduce_final sums m partial sums into out[0] (one block).
extern "C" __global__ void lp_reduce_final(const double* partial, int m, double* out) {
	__shared__ double sh[LP_BLOCK];
	double s = 0;
	for (int i = threadIdx.x; i < m; i += LP_BLOCK) s += partial[i];
	s = lp_block_sum(s, sh);
	if (threadIdx.x == 0) out[0] = s;
}

// ---- bias ----------------------------------------------------------------------

// lp_add_bias adds b[j] to channel j (dimension 1) of y (N, C, inner).
extern "C" __global__ void lp_add_bias(float* y, const float* b, int c, int inner, int n) {
	LP_FOR(i, n) y[i] += b[(int)((i / inner) % c)];
}

// lp_bias_grad sets db[j] = Σ dy over every dimension but 1; one block per
// channel j.
extern "C" __global__ void lp_bias_grad(float* db, const float* dy, int batch, int c, int inner) {
	__shared__ double sh[LP_BLOCK];
	int ch = blockIdx.x;
	i64 m = (i64)batch * inner;
	double s = 0;
	for (i64 e = threadIdx.x; e < m; e += LP_BLOCK) {
		i64 i = e / inner, k = e % inner;
		s += (double)dy[(i * c + ch) * inner + k];
	}
	s = lp_block_sum(s, sh);
	if (threadIdx.x == 0) db[ch] = (float)s;
}

// lp_row_sum sets out[r] = Σ_j m[r][j] for a rows × cols matrix; one block per
// row.
extern "C" __global__ void lp_row_sum(float* out, const float* m, int rows, int cols) {
	__shared__ double sh[LP_BLOCK];
	int r = blockIdx.x;
	if (r >= rows) return;
	const float* row = m + (i64)r * cols;
	double s = 0;
	for (int j = threadIdx.x; j < cols; j += LP_BLOCK) s += (double)row[j];
	s = lp_block_sum(s, sh);
	if (threadIdx.x == 0) out[r] = (float)s;
}

// ---- convolution (im2col + one GEMM over the whole batch) ------------------------
//
// col is (K, N·OH·OW) with K = Cin·KH·KW: row (ci·KH + i)·KW + j, column
// n·OH·OW + oh·OW + ow holds x[n][ci][oh·sh − pt + i][ow·sw − pl + j] (zero in
// the padding). Then Yt (Cout, N·OHW) = W (Cout, K) · col, and the weight
// gradient is one GEMM with the whole batch as its inner dimension.

extern "C" __global__ void lp_im2col(const float* x, float* col, int n, int cin, int h, int w, int kh, int kw,
	int sh, int sw, int pt, int pl, int oh, int ow) {
	i64 ohw = (i64)oh * ow;
	i64 np = (i64)n * ohw;
	i64 total = (i64)cin * np;
	LP_FOR(t, total) {
		// t = ci·(N·OHW) + b·OHW + oy·OW + ox: one output position of one
		// input channel, writing its KH·KW column entries.
		i64 ci = t / np;
		i64 rest = t % np;
		i64 b = rest / ohw;
		i64 p = rest % ohw;
		int oy = (int)(p / ow), ox = (int)(p % ow);
		const float* plane = x + (b * cin + ci) * h * w;
		float* dst = col + ci * kh * kw * np + rest;
		for (int i = 0; i < kh; i++) {
			int iy = oy * sh - pt + i;
			for (int j = 0; j < kw; j++) {
				int ix = ox * sw - pl + j;
				float v = 0.0f;
				if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = plane[(i64)iy * w + ix];
				dst[(i64)(i * kw + j) * np] = v;
			}
		}
	}
}

// lp_col2im is im2col's adjoint: every input pixel gathers the col entries of
// the patch positions that read it (no atomics: deterministic).
extern "C" __global__ void lp_col2im(const float* col, float* x, int n, int cin, int h, int w, int kh, int kw,
	int sh, int sw, int pt, int pl, int oh, int ow) {
	i64 ohw = (i64)oh * ow;
	i64 np = (i64)n * ohw;
	i64 total = (i64)n * cin * h * w;
	LP_FOR(t, total) {
		int ix = (int)(t % w);
		int iy = (int)((t / w) % h);
		i64 ci = (t / ((i64)w * h)) % cin;
		i64 b = t / ((i64)w * h * cin);
		float s = 0.0f;
		for (int i = 0; i < kh; i++) {
			int ny = iy + pt - i; // = oy·sh
			if (ny < 0 || ny % sh != 0) continue;
			int oy = ny / sh;
			if (oy >= oh) continue;
			for (int j = 0; j < kw; j++) {
				int nx = ix + pl - j;
				if (nx < 0 || nx % sw != 0) continue;
				int ox = nx / sw;
				if (ox >= ow) continue;
				s += col[((ci * kh + i) * kw + j) * np + b * ohw + (i64)oy * ow + ox];
			}
		}
		x[t] = s;
	}
}

// lp_conv_out sets y[b][co][p] = Yt[co][b·OHW + p] (+ bias[co]) and applies the
// fused ReLU when relu is set. bias may be null (hasBias 0).
extern "C" __global__ void lp_conv_out(float* y, const float* yt, const float* bias, int hasBias, int n, int cout,
	int ohw, int relu) {
	i64 total = (i64)n * cout * ohw;
	LP_FOR(t, total) {
		i64 p = t % ohw;
		i64 co = (t / ohw) % cout;
		i64 b = t / ((i64)ohw * cout);
		float v = yt[co * n * ohw + b * ohw + p];
		if (hasBias) v += bias[co];
		if (relu) v = lp_pos(v) ? v : 0.0f;
		y[t] = v;
	}
}

// lp_conv_dy is lp_conv_out's adjoint layout change: dyt[co][b·OHW + p] =
// dy[b][co][p], masked by y > 0 when the ReLU is fused.
extern "C" __global__ void lp_conv_dy(float* dyt, const float* dy, const float* y, int n, int cout, int ohw,
	int relu) {
	i64 total = (i64)n * cout * ohw;
	LP_FOR(t, total) {
		i64 p = t % ohw;
		i64 co = (t / ohw) % cout;
		i64 b = t / ((i64)ohw * cout);
		float g = dy[t];
		if (relu) g = lp_pos(y[t]) ? g : 0.0f;
		dyt[co * n * ohw + b * ohw + p] = g;
	}
}

// ---- pooling ---------------------------------------------------------------------

// lp_maxpool_fwd sets y to the window maxima and arg to the flat in-plane index
// of each window's first maximum (scanning rows, then columns; NaN wins), as
// the CPU backend does.
extern "C" __global__ void lp_maxpool_fwd(float* y, int* arg, const float* x, int planes, int h, int w, int oh,
	int ow, int kh, int kw, int sh, int sw, int ph, int pw) {
	i64 total = (i64)planes * oh * ow;
	LP_FOR(t, total) {
		int ox = (int)(t % ow);
		int oy = (int)((t / ow) % oh);
		i64 pl = t / ((i64)ow * oh);
		const float* xp = x + pl * h * w;
		float best = -__int_as_float(0x7f800000); // −∞
		int bi = -1;
		for (int a = 0; a < kh; a++) {
			int iy = oy * sh - ph + a;
			if (iy < 0 || iy >= h) continue;
			for (int c = 0; c < kw; c++) {
				int ix = ox * sw - pw + c;
				if (ix < 0 || ix >= w) continue;
				float v = xp[iy * w + ix];
				if (bi < 0 || v > best || (lp_isnan(v) && !lp_isnan(best))) {
					best = v;
					bi = iy * w + ix;
				}
			}
		}
		y[t] = best;
		arg[t] = bi;
	}
}

// lp_maxpool_bwd sets every dx pixel to the sum of the dy entries whose
// window's maximum it was, gathered in output order (the CPU backend's
// summation order).
extern "C" __global__ void lp_maxpool_bwd(float* dx, const float* dy, const int* arg, int planes, int h, int w,
	int oh, int ow, int kh, int kw, int sh, int sw, int ph, int pw) {
	i64 total = (i64)planes * h * w;
	LP_FOR(t, total) {
		int ix = (int)(t % w);
		int iy = (int)((t / w) % h);
		i64 pl = t / ((i64)w * h);
		int self = iy * w + ix;
		const float* dyp = dy + pl * oh * ow;
		const int* ap = arg + pl * oh * ow;
		// Windows covering row iy: oy·sh − ph ≤ iy ≤ oy·sh − ph + kh − 1.
		int oy0 = iy + ph - kh + 1;
		oy0 = oy0 <= 0 ? 0 : (oy0 + sh - 1) / sh;
		int oy1 = (iy + ph) / sh;
		if (oy1 > oh - 1) oy1 = oh - 1;
		int ox0 = ix + pw - kw + 1;
		ox0 = ox0 <= 0 ? 0 : (ox0 + sw - 1) / sw;
		int ox1 = (ix + pw) / sw;
		if (ox1 > ow - 1) ox1 = ow - 1;
		float s = 0.0f;
		for (int oy = oy0; oy <= oy1; oy++)
			for (int ox = ox0; ox <= ox1; ox++)
				if (ap[oy * ow + ox] == self) s += dyp[oy * ow + ox];
		dx[t] = s;
	}
}

// lp_avgpool_fwd sets y to window means; padded zeros count in the divisor.
extern "C" __global__ void lp_avgpool_fwd(float* y, const float* x, int planes, int h, int w, int oh, int ow, int kh,
	int kw, int sh, int sw, int ph, int pw, float inv) {
	i64 total = (i64)planes * oh * ow;
	LP_FOR(t, total) {
		int ox = (int)(t % ow);
		int oy = (int)((t / ow) % oh);
		i64 pl = t / ((i64)ow * oh);
		const float* xp = x + pl * h * w;
		float s = 0.0f;
		for (int a = 0; a < kh; a++) {
			int iy = oy * sh - ph + a;
			if (iy < 0 || iy >= h) continue;
			for (int c = 0; c < kw; c++) {
				int ix = ox * sw - pw + c;
				if (ix >= 0 && ix < w) s += xp[iy * w + ix];
			}
		}
		y[t] = s * inv;
	}
}

// lp_avgpool_bwd spreads dy evenly over each window, gathered per input pixel
// in output order.
extern "C" __global__ void lp_avgpool_bwd(float* dx, const float* dy, int planes, int h, int w, int oh, int ow,
	int kh, int kw, int sh, int sw, int ph, int pw, float inv) {
	i64 total = (i64)planes * h * w;
	LP_FOR(t, total) {
		int ix = (int)(t % w);
		int iy = (int)((t / w) % h);
		i64 pl = t / ((i64)w * h);
		const float* dyp = dy + pl * oh * ow;
		int oy0 = iy + ph - kh + 1;
		oy0 = oy0 <= 0 ? 0 : (oy0 + sh - 1) / sh;
		int oy1 = (iy + ph) / sh;
		if (oy1 > oh - 1) oy1 = oh - 1;
		int ox0 = ix + pw - kw + 1;
		ox0 = ox0 <= 0 ? 0 : (ox0 + sw - 1) / sw;
		int ox1 = (ix + pw) / sw;
		if (ox1 > ow - 1) ox1 = ow - 1;
		float s = 0.0f;
		for (int oy = oy0; oy <= oy1; oy++)
			for (int ox = ox0; ox <= ox1; ox++) s += dyp[oy * ow + ox] * inv;
		dx[t] = s;
	}
}

// ---- batch norm (one block per channel for the reductions) -----------------------

#define LP_BN_INDEX(e) (((e) / inner * c + ch) * inner + (e) % inner)

// lp_bn_train normalizes channel blockIdx.x with the batch mean and biased
// variance (two passes, in double), saves mean and 1/sqrt(var+eps), updates
// the running statistics (unbiased variance) and writes y.
extern "C" __global__ void lp_bn_train(float* y, const float* x, const float* gamma, const float* beta, float* rm,
	float* rv, float* sm, float* si, int n, int c, int inner, float momentum, float eps) {
	__shared__ double sh[LP_BLOCK];
	int ch = blockIdx.x;
	i64 m = (i64)n * inner;
	double s = 0;
	for (i64 e = threadIdx.x; e < m; e += LP_BLOCK) s += (double)x[LP_BN_INDEX(e)];
	double mean = lp_block_sum(s, sh) / (double)m;
	double ss = 0;
	for (i64 e = threadIdx.x; e < m; e += LP_BLOCK) {
		double d = (double)x[LP_BN_INDEX(e)] - mean;
		ss += d * d;
	}
	double var = lp_block_sum(ss, sh) / (double)m;
	double inv = 1.0 / sqrt(var + (double)eps);
	float scale = (float)((double)gamma[ch] * inv);
	float shift = beta[ch] - (float)mean * scale;
	for (i64 e = threadIdx.x; e < m; e += LP_BLOCK) {
		i64 o = LP_BN_INDEX(e);
		y[o] = x[o] * scale + shift;
	}
	if (threadIdx.x == 0) {
		sm[ch] = (float)mean;
		si[ch] = (float)inv;
		double unbiased = var;
		if (m > 1) unbiased = var * (double)m / (double)(m - 1);
		double mo = (double)momentum;
		rm[ch] = (float)((1 - mo) * (double)rm[ch] + mo * mean);
		rv[ch] = (float)((1 - mo) * (double)rv[ch] + mo * unbiased);
	}
}

// lp_bn_eval sets y = γ·(x − running_mean)/sqrt(running_var + eps) + β;
// blockIdx.y is the channel, blocks along x stride over its N·inner elements.
extern "C" __global__ void lp_bn_eval(float* y, const float* x, const float* gamma, const float* beta,
	const float* rm, const float* rv, int n, int c, int inner, float eps) {
	int ch = blockIdx.y;
	double inv = 1.0 / sqrt((double)rv[ch] + (double)eps);
	float scale = (float)((double)gamma[ch] * inv);
	float shift = beta[ch] - rm[ch] * scale;
	i64 m = (i64)n * inner;
	LP_FOR(e, m) {
		i64 o = LP_BN_INDEX(e);
		y[o] = x[o] * scale + shift;
	}
}

// lp_bn_backward is the training-mode backward from the saved statistics, one
// block per channel: dx = γ·inv·(dy − Σdy/M − x̂·Σ(dy·x̂)/M), dγ = Σ dy·x̂,
// dβ = Σ dy. dgamma and dbeta may be null.
extern "C" __global__ void lp_bn_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
	const float* gamma, const float* sm, const float* si, int n, int c, int inner) {
	__shared__ double sh[LP_BLOCK];
	int ch = blockIdx.x;
	i64 m = (i64)n * inner;
	double mean = (double)sm[ch], inv = (double)si[ch];
	double sdy = 0, sdyx = 0;
	for (i64 e = threadIdx.x; e < m; e += LP_BLOCK) {
		i64 o = LP_BN_INDEX(e);
		double g = (double)dy[o];
		sdy += g;
		sdyx += g * ((double)x[o] - mean) * inv;
	}
	sdy = lp_block_sum(sdy, sh);
	sdyx = lp_block_sum(sdyx, sh);
	if (threadIdx.x == 0) {
		if (dgamma) dgamma[ch] = (float)sdyx;
		if (dbeta) dbeta[ch] = (float)sdy;
	}
	float k1 = (float)((double)gamma[ch] * inv);
	float mdy = (float)(sdy / (double)m);
	float mdyx = (float)(sdyx / (double)m);
	float fmean = (float)mean, finv = (float)inv;
	for (i64 e = threadIdx.x; e < m; e += LP_BLOCK) {
		i64 o = LP_BN_INDEX(e);
		float xh = (x[o] - fmean) * finv;
		dx[o] = k1 * (dy[o] - mdy - xh * mdyx);
	}
}

// lp_bn_eval_backward is the backward of lp_bn_eval (constant statistics), one
// block per channel: dx = dy·γ/sqrt(running_var+eps), dγ = Σ dy·x̂, dβ = Σ dy.
extern "C" __global__ void lp_bn_eval_backward(float* dx, float* dgamma, float* dbeta, const float* dy,
	const float* x, const float* gamma, const float* rm, const float* rv, int n, int c, int inner, float eps) {
	__shared__ double sh[LP_BLOCK];
	int ch = blockIdx.x;
	i64 m = (i64)n * inner;
	float inv = (float)(1.0 / sqrt((double)rv[ch] + (double)eps));
	float k1 = gamma[ch] * inv;
	float mu = rm[ch];
	double sdy = 0, sdyx = 0;
	for (i64 e = threadIdx.x; e < m; e += LP_BLOCK) {
		i64 o = LP_BN_INDEX(e);
		float g = dy[o];
		dx[o] = g * k1;
		sdy += (double)g;
		sdyx += (double)g * (double)((x[o] - mu) * inv);
	}
	sdy = lp_block_sum(sdy, sh);
	sdyx = lp_block_sum(sdyx, sh);
	if (threadIdx.x == 0) {
		if (dgamma) dgamma[ch] = (float)sdyx;
		if (dbeta) dbeta[ch] = (float)sdy;
	}
}

// ---- softmax cross-entropy ----------------------------------------------------------

// lp_softmax_ce handles row blockIdx.x of logits z (N, K): with TensorFlow's
// label-smoothing target t (on = 1−δ+δ/K on the label, off = δ/K elsewhere) it
// writes CE_i = lse − Σ_k t_k z_k into ce[i] (double) and, when hasDz is set,
// dz_i = g·(softmax(z_i) − t) with g = scale/N. Numerically stable (the row
// maximum is subtracted before exponentiating), computed in double.
extern "C" __global__ void lp_softmax_ce(float* dz, double* ce, const float* z, const int* labels, int n, int k,
	double off, double on, double g, int hasDz) {
	__shared__ double sh[LP_BLOCK];
	int row = blockIdx.x;
	if (row >= n) return;
	const float* zr = z + (i64)row * k;
	int y = labels[row];
	double mx = (double)zr[0];
	for (int j = threadIdx.x; j < k; j += LP_BLOCK) mx = lp_dmax(mx, (double)zr[j]);
	mx = lp_block_max(mx, sh);
	double se = 0, tz = 0;
	for (int j = threadIdx.x; j < k; j += LP_BLOCK) {
		double v = (double)zr[j];
		se += exp(v - mx);
		tz += (j == y ? on : off) * v;
	}
	se = lp_block_sum(se, sh);
	tz = lp_block_sum(tz, sh);
	double lse = mx + log(se);
	if (threadIdx.x == 0) ce[row] = lse - tz;
	if (hasDz) {
		float* dr = dz + (i64)row * k;
		for (int j = threadIdx.x; j < k; j += LP_BLOCK) {
			double t = j == y ? on : off;
			dr[j] = (float)(g * (exp((double)zr[j] - lse) - t));
		}
	}
}
