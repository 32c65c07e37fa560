package attack

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn/nntest"
)

// TestStepLLMovesTowardTheLeastLikelyClass: one step-LL step of ε targets
// each example's least-likely class at the clean input, lowers the
// cross-entropy toward it (its log-probability rises), raises the
// cross-entropy of the true label for most examples, and stays within ε in
// L∞ and within [0, 1].
func TestStepLLMovesTowardTheLeastLikelyClass(t *testing.T) {
	be := nntest.Backends()[0]
	m, _ := linear(t, be, 5, 21)
	const n = 16
	x0, host := batch(be, n, 22)
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(i % 5)
	}
	const eps = 0.05
	a, err := New(be, StepLL(eps))
	if err != nil {
		t.Fatal(err)
	}
	if !a.SingleStep() {
		t.Fatal("StepLL is not a single-step attack")
	}
	adv, work := a.Run(m, x0, labels, rand.New(rand.NewPCG(1, 1)))
	advHost := nntest.Host(be, adv)
	z0 := nntest.Host(be, m.Logits(x0))
	for i := range work {
		for j := 0; j < 5; j++ {
			if z0[i*5+j] < z0[i*5+int(work[i])] {
				t.Fatalf("example %d: target %d is not the least-likely class", i, work[i])
			}
		}
	}
	ceLL0, ceY0 := make([]float32, n), make([]float32, n)
	be.SoftmaxCrossEntropy(nil, m.Logits(x0), work, 0, 1, ceLL0)
	be.SoftmaxCrossEntropy(nil, m.Logits(x0), labels, 0, 1, ceY0)
	advT := be.New(x0.Shape()...)
	be.Upload(advT, advHost)
	ceLL1, ceY1 := make([]float32, n), make([]float32, n)
	be.SoftmaxCrossEntropy(nil, m.Logits(advT), work, 0, 1, ceLL1)
	be.SoftmaxCrossEntropy(nil, m.Logits(advT), labels, 0, 1, ceY1)
	rose := 0
	for i := 0; i < n; i++ {
		if !(ceLL1[i] < ceLL0[i]) {
			t.Errorf("example %d: CE toward the least-likely class %d went %v → %v", i, work[i], ceLL0[i], ceLL1[i])
		}
		if ceY1[i] > ceY0[i] {
			rose++
		}
	}
	if rose < n/2 {
		t.Errorf("the true label's CE rose for only %d of %d examples", rose, n)
	}
	for i, v := range advHost {
		if d := math.Abs(float64(v - host[i])); d > eps+1e-7 || v < 0 || v > 1 {
			t.Fatalf("pixel %d: %v from %v (ε = %v)", i, v, host[i], eps)
		}
	}
}

// TestRunEpsWithTheFullBudgetEqualsRun: FGSM and step-LL with every
// per-example budget at ε give bit for bit what Run gives.
func TestRunEpsWithTheFullBudgetEqualsRun(t *testing.T) {
	be := nntest.Backends()[0]
	m, _ := linear(t, be, 5, 31)
	x0, _ := batch(be, 8, 32)
	labels := []int32{0, 1, 2, 3, 4, 0, 1, 2}
	for _, c := range []Config{FGSM(0.1), StepLL(0.1)} {
		a, _ := New(be, c)
		want, wantWork := a.Run(m, x0, labels, rand.New(rand.NewPCG(3, 3)))
		wantHost := nntest.Host(be, want)
		wantWork = append([]int32(nil), wantWork...)
		eps := []float32{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}
		got, gotWork := a.RunEps(m, x0, labels, eps, rand.New(rand.NewPCG(3, 3)))
		gotHost := nntest.Host(be, got)
		for i := range wantHost {
			if math.Float32bits(gotHost[i]) != math.Float32bits(wantHost[i]) {
				t.Fatalf("%s: element %d: RunEps %v, Run %v", c, i, gotHost[i], wantHost[i])
			}
		}
		for i := range wantWork {
			if gotWork[i] != wantWork[i] {
				t.Fatalf("%s: example %d works on label %d, Run on %d", c, i, gotWork[i], wantWork[i])
			}
		}
	}
}

