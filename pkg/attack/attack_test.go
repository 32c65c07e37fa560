package attack

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// netModel adapts an nn.Layer to Model (evaluation mode).
type netModel struct {
	be  tensor.Backend
	net nn.Layer
}

func (m netModel) Backend() tensor.Backend                { return m.be }
func (m netModel) Logits(x *tensor.Tensor) *tensor.Tensor { return m.net.Forward(x, false) }
func (m netModel) InputGrad(dz *tensor.Tensor) *tensor.Tensor {
	return m.net.Backward(dz, nn.Grad{Input: true})
}

// linear returns z = W·vec(x) + b for x (N, 1, 4, 4) and K classes.
func linear(t *testing.T, be tensor.Backend, k int, seed uint64) (netModel, *nn.Dense) {
	d := nn.NewDense(be, "fc", 16, k, true)
	rng := rand.New(rand.NewPCG(seed, 1))
	nn.InitDefault(be, d.Params(), rng.Float64)
	return netModel{be, nn.NewSequential(nn.NewFlatten(), d)}, d
}

func batch(be tensor.Backend, n int, seed uint64) (*tensor.Tensor, []float32) {
	rng := rand.New(rand.NewPCG(seed, 2))
	x := make([]float32, n*16)
	for i := range x {
		x[i] = rng.Float32()
	}
	t := be.New(n, 1, 4, 4)
	be.Upload(t, x)
	return t, x
}

