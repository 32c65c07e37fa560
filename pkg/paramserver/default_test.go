package paramserver

import (
	"context"
	"math"
	"testing"
)

// The in-memory core's default optimizer is the paper's: TensorFlow 1's
// RMSProp (ms starts at 1; ms ← ρ·ms + (1−ρ)·g²; mom ← μ·mom + lr·g/√(ms+ε);
// θ ← θ − mom) with ρ = μ = 0.9, ε = 1, lr 0.045, applied to the mean of
// the workers' gradients. Checked against the formula by hand for two steps.
func TestDefaultConfigIsTheReleasedRMSProp(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Hi, cfg.Workers = 2, 2
	s, err := NewShard(cfg, []float32{1, -2}, NewMemStepStore())
	if err != nil {
		t.Fatal(err)
	}
	theta := []float64{1, -2}
	ms := []float64{1, 1}
	mom := []float64{0, 0}
	grads := [][2][]float32{
		{{0.5, -1}, {1.5, 3}},   // step 0: means 1, 1
		{{-2, 0.25}, {0, 0.75}}, // step 1: means -1, 0.5
	}
	for step, g := range grads {
		for w := range 2 {
			if err := s.Push(int64(step), w, g[w], nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Apply(int64(step), []int{0, 1}); err != nil {
			t.Fatal(err)
		}
		for i := range theta {
			mean := (float64(g[0][i]) + float64(g[1][i])) / 2
			ms[i] = 0.9*ms[i] + 0.1*mean*mean
			mom[i] = 0.9*mom[i] + 0.045*mean/math.Sqrt(ms[i]+1)
			theta[i] -= mom[i]
		}
		p, _, err := s.Pull(context.Background(), int64(step+1))
		if err != nil {
			t.Fatal(err)
		}
		for i := range theta {
			if math.Abs(float64(p[i])-theta[i]) > 1e-6 {
				t.Fatalf("step %d: θ[%d] = %v, want %v (TF1 RMSProp by hand)", step, i, p[i], theta[i])
			}
		}
	}
}