// TestRunEpsKeepsEachExamplesBudget: every example moves by at most its own
// budget, and by exactly it where the gradient is non-zero and [0, 1] does
// not clip; a zero budget leaves the example unchanged.
func TestRunEpsKeepsEachExamplesBudget(t *testing.T) {
	be := nntest.Backends()[0]
	m, _ := linear(t, be, 5, 41)
	x0, host := batch(be, 4, 42)
	a, _ := New(be, StepLL(0.2))
	eps := []float32{0, 0.05, 0.1, 0.2}
	adv, _ := a.RunEps(m, x0, []int32{0, 1, 2, 3}, eps, nil)
	got := nntest.Host(be, adv)
	for i := 0; i < 4; i++ {
		exact := 0
		for j := i * 16; j < (i+1)*16; j++ {
			d := math.Abs(float64(got[j] - host[j]))
			if d > float64(eps[i])+1e-7 || got[j] < 0 || got[j] > 1 {
				t.Fatalf("example %d pixel %d: moved %v with budget %v (to %v)", i, j, d, eps[i], got[j])
			}
			if math.Abs(d-float64(eps[i])) < 1e-6 {
				exact++
			}
		}
		if eps[i] > 0 && exact < 8 {
			t.Errorf("example %d: only %d of 16 pixels moved by the full budget %v", i, exact, eps[i])
		}
	}
}

// TestRandomEpsIsTheTruncatedNormal: the draws lie in [0, ε_max], repeat for
// a seed, differ for another, and match the truncated normal's mean
// σ·√(2/π)·(1 − e^{−2})/erf(√2) and its mass below σ, erf(1/√2)/erf(√2).
func TestRandomEpsIsTheTruncatedNormal(t *testing.T) {
	const n, epsMax = 20000, float32(0.3)
	a := make([]float32, n)
	RandomEps(rand.New(rand.NewPCG(5, 6)), epsMax, a)
	b := make([]float32, n)
	RandomEps(rand.New(rand.NewPCG(5, 6)), epsMax, b)
	c := make([]float32, n)
	RandomEps(rand.New(rand.NewPCG(7, 6)), epsMax, c)
	var sum float64
	below, differ := 0, 0
	sigma := float64(epsMax) / 2
	for i, v := range a {
		if v < 0 || v > epsMax {
			t.Fatalf("draw %d = %v outside [0, %v]", i, v, epsMax)
		}
		if math.Float32bits(v) != math.Float32bits(b[i]) {
			t.Fatalf("draw %d: %v then %v with the same seed", i, v, b[i])
		}
		if v != c[i] {
			differ++
		}
		sum += float64(v)
		if float64(v) < sigma {
			below++
		}
	}
	if differ < n/2 {
		t.Errorf("another seed changed only %d of %d draws", differ, n)
	}
	z := math.Erf(math.Sqrt2)
	wantMean := sigma * math.Sqrt(2/math.Pi) * (1 - math.Exp(-2)) / z
	// The truncated normal's standard deviation is below σ: 4σ/√n bounds
	// the sampling error of the mean generously.
	if mean := sum / n; math.Abs(mean-wantMean) > 4*sigma/math.Sqrt(n) {
		t.Errorf("mean draw %v, want %v", mean, wantMean)
	}
	wantBelow := math.Erf(1/math.Sqrt2) / z
	if frac := float64(below) / n; math.Abs(frac-wantBelow) > 4*0.5/math.Sqrt(n) {
		t.Errorf("share below σ %v, want %v", frac, wantBelow)
	}
}

func TestParseStepLL(t *testing.T) {
	c, err := Parse("stepll_76.5")
	if err != nil {
		t.Fatal(err)
	}
	if c != StepLL(0.3) {
		t.Fatalf("stepll_76.5 = %+v, want %+v", c, StepLL(0.3))
	}
	if _, err := Parse("stepll_76.5_2"); err == nil {
		t.Fatal("stepll with a step size parsed")
	}
}