func TestParse(t *testing.T) {
	c, err := Parse("pgd_76.5_2.55_40")
	if err != nil || math.Abs(float64(c.Eps)-0.3) > 1e-7 || math.Abs(float64(c.Step)-0.01) > 1e-7 || c.Steps != 40 || c.Target != Predicted || !c.RandomStart || c.Restarts != 1 {
		t.Fatalf("pgd_76.5_2.55_40 → %+v, %v", c, err)
	}
	if c, _ := Parse("pgdll_16_2_10"); c.Target != LeastLikely || c.Steps != 10 || c.Eps != 16.0/255 {
		t.Fatalf("pgdll: %+v", c)
	}
	if c, _ := Parse("pgdrnd_8_1_7"); c.Target != RandomClass {
		t.Fatalf("pgdrnd: %+v", c)
	}
	if c, _ := Parse("fgsmrs_8"); c.Steps != 1 || !c.RandomStart || c.Step != 1.25*c.Eps {
		t.Fatalf("fgsmrs: %+v", c)
	}
	for _, bad := range []string{"pgd_16_2", "pgd_x_2_10", "cw_1_2_3", "pgd_0_1_10", "pgd_300_1_10", "pgd_16_-1_10", "pgd_16_1_0", "pgd_16_1_1.5", "fgsm", "pgd_NaN_1_10"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// TestPGDReachesLinearWorstCase: for a linear two-class model the cross-entropy
// of the true class rises monotonically along v = w_other − w_true in every
// coordinate, so the L∞ worst case is x* = clip(x + ε·sign(v), 0, 1), and
// PGD with steps·α ≥ 2ε must land on it exactly, from any random start.
func TestPGDReachesLinearWorstCase(t *testing.T) {
	for _, be := range nntest.Backends() {
		m, d := linear(t, be, 2, 1)
		x0, xh := batch(be, 6, 3)
		labels := []int32{0, 1, 0, 1, 1, 0}
		c := PGD(0.1, 0.03, 10)
		a, err := New(be, c)
		if err != nil {
			t.Fatal(err)
		}
		adv, _ := a.Run(m, x0, labels, rand.New(rand.NewPCG(4, 4)))
		got := nntest.Host(be, adv)
		w := nntest.Host(be, d.W.Value)
		for i, y := range labels {
			for j := 0; j < 16; j++ {
				v := w[int(1-y)*16+j] - w[int(y)*16+j]
				want := xh[i*16+j]
				if v > 0 {
					want = min(want+c.Eps, 1)
				} else if v < 0 {
					want = max(want-c.Eps, 0)
				}
				if math.Abs(float64(got[i*16+j]-want)) > 1e-6 {
					t.Fatalf("%s: example %d pixel %d = %v, analytic worst case %v", nntest.Name(be), i, j, got[i*16+j], want)
				}
			}
		}
	}
}

func TestPGDStaysInBallAndRange(t *testing.T) {
	be := nntest.Backends()[0]
	m, _ := linear(t, be, 5, 2)
	x0, xh := batch(be, 8, 5)
	labels := []int32{0, 1, 2, 3, 4, 0, 1, 2}
	for _, c := range []Config{PGD(0.3, 0.1, 7), FGSM(0.3), FGSMRandomStart(0.05), {Eps: 0.2, Step: 0.05, Steps: 5, Restarts: 3, RandomStart: true, Target: LeastLikely}} {
		a, err := New(be, c)
		if err != nil {
			t.Fatal(err)
		}
		adv, _ := a.Run(m, x0, labels, rand.New(rand.NewPCG(1, 1)))
		for i, v := range nntest.Host(be, adv) {
			if v < 0 || v > 1 || math.Abs(float64(v-xh[i])) > float64(c.Eps)+1e-6 {
				t.Fatalf("%v: pixel %d = %v from %v leaves [0,1] ∩ ball(ε=%v)", c, i, v, xh[i], c.Eps)
			}
		}
	}
}

func TestTargetedAttacksMoveTowardTheTarget(t *testing.T) {
	be := nntest.Backends()[0]
	m, _ := linear(t, be, 5, 7)
	x0, _ := batch(be, 8, 9)
	labels := []int32{0, 1, 2, 3, 4, 0, 1, 2}
	for _, target := range []Target{LeastLikely, RandomClass} {
		c := PGD(0.2, 0.02, 20)
		c.Target = target
		a, _ := New(be, c)
		adv, work := a.Run(m, x0, labels, rand.New(rand.NewPCG(2, 2)))
		advCopy := nntest.Host(be, adv)
		before := make([]float32, 8)
		after := make([]float32, 8)
		be.SoftmaxCrossEntropy(nil, m.Logits(x0), work, 0, 1, before)
		advT := be.New(x0.Shape()...)
		be.Upload(advT, advCopy)
		be.SoftmaxCrossEntropy(nil, m.Logits(advT), work, 0, 1, after)
		for i := range work {
			if target == RandomClass && work[i] == labels[i] {
				t.Fatalf("random target equals the label for example %d", i)
			}
			if !(after[i] < before[i]) {
				t.Errorf("%v: CE toward target %d of example %d went %v → %v", target, work[i], i, before[i], after[i])
			}
		}
		if target == LeastLikely {
			z := nntest.Host(be, m.Logits(x0))
			for i := range work {
				for j := 0; j < 5; j++ {
					if z[i*5+j] < z[i*5+int(work[i])] {
						t.Fatalf("example %d: target %d is not the least likely class", i, work[i])
					}
				}
			}
		}
	}
}

func TestRestartsKeepTheWorstCaseAndAreDeterministic(t *testing.T) {
	be := nntest.Backends()[0]
	m, _ := linear(t, be, 5, 11)
	x0, _ := batch(be, 16, 13)
	labels := make([]int32, 16)
	for i := range labels {
		labels[i] = int32(i % 5)
	}
	c := PGD(0.03, 0.01, 2) // weak on purpose: restarts matter
	one, _ := New(be, c)
	c.Restarts = 4
	four, _ := New(be, c)
	loss := func(adv *tensor.Tensor) []float32 {
		out := make([]float32, 16)
		be.SoftmaxCrossEntropy(nil, m.Logits(adv), labels, 0, 1, out)
		return out
	}
	a1, _ := one.Run(m, x0, labels, rand.New(rand.NewPCG(5, 5)))
	l1 := loss(a1)
	a4, _ := four.Run(m, x0, labels, rand.New(rand.NewPCG(5, 5))) // same first restart
	l4 := loss(a4)
	for i := range l1 {
		if l4[i] < l1[i]-1e-6 {
			t.Errorf("example %d: 4 restarts give loss %v below the first restart's %v", i, l4[i], l1[i])
		}
	}
	again, _ := four.Run(m, x0, labels, rand.New(rand.NewPCG(5, 5)))
	nntest.Close(t, "same seed, same attack", nntest.Host(be, again), nntest.Host(be, a4), 0)
}

func TestConfigErrors(t *testing.T) {
	be := nntest.Backends()[0]
	for _, c := range []Config{
		{Eps: 0, Step: 0.1, Steps: 1, Restarts: 1},
		{Eps: 1.5, Step: 0.1, Steps: 1, Restarts: 1},
		{Eps: 0.3, Step: 0, Steps: 1, Restarts: 1},
		{Eps: 0.3, Step: 0.1, Steps: 0, Restarts: 1},
		{Eps: 0.3, Step: 0.1, Steps: 1, Restarts: 2},
	} {
		if _, err := New(be, c); err == nil || !strings.HasPrefix(err.Error(), "attack:") {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// TestAsWritten: a float32 ε or step size reaches JSON as written (0.3),
// where float64(x) gives 0.30000001192092896.
func TestAsWritten(t *testing.T) {
	for _, c := range []struct {
		in   float32
		want string
	}{{0.3, "0.3"}, {0.01, "0.01"}, {8.0 / 255, "0.03137255"}, {0.0625, "0.0625"}, {1, "1"}, {0, "0"}} {
		b, err := json.Marshal(AsWritten(c.in))
		if err != nil || string(b) != c.want {
			t.Errorf("AsWritten(%v) marshals as %s, %v; want %s", c.in, b, err, c.want)
		}
		if float32(AsWritten(c.in)) != c.in {
			t.Errorf("AsWritten(%v) does not convert back", c.in)
		}
	}
	if b, _ := json.Marshal(float64(float32(0.3))); string(b) == "0.3" {
		t.Fatal("float64(float32(0.3)) marshals as 0.3: the test cannot fail")
	}
}
