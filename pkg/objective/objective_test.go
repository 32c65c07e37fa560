package objective

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/tensor"
)

func logits(be tensor.Backend, rows ...[]float32) *tensor.Tensor {
	k := len(rows[0])
	t := be.New(len(rows), k)
	var flat []float32
	for _, r := range rows {
		flat = append(flat, r...)
	}
	be.Upload(t, flat)
	return t
}

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-5*(1+math.Abs(want)) {
		t.Errorf("%s = %.7g, want %.7g", what, got, want)
	}
}

// Hand-computed values (K = 2, natural logs):
// CE([1,0], 0) = log(1+e^−1) = 0.3132617, CE([0,1], 0) = log(1+e) = 1.3132617.
func TestHandComputedValues(t *testing.T) {
	be := nntest.Backends()[0]
	ce0, ce1 := math.Log1p(math.Exp(-1)), math.Log1p(math.E)

	o, _ := New(be, Config{Name: "mpgd"})
	_, tm := o.Loss(logits(be, []float32{1, 0}, []float32{0, 1}), []int32{0})
	near(t, "mpgd", tm.Loss, (ce0+ce1)/2)
	near(t, "mpgd clean CE", tm.CleanCE, ce0)
	near(t, "mpgd adv CE", tm.AdvCE, ce1)
	if tm.CleanAcc != 1 || tm.AdvAcc != 0 {
		t.Errorf("mpgd accuracies %v %v", tm.CleanAcc, tm.AdvAcc)
	}

	// alp, λ = 0.5: pair = (1/(1·2))·((1−0)² + (0−1)²) = 1.
	o, _ = New(be, Config{Name: "alp", PairWeight: 0.5})
	_, tm = o.Loss(logits(be, []float32{1, 0}, []float32{0, 1}), []int32{0})
	near(t, "alp pair", tm.Pair, 1)
	near(t, "alp", tm.Loss, (ce0+ce1)/2+0.5)

	// logit squeezing: (1/(1·2))·(3² + 4²) = 12.5.
	o, _ = New(be, Config{Name: "logit-squeeze", PairWeight: 0.1})
	_, tm = o.Loss(logits(be, []float32{3, 4}), []int32{1})
	near(t, "logit-squeeze pair", tm.Pair, 12.5)
	near(t, "logit-squeeze", tm.Loss, math.Log1p(math.Exp(-1))+1.25)

	// clp, m = 2: (2/2)·(1/2)·((1−3)² + (2−5)²) = 6.5.
	o, _ = New(be, Config{Name: "clp", PairWeight: 1})
	_, tm = o.Loss(logits(be, []float32{1, 2}, []float32{3, 5}), []int32{0, 1})
	near(t, "clp pair", tm.Pair, 6.5)

	// vat-kl: p = softmax(0,0) = (.5,.5), q = softmax(ln 3, 0) = (.75,.25):
	// KL = .5·ln(.5/.75) + .5·ln(.5/.25) = 0.1438410.
	o, _ = New(be, Config{Name: "vat-kl", PairWeight: 2})
	_, tm = o.Loss(logits(be, []float32{0, 0}, []float32{float32(math.Log(3)), 0}), []int32{0})
	near(t, "vat-kl pair", tm.Pair, 0.5*math.Log(0.5/0.75)+0.5*math.Log(2))

	// label smoothing δ = 0.1 defaults on: target (0.95, 0.05) on [1, 0]:
	// CE = lse − Σ t·z = log(e + 1) − 0.95.
	o, _ = New(be, Config{Name: "label-smoothing"})
	_, tm = o.Loss(logits(be, []float32{1, 0}), []int32{0})
	near(t, "label-smoothing", tm.Loss, math.Log(math.E+1)-0.95)

	// plain, m = 2: rows [1,0] with labels 0 and 1: (CE([1,0],0) + CE([1,0],1))/2
	// = (ce0 + ce1)/2; one of two right; no adversarial terms.
	o, _ = New(be, Config{Name: "plain"})
	_, tm = o.Loss(logits(be, []float32{1, 0}, []float32{1, 0}), []int32{0, 1})
	near(t, "plain", tm.Loss, (ce0+ce1)/2)
	near(t, "plain clean CE", tm.CleanCE, (ce0+ce1)/2)
	if tm.CleanAcc != 0.5 || !math.IsNaN(tm.AdvCE) || !math.IsNaN(tm.Pair) {
		t.Errorf("plain terms %+v", tm)
	}

	// pgd: the forward batch is x̃ alone: CE([0,1], 0) = ce1, reported as the
	// adversarial CE (clean CE not computed).
	o, _ = New(be, Config{Name: "pgd"})
	_, tm = o.Loss(logits(be, []float32{0, 1}), []int32{0})
	near(t, "pgd", tm.Loss, ce1)
	near(t, "pgd adv CE", tm.AdvCE, ce1)
	if tm.AdvAcc != 0 || !math.IsNaN(tm.CleanCE) {
		t.Errorf("pgd terms %+v", tm)
	}

	// mixup, μ = 0.25, π = (1 0), labels (0 1) so y_π = (1 0):
	// row 0 [1,0]: 0.25·CE(·,0) + 0.75·CE(·,1) = 0.25·ce0 + 0.75·ce1;
	// row 1 [0,1]: 0.25·CE(·,1) + 0.75·CE(·,0) = 0.25·ce0 + 0.75·ce1.
	o, _ = New(be, Config{Name: "mixup", MixupAlpha: 1})
	o.mixMu, o.perm = 0.25, []int{1, 0}
	_, tm = o.Loss(logits(be, []float32{1, 0}, []float32{0, 1}), []int32{0, 1})
	near(t, "mixup", tm.Loss, 0.25*ce0+0.75*ce1)
	// The mixing itself: x̂_i = μ·x_i + (1−μ)·x_π(i) for the drawn μ, π.
	x := logits(be, []float32{0, 1}, []float32{1, 0.5})
	mixed := nntest.Host(be, o.Inputs(x, nil, rand.New(rand.NewPCG(3, 3))))
	mu, p := float32(o.mixMu), o.perm
	xh := [][]float32{{0, 1}, {1, 0.5}}
	for i := 0; i < 2; i++ {
		for k := 0; k < 2; k++ {
			if want := mu*xh[i][k] + (1-mu)*xh[p[i]][k]; math.Abs(float64(mixed[i*2+k]-want)) > 1e-6 {
				t.Errorf("mixup input %d,%d = %v, want %v", i, k, mixed[i*2+k], want)
			}
		}
	}

	// trades, β = 2: clean [ln 3, 0], x' [0, 0], label 0:
	// CE(clean) = −ln(3/4) = ln(4/3); p = (3/4, 1/4), q = (1/2, 1/2):
	// KL(p‖q) = ¾·ln(3/2) + ¼·ln(1/2) = 0.1308120; loss = ln(4/3) + 2·KL
	// (the x' CE, ln 2, is reported but not in the loss).
	o, _ = New(be, Config{Name: "trades", PairWeight: 2})
	_, tm = o.Loss(logits(be, []float32{float32(math.Log(3)), 0}, []float32{0, 0}), []int32{0})
	kl := 0.75*math.Log(1.5) + 0.25*math.Log(0.5)
	near(t, "trades KL", tm.Pair, kl)
	near(t, "trades clean CE", tm.CleanCE, math.Log(4.0/3))
	near(t, "trades adv CE", tm.AdvCE, math.Ln2)
	near(t, "trades", tm.Loss, math.Log(4.0/3)+2*kl)
}

