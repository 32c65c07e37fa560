package cpu

import (
	"math"
	"testing"
)

func TestReLUMaskMatchesBranchingRule(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	ys := []float32{1, 0, negZero, -1, 1e-45, -1e-45, float32(math.Inf(1)), float32(math.Inf(-1)), 3.5, -2}
	dy := make([]float32, len(ys))
	for i := range dy {
		dy[i] = float32(i + 1)
	}
	dx := make([]float32, len(ys))
	reluMask(dx, dy, ys)
	for i, y := range ys {
		want := float32(0)
		if y > 0 {
			want = dy[i]
		}
		if dx[i] != want {
			t.Errorf("y=%v: dx=%v, want %v", y, dx[i], want)
		}
	}
}
