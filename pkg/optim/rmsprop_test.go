package optim

import (
	"math"
	"testing"
)

// TF's RMSProp with ms starting at 1 and ε = 1 inside the root, on numbers
// chosen so that every float32 operation is exact. ρ = 0.75 (so 1−ρ = 1/4),
// μ = 1/2, ε = 1. Starting ms at 0 would give ms = 9/4 after g = 3 and
// d = √3.25; adding ε outside the root would give d = √3 + 1; both would
// miss the values below.
func TestRMSPropByHand(t *testing.T) {
	o, err := NewRMSProp(RMSPropConfig{Decay: 0.75, Momentum: 0.5, Epsilon: 1}, 3)
	if err != nil {
		t.Fatal(err)
	}
	wantBits(t, "initial ms", o.ms, []float32{1, 1, 1})
	wantBits(t, "initial mom", o.mom, []float32{0, 0, 0})
	theta := []float32{1, 2, 3}

	// Step t=0, lr = 1, g = (3, 3, −3):
	//   e0: ms = 1 + (9 − 1)·¼ = 3;  d = √(3 + 1) = 2;  mom = 0·½ + 3·1/2 = 1.5;  θ = 1 − 1.5 = −0.5
	//   e1: same ms, d, mom;                                                       θ = 2 − 1.5 = 0.5
	//   e2: ms = 3;  d = 2;  mom = −3/2 = −1.5;                                    θ = 3 + 1.5 = 4.5
	if err := o.Step(theta, []float32{3, 3, -3}, 1, 0); err != nil {
		t.Fatal(err)
	}
	wantBits(t, "θ after step 0", theta, []float32{-0.5, 0.5, 4.5})
	wantBits(t, "ms after step 0", o.ms, []float32{3, 3, 3})
	wantBits(t, "mom after step 0", o.mom, []float32{1.5, 1.5, -1.5})

	// Step t=1, lr = 7, g = (6, 0, 6):
	//   e0: ms = 3 + (36 − 3)·¼ = 11.25;  d = √12.25 = 3.5;  mom = 1.5·½ + 6·7/3.5 = 0.75 + 12 = 12.75;  θ = −0.5 − 12.75 = −13.25
	//   e1: ms = 3 + (0 − 3)·¼ = 2.25;    d = √3.25;         mom = 1.5·½ + 0/d = 0.75;                θ = 0.5 − 0.75 = −0.25
	//   e2: ms = 11.25;  d = 3.5;  mom = −1.5·½ + 12 = 11.25;                                         θ = 4.5 − 11.25 = −6.75
	if err := o.Step(theta, []float32{6, 0, 6}, 7, 1); err != nil {
		t.Fatal(err)
	}
	wantBits(t, "θ after step 1", theta, []float32{-13.25, -0.25, -6.75})
	wantBits(t, "ms after step 1", o.ms, []float32{11.25, 2.25, 11.25})
	wantBits(t, "mom after step 1", o.mom, []float32{12.75, 0.75, 11.25})
}