// TestGradientsMatchFiniteDifferences checks dL/dz of every objective
// against central differences of its own Loss (float32 logits, float64 sums).
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	be := nntest.Backends()[0]
	const m, k = 4, 5
	labels := []int32{0, 3, 4, 1}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			o, err := New(be, Config{Name: name, PairWeight: 0.7, Smoothing: 0.05, NoiseStd: 0.1, MixupAlpha: 0.4, StaticModels: 1})
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			x := nntest.Random(be, newRand(3), 0.2, m, 1, 2, 2)
			var xadv *tensor.Tensor
			if o.NeedsAdversarial() {
				xadv = nntest.Random(be, newRand(4), 0.2, m, 1, 2, 2)
			}
			o.Inputs(x, xadv, rng) // draws mixup's μ and permutation
			n := o.ForwardBatch(m)
			z := nntest.Random(be, newRand(5), 2, n, k)
			dz, _ := o.Loss(z, labels)
			g := nntest.Host(be, dz)
			zh := nntest.Host(be, z)
			const h = 1e-2
			for i := range zh {
				orig := zh[i]
				zh[i] = orig + h
				be.Upload(z, zh)
				_, tp := o.Loss(z, labels)
				zh[i] = orig - h
				be.Upload(z, zh)
				_, tmn := o.Loss(z, labels)
				zh[i] = orig
				be.Upload(z, zh)
				num := (tp.Loss - tmn.Loss) / (2 * h)
				if math.Abs(num-float64(g[i])) > 2e-3*(1+math.Abs(num)) {
					t.Errorf("dz[%d] = %v, numeric %v", i, g[i], num)
				}
			}
		})
	}
}

