package optim

import (
	"math"
	"testing"
)

// Adam with β1 = ½, β2 = ¾, ε = 1 so the first step is exact, checking the
// bias correction with k = t+1 (k = t would divide by 1 − β⁰ = 0; no
// correction would give 0.6 instead of 0.75 for e0).
func TestAdamByHand(t *testing.T) {
	o, err := NewAdam(AdamConfig{Beta1: 0.5, Beta2: 0.75, Epsilon: 1}, 3)
	if err != nil {
		t.Fatal(err)
	}
	theta := []float32{1, 1, 1}

	// Step t=0 (k=1), lr = 1, g = (3, −1, 0):
	//   m = ½·0 + ½·g = (1.5, −0.5, 0);  v = ¾·0 + ¼·g² = (2.25, 0.25, 0)
	//   m̂ = m/(1−½) = (3, −1, 0);  v̂ = v/(1−¾) = (9, 1, 0);  √v̂ + ε = (4, 2, 1)
	//   θ = θ − 1·m̂/(√v̂ + ε) = (1 − 3/4, 1 + 1/2, 1 − 0) = (0.25, 1.5, 1)
	if err := o.Step(theta, []float32{3, -1, 0}, 1, 0); err != nil {
		t.Fatal(err)
	}
	wantBits(t, "θ after step 0", theta, []float32{0.25, 1.5, 1})
	wantBits(t, "m after step 0", o.m, []float32{1.5, -0.5, 0})
	wantBits(t, "v after step 0", o.v, []float32{2.25, 0.25, 0})

	// Step t=1 (k=2), lr = 0.75, g = (1, 2, −4):
	//   m = ½·m + ½·g = (1.25, 0.75, −2);  v = ¾·v + ¼·g² = (1.9375, 1.1875, 4)   (exact)
	//   m̂ = m/(1 − ¼) ,  v̂ = v/(1 − 9/16) = v/0.4375  (√0.4375 is not exact: compare to float64)
	g := []float32{1, 2, -4}
	if err := o.Step(theta, g, 0.75, 1); err != nil {
		t.Fatal(err)
	}
	wantBits(t, "m after step 1", o.m, []float32{1.25, 0.75, -2})
	wantBits(t, "v after step 1", o.v, []float32{1.9375, 1.1875, 4})
	prev := []float64{0.25, 1.5, 1}
	for i := range theta {
		mhat := []float64{1.25, 0.75, -2}[i] / 0.75
		vhat := []float64{1.9375, 1.1875, 4}[i] / 0.4375
		want := prev[i] - 0.75*mhat/(math.Sqrt(vhat)+1)
		wantClose(t, "θ after step 1", float64(theta[i]), want, 1e-6)
	}
}

// With the defaults, a gradient of the size of ε shows where ε sits:
// PyTorch's form gives the first update lr·g/(|g| + ε) = lr/2 for g = ε,
// TF's form (ε̂ = ε outside the bias correction) would give ≈ 0.031·lr.
func TestAdamEpsilonPlacement(t *testing.T) {
	cfg := DefaultAdam()
	if cfg != (AdamConfig{Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8}) {
		t.Fatalf("DefaultAdam() = %+v", cfg)
	}
	o, err := NewAdam(cfg, 2)
	if err != nil {
		t.Fatal(err)
	}
	theta := []float32{0, 0}
	lr := 1e-4
	if err := o.Step(theta, []float32{1e-8, 5}, lr, 0); err != nil {
		t.Fatal(err)
	}
	wantClose(t, "update for g = ε", -float64(theta[0])/lr, 0.5, 1e-5)
	wantClose(t, "update for g ≫ ε (≈ lr·sign g)", -float64(theta[1])/lr, 5/(5+1e-8), 1e-6)
}

// SGD with μ = ½ and lr = ½: plain momentum, Nesterov and μ = 0.
func TestSGDByHand(t *testing.T) {
	grads := [][]float32{{2, -4}, {4, 2}, {0, 0}}
	run := func(cfg SGDConfig) ([][]float32, *SGD) {
		o, err := NewSGD(cfg, 2)
		if err != nil {
			t.Fatal(err)
		}
		theta := []float32{1, 2}
		var out [][]float32
		for s, g := range grads {
			if err := o.Step(theta, g, 0.5, int64(s)); err != nil {
				t.Fatal(err)
			}
			out = append(out, append([]float32{}, theta...))
		}
		return out, o
	}

	// Momentum: buf ← ½·buf + g; θ ← θ − ½·buf
	//   t=0: buf = (2, −4);          θ = (1 − 1, 2 + 2) = (0, 4)
	//   t=1: buf = (1+4, −2+2) = (5, 0);  θ = (0 − 2.5, 4 − 0) = (−2.5, 4)
	//   t=2: buf = (2.5, 0);         θ = (−2.5 − 1.25, 4) = (−3.75, 4)
	got, o := run(SGDConfig{Momentum: 0.5})
	wantBits(t, "momentum θ t=0", got[0], []float32{0, 4})
	wantBits(t, "momentum θ t=1", got[1], []float32{-2.5, 4})
	wantBits(t, "momentum θ t=2", got[2], []float32{-3.75, 4})
	wantBits(t, "momentum buf", o.buf, []float32{2.5, 0})

	// Nesterov: buf ← ½·buf + g; θ ← θ − ½·(g + ½·buf)
	//   t=0: buf = (2, −4);  g + ½buf = (3, −6);     θ = (1 − 1.5, 2 + 3) = (−0.5, 5)
	//   t=1: buf = (5, 0);   g + ½buf = (6.5, 2);    θ = (−0.5 − 3.25, 5 − 1) = (−3.75, 4)
	//   t=2: buf = (2.5, 0); g + ½buf = (1.25, 0);   θ = (−3.75 − 0.625, 4) = (−4.375, 4)
	got, o = run(SGDConfig{Momentum: 0.5, Nesterov: true})
	wantBits(t, "nesterov θ t=0", got[0], []float32{-0.5, 5})
	wantBits(t, "nesterov θ t=1", got[1], []float32{-3.75, 4})
	wantBits(t, "nesterov θ t=2", got[2], []float32{-4.375, 4})
	wantBits(t, "nesterov buf", o.buf, []float32{2.5, 0})

	// Plain: θ ← θ − ½·g
	//   t=0: (1 − 1, 2 + 2) = (0, 4);  t=1: (0 − 2, 4 − 1) = (−2, 3);  t=2: unchanged
	got, o = run(SGDConfig{})
	wantBits(t, "plain θ t=0", got[0], []float32{0, 4})
	wantBits(t, "plain θ t=1", got[1], []float32{-2, 3})
	wantBits(t, "plain θ t=2", got[2], []float32{-2, 3})
	if s := o.State(); len(s) != 0 {
		t.Errorf("plain SGD state = %v, want none", s)
	}
	if err := o.SetState(nil); err != nil {
		t.Errorf("plain SGD SetState(nil): %v", err)
	}
	wantErr(t, "plain SGD SetState(mom)", o.SetState([]NamedState{{Name: "mom", Data: []float32{0, 0}}}), `unknown state slot "mom"`)
}
