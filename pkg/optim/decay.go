package optim

import (
	"fmt"
	"math"
	"sort"
)

// Range is the half-open index range [Lo, Hi) of a flat vector.
//
// A weight-decay mask is a list of Ranges: the elements of the decayed
// tensors (in logitpair the nn.Layout ranges whose Role.Decayed() is true,
// i.e. conv and dense kernels, not biases or batch-norm parameters). Ranges
// must lie inside the vector and must not overlap (an element in two ranges
// would be decayed twice); their order does not matter. A shard [lo, hi)
// uses ClipRanges(mask, lo, hi) to get its mask in its own coordinates.
type Range struct{ Lo, Hi int }

// ClipRanges intersects each range with [lo, hi) and shifts it by −lo,
// dropping the empty ones: the mask of the whole vector, seen by the shard
// that holds [lo, hi).
func ClipRanges(ranges []Range, lo, hi int) []Range {
	var out []Range
	for _, r := range ranges {
		a, b := max(r.Lo, lo), min(r.Hi, hi)
		if a < b {
			out = append(out, Range{a - lo, b - lo})
		}
	}
	return out
}

// ValidateRanges checks that every range satisfies 0 <= Lo <= Hi <= n and
// that no two overlap.
func ValidateRanges(ranges []Range, n int) error {
	for _, r := range ranges {
		if r.Lo < 0 || r.Lo > r.Hi || r.Hi > n {
			return fmt.Errorf("optim: weight-decay range [%d,%d) is not inside [0,%d)", r.Lo, r.Hi, n)
		}
	}
	s := append([]Range(nil), ranges...)
	sort.Slice(s, func(i, j int) bool { return s[i].Lo < s[j].Lo })
	for i := 1; i < len(s); i++ {
		if s[i].Lo < s[i-1].Hi {
			return fmt.Errorf("optim: weight-decay ranges [%d,%d) and [%d,%d) overlap", s[i-1].Lo, s[i-1].Hi, s[i].Lo, s[i].Hi)
		}
	}
	return nil
}

func checkWD(wd float64) error {
	if !(wd >= 0) || math.IsInf(wd, 1) {
		return fmt.Errorf("optim: weight decay must be finite and >= 0, got %v", wd)
	}
	return nil
}

// AddWeightDecay adds the gradient of TF-slim's l2_regularizer(wd) over the
// masked elements to grad:
//
//	loss = wd·½·Σ_{i∈ranges} θ_i²   ⇒   ∂loss/∂θ_i = wd·θ_i
//	g_i = g_i + float32(wd)·θ_i      for i in ranges (float32, as TF's gradient)
//
// Elements outside the ranges are left alone. On an error (length mismatch,
// bad wd, bad ranges) grad is not modified.
func AddWeightDecay(grad, params []float32, wd float64, ranges []Range) error {
	if len(grad) != len(params) {
		return fmt.Errorf("optim: AddWeightDecay: %w: grad has length %d, params %d", ErrLengthMismatch, len(grad), len(params))
	}
	if err := checkWD(wd); err != nil {
		return err
	}
	if err := ValidateRanges(ranges, len(params)); err != nil {
		return err
	}
	w := float32(wd)
	for _, r := range ranges {
		g, p := grad[r.Lo:r.Hi], params[r.Lo:r.Hi]
		for i := range g {
			g[i] += float32(w * p[i])
		}
	}
	return nil
}

// L2Loss returns the value of the weight-decay loss term over the masked
// elements,
//
//	wd·½·Σ_{i∈ranges} θ_i²
//
// accumulated in float64 (TF's l2_loss sums in float32; float64 makes the
// value independent of how the vector is sharded up to the last bits of the
// final additions, and the loss is only reported, never differentiated).
// Shards' values add up to the whole vector's.
func L2Loss(params []float32, wd float64, ranges []Range) (float64, error) {
	if err := checkWD(wd); err != nil {
		return 0, err
	}
	if err := ValidateRanges(ranges, len(params)); err != nil {
		return 0, err
	}
	var s float64
	for _, r := range ranges {
		for _, x := range params[r.Lo:r.Hi] {
			s += float64(x) * float64(x)
		}
	}
	return wd * 0.5 * s, nil
}

// WeightDecay is TF-slim's l2_regularizer(WD) over Mask (train.DecayMask):
// the one way weight decay enters training. It is added to a complete
// gradient where the optimizer runs — train.Trainer before its step,
// paramserver.Shard after averaging the step's workers — so that one
// worker in a cluster reproduces local training bit for bit. WD 0 is off.
type WeightDecay struct {
	WD   float64
	Mask []Range
}

// Apply adds wd·θ over the mask to grad (AddWeightDecay).
func (d WeightDecay) Apply(grad, params []float32) error {
	if d.WD == 0 || len(d.Mask) == 0 {
		return nil
	}
	return AddWeightDecay(grad, params, d.WD, d.Mask)
}

// Loss is the term wd·½·Σθ² over the mask (L2Loss); 0 when off.
func (d WeightDecay) Loss(params []float32) (float64, error) {
	if d.WD == 0 || len(d.Mask) == 0 {
		return 0, nil
	}
	return L2Loss(params, d.WD, d.Mask)
}
