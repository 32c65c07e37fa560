package cpu

import (
	"math"

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
	return n, c, x.Numel() / (n * c)
}

// channel calls fn for each (sample, contiguous plane) of channel ch.
func channel(d []float32, n, c, inner, ch int, fn func(plane []float32)) {
	for i := 0; i < n; i++ {
		off := (i*c + ch) * inner
		fn(d[off : off+inner])
	}
}

// BatchNormTrain implements tensor.Backend.
//
//	μ = mean(x), σ² = mean((x−μ)²) over N·H·W; x̂ = (x−μ)/√(σ²+ε); y = γ·x̂ + β
//	running_mean ← (1−m)·running_mean + m·μ
//	running_var  ← (1−m)·running_var  + m·σ²·M/(M−1)   (M = N·H·W)
func (b *Backend) BatchNormTrain(y, x, gamma, beta, runMean, runVar, saveMean, saveInvStd *tensor.Tensor, momentum, eps float32) {
	n, c, inner := bnDims("BatchNormTrain", x, gamma, beta, runMean, runVar, saveMean, saveInvStd)
	tensor.SameShape("BatchNormTrain", y, x)
	xd, yd := Data(x), Data(y)
	gd, bd, rm, rv, sm, si := Data(gamma), Data(beta), Data(runMean), Data(runVar), Data(saveMean), Data(saveInvStd)
	m := float64(n * inner)
	b.parallel(c, 1, func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			var s float64
			channel(xd, n, c, inner, ch, func(p []float32) {
				for _, v := range p {
					s += float64(v)
				}
			})
			mean := s / m
			var ss float64
			channel(xd, n, c, inner, ch, func(p []float32) {
				for _, v := range p {
					d := float64(v) - mean
					ss += d * d
				}
			})
			variance := ss / m
			inv := 1 / math.Sqrt(variance+float64(eps))
			sm[ch], si[ch] = float32(mean), float32(inv)
			scale := float32(float64(gd[ch]) * inv)
			shift := bd[ch] - float32(mean)*scale
			for i := 0; i < n; i++ {
				off := (i*c + ch) * inner
				xs, ys := xd[off:off+inner], yd[off:off+inner]
				for k, v := range xs {
					ys[k] = v*scale + shift
				}
			}
			unbiased := variance
			if m > 1 {
				unbiased = variance * m / (m - 1)
			}
			mo := float64(momentum)
			rm[ch] = float32((1-mo)*float64(rm[ch]) + mo*mean)
			rv[ch] = float32((1-mo)*float64(rv[ch]) + mo*unbiased)
		}
	})
}

// BatchNormEval implements tensor.Backend.
func (b *Backend) BatchNormEval(y, x, gamma, beta, runMean, runVar *tensor.Tensor, eps float32) {
	n, c, inner := bnDims("BatchNormEval", x, gamma, beta, runMean, runVar)
	tensor.SameShape("BatchNormEval", y, x)
	xd, yd := Data(x), Data(y)
	gd, bd, rm, rv := Data(gamma), Data(beta), Data(runMean), Data(runVar)
	b.parallel(c, 1, func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			inv := 1 / math.Sqrt(float64(rv[ch])+float64(eps))
			scale := float32(float64(gd[ch]) * inv)
			shift := bd[ch] - rm[ch]*scale
			for i := 0; i < n; i++ {
				off := (i*c + ch) * inner
				xs, ys := xd[off:off+inner], yd[off:off+inner]
				for k, v := range xs {
					ys[k] = v*scale + shift
				}
			}
		}
	})
}

// BatchNormBackward implements tensor.Backend. With g = dy·γ and M = N·H·W:
//
//	dx = (1/√(σ²+ε))·(g − mean(g) − x̂·mean(g·x̂));  dγ = Σ dy·x̂;  dβ = Σ dy
func (b *Backend) BatchNormBackward(dx, dgamma, dbeta, dy, x, gamma, saveMean, saveInvStd *tensor.Tensor) {
	n, c, inner := bnDims("BatchNormBackward", x, dgamma, dbeta, gamma, saveMean, saveInvStd)
	tensor.SameShape("BatchNormBackward", dx, dy, x)
	xd, dyd, dxd := Data(x), Data(dy), Data(dx)
	gd, sm, si := Data(gamma), Data(saveMean), Data(saveInvStd)
	var dgd, dbd []float32
	if dgamma != nil {
		dgd = Data(dgamma)
	}
	if dbeta != nil {
		dbd = Data(dbeta)
	}
	m := float64(n * inner)
	b.parallel(c, 1, func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			mean, inv := float64(sm[ch]), float64(si[ch])
			var sdy, sdyx float64 // Σ dy, Σ dy·x̂
			for i := 0; i < n; i++ {
				off := (i*c + ch) * inner
				xs, dys := xd[off:off+inner], dyd[off:off+inner]
				for k, g := range dys {
					sdy += float64(g)
					sdyx += float64(g) * (float64(xs[k]) - mean) * inv
				}
			}
			if dgd != nil {
				dgd[ch] = float32(sdyx)
			}
			if dbd != nil {
				dbd[ch] = float32(sdy)
			}
			gam := float64(gd[ch])
			// dx = γ·inv·(dy − Σdy/M − x̂·Σ(dy·x̂)/M)
			k1 := float32(gam * inv)
			mdy := float32(sdy / m)
			mdyx := float32(sdyx / m)
			fmean, finv := float32(mean), float32(inv)
			for i := 0; i < n; i++ {
				off := (i*c + ch) * inner
				xs, dys, dxs := xd[off:off+inner], dyd[off:off+inner], dxd[off:off+inner]
				for k, g := range dys {
					xh := (xs[k] - fmean) * finv
					dxs[k] = k1 * (g - mdy - xh*mdyx)
				}
			}
		}
	})
}

// BatchNormEvalBackward implements tensor.Backend: with constant statistics,
// dx = dy·γ/√(running_var+ε), dγ = Σ dy·x̂, dβ = Σ dy.
func (b *Backend) BatchNormEvalBackward(dx, dgamma, dbeta, dy, x, gamma, runMean, runVar *tensor.Tensor, eps float32) {
	n, c, inner := bnDims("BatchNormEvalBackward", x, dgamma, dbeta, gamma, runMean, runVar)
	tensor.SameShape("BatchNormEvalBackward", dx, dy, x)
	xd, dyd, dxd := Data(x), Data(dy), Data(dx)
	gd, rm, rv := Data(gamma), Data(runMean), Data(runVar)
	var dgd, dbd []float32
	if dgamma != nil {
		dgd = Data(dgamma)
	}
	if dbeta != nil {
		dbd = Data(dbeta)
	}
	b.parallel(c, 1, func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			inv := float32(1 / math.Sqrt(float64(rv[ch])+float64(eps)))
			k1 := gd[ch] * inv
			var sdy, sdyx float64
			for i := 0; i < n; i++ {
				off := (i*c + ch) * inner
				xs, dys, dxs := xd[off:off+inner], dyd[off:off+inner], dxd[off:off+inner]
				for k, g := range dys {
					dxs[k] = g * k1
					sdy += float64(g)
					sdyx += float64(g) * float64((xs[k]-rm[ch])*inv)
				}
			}
			if dgd != nil {
				dgd[ch] = float32(sdyx)
			}
			if dbd != nil {
				dbd[ch] = float32(sdy)
			}
		}
	})
}