func TestInputs(t *testing.T) {
	be := nntest.Backends()[0]
	x := nntest.Random(be, newRand(1), 1, 3, 1, 2, 2)
	xadv := nntest.Random(be, newRand(2), 1, 3, 1, 2, 2)
	rng := rand.New(rand.NewPCG(1, 1))
	o, _ := New(be, Config{Name: "alp", PairWeight: 1})
	in := o.Inputs(x, xadv, rng)
	if in.Dim(0) != 6 {
		t.Fatalf("alp forward batch %v", in.Shape())
	}
	nntest.Close(t, "clean half", nntest.Host(be, in.Rows(0, 3)), nntest.Host(be, x), 0)
	nntest.Close(t, "adversarial half", nntest.Host(be, in.Rows(3, 6)), nntest.Host(be, xadv), 0)
	o, _ = New(be, Config{Name: "clp", PairWeight: 1, NoiseStd: 0.5})
	for _, v := range nntest.Host(be, o.Inputs(x, nil, rng)) {
		if v < 0 || v > 1 {
			t.Fatalf("noise-augmented pixel %v outside [0, 1]", v)
		}
	}
	o, _ = New(be, Config{Name: "mixup", MixupAlpha: 1})
	mixed := nntest.Host(be, o.Inputs(x, nil, rng))
	xh := nntest.Host(be, x)
	mu := float32(o.mixMu)
	for i := 0; i < 3; i++ {
		j := o.perm[i]
		for p := 0; p < 4; p++ {
			want := mu*xh[i*4+p] + (1-mu)*xh[j*4+p]
			if math.Abs(float64(mixed[i*4+p]-want)) > 1e-6 {
				t.Fatalf("mixup pixel %d,%d = %v, want %v", i, p, mixed[i*4+p], want)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Name: "alpp"},
		{Name: "alp"},
		{Name: "alp", PairWeight: -1},
		{Name: "plain", Smoothing: 1},
		{Name: "mixup"},
		{Name: "clp", PairWeight: 1, NoiseStd: math.NaN()},
	} {
		if _, err := New(nntest.Backends()[0], c); err == nil || !strings.Contains(err.Error(), "objective") {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestBetaSampleMean(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, a := range []float64{0.2, 1, 3} {
		var s float64
		const n = 20000
		for i := 0; i < n; i++ {
			s += betaSample(rng, a)
		}
		if math.Abs(s/n-0.5) > 0.02 {
			t.Errorf("Beta(%v,%v) mean %v", a, a, s/n)
		}
	}
}