// Centered RMSProp (ρ = ½, μ = ½, ε = 1, ms = 1, mg = 0 at the start) on
// exactly representable numbers: denominator √(ms − mg² + ε).
func TestCenteredRMSPropByHand(t *testing.T) {
	o, err := NewRMSProp(RMSPropConfig{Decay: 0.5, Momentum: 0.5, Epsilon: 1, Centered: true}, 2)
	if err != nil {
		t.Fatal(err)
	}
	wantBits(t, "initial mg", o.mg, []float32{0, 0})
	theta := []float32{1, 2}

	// Step t=0, lr = 35/16, g = (1/2, 5/2):
	//   e0: ms = 1 + (1/4 − 1)·½ = 5/8;   mg = 0 + (1/2 − 0)·½ = 1/4;
	//       d = √((5/8 − 1/16) + 1) = √(25/16) = 5/4;  mom = 0 + (1/2·35/16)/(5/4) = 7/8;  θ = 1 − 7/8 = 1/8
	//   e1: ms = 1 + (25/4 − 1)·½ = 29/8; mg = 5/4;
	//       d = √((29/8 − 25/16) + 1) = √(49/16) = 7/4;  mom = (5/2·35/16)/(7/4) = 25/8;  θ = 2 − 25/8 = −9/8
	if err := o.Step(theta, []float32{0.5, 2.5}, 35.0/16, 0); err != nil {
		t.Fatal(err)
	}
	wantBits(t, "θ after step 0", theta, []float32{1.0 / 8, -9.0 / 8})
	wantBits(t, "ms after step 0", o.ms, []float32{5.0 / 8, 29.0 / 8})
	wantBits(t, "mg after step 0", o.mg, []float32{1.0 / 4, 5.0 / 4})
	wantBits(t, "mom after step 0", o.mom, []float32{7.0 / 8, 25.0 / 8})

	// Step t=1, lr = 43·23/16 = 989/16, g = (−37/8, 7/8):
	//   e0: ms = 5/8 + (1369/64 − 5/8)·½ = 1409/128;  mg = 1/4 + (−37/8 − 1/4)·½ = −35/16;
	//       d = √((1409/128 − 1225/256) + 1) = √(1849/256) = 43/16;
	//       mom = 7/8·½ + (−37/8·989/16)/(43/16) = 7/16 − 851/8 = −1695/16;  θ = 1/8 + 1695/16 = 1697/16
	//   e1: ms = 29/8 + (49/64 − 29/8)·½ = 281/128;   mg = 5/4 + (7/8 − 5/4)·½ = 17/16;
	//       d = √((281/128 − 289/256) + 1) = √(529/256) = 23/16;
	//       mom = 25/8·½ + (7/8·989/16)/(23/16) = 25/16 + 301/8 = 627/16;  θ = −9/8 − 627/16 = −645/16
	if err := o.Step(theta, []float32{-37.0 / 8, 7.0 / 8}, 989.0/16, 1); err != nil {
		t.Fatal(err)
	}
	wantBits(t, "θ after step 1", theta, []float32{1697.0 / 16, -645.0 / 16})
	wantBits(t, "ms after step 1", o.ms, []float32{1409.0 / 128, 281.0 / 128})
	wantBits(t, "mg after step 1", o.mg, []float32{-35.0 / 16, 17.0 / 16})
	wantBits(t, "mom after step 1", o.mom, []float32{-1695.0 / 16, 627.0 / 16})
}

// The released ALP setting (ρ = 0.9, μ = 0.9, ε = 1) against the formula
// evaluated in float64, and against PyTorch's rule, which must come out
// clearly different.
func TestRMSPropDefaultsAgainstFormula(t *testing.T) {
	cfg := DefaultRMSProp()
	if cfg != (RMSPropConfig{Decay: 0.9, Momentum: 0.9, Epsilon: 1}) {
		t.Fatalf("DefaultRMSProp() = %+v", cfg)
	}
	o, err := NewRMSProp(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	theta := []float32{0.5, -1, 2}
	grads := [][]float32{{0.3, -2, 0.01}, {-0.1, -1.5, 0.02}, {0.7, 0.5, -0.03}}
	lrs := []float64{0.045, 0.045, 0.0423}

	// TF: ms ← ρ·ms + (1−ρ)·g², ms₀ = 1; mom ← μ·mom + lr·g/√(ms + ε); θ ← θ − mom.
	tf := func() []float64 {
		th := []float64{0.5, -1, 2}
		ms, mom := []float64{1, 1, 1}, []float64{0, 0, 0}
		for s, g := range grads {
			for i := range th {
				gi := float64(g[i])
				ms[i] = 0.9*ms[i] + 0.1*gi*gi
				mom[i] = 0.9*mom[i] + lrs[s]*gi/math.Sqrt(ms[i]+1)
				th[i] -= mom[i]
			}
		}
		return th
	}()
	// PyTorch: ms₀ = 0; buf ← μ·buf + g/(√ms + ε); θ ← θ − lr·buf.
	torch := func() []float64 {
		th := []float64{0.5, -1, 2}
		ms, buf := []float64{0, 0, 0}, []float64{0, 0, 0}
		for s, g := range grads {
			for i := range th {
				gi := float64(g[i])
				ms[i] = 0.9*ms[i] + 0.1*gi*gi
				buf[i] = 0.9*buf[i] + gi/(math.Sqrt(ms[i])+1)
				th[i] -= lrs[s] * buf[i]
			}
		}
		return th
	}()
	for s, g := range grads {
		if err := o.Step(theta, g, lrs[s], int64(s)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range theta {
		wantClose(t, "θ", float64(theta[i]), tf[i], 1e-6)
		// The total movement differs by more than 10% between the rules.
		moveTF, moveTorch := tf[i]-[]float64{0.5, -1, 2}[i], torch[i]-[]float64{0.5, -1, 2}[i]
		if math.Abs(moveTF-moveTorch) < 0.1*math.Abs(moveTF) {
			t.Errorf("element %d: TF rule moved %g, PyTorch rule %g: the test does not tell them apart", i, moveTF, moveTorch)
		}
	}
}
