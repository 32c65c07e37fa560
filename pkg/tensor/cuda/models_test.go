//go:build cgo && linux && !static && !purego

package cuda_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/tensor/cuda"
)

// twin builds model name on both backends with the same weights and
// batch-norm statistics (initialized on the CPU, copied to the device).
func twin(t *testing.T, p *pair, name string, cfg models.Config) (g, c *models.Model) {
	t.Helper()
	c, err := models.New(p.c, name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	g, err = models.New(p.g, name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Init(11)
	flat := make([]float32, nn.NewLayout(c.Params()).Total)
	nn.Gather(p.c, c.Params(), flat, false)
	nn.Scatter(p.g, g.Params(), flat)
	return g, c
}

func (p *pair) checkParams(what string, g, c *models.Model, grads bool) {
	p.t.Helper()
	gp, cp := g.Params(), c.Params()
	if grads {
		gp, cp = g.Trainable(), c.Trainable()
	}
	for i := range cp {
		if grads {
			p.check(what+" "+cp[i].Name, gp[i].Grad, cp[i].Grad)
		} else {
			p.check(what+" "+cp[i].Name, gp[i].Value, cp[i].Value)
		}
	}
}

// TestModelsMatchCPU runs tiny instances of the models through a training
// forward/backward (logits, input gradient, every parameter gradient, the
// updated batch-norm statistics) and an evaluation forward with the input
// gradient only (a PGD step), on CUDA and on the CPU.
//
// Tiny deep networks in training mode can be too ill-conditioned for a
// 1e-3 comparison whatever the backend (batch norm over a handful of values
// per channel amplifies rounding): for inception-v3 at width_div 32 the CPU
// backend with OpenBLAS and with gonum disagree by more than that in the
// training gradients, so there only the training logits and the evaluation
// path are compared.
func TestModelsMatchCPU(t *testing.T) {
	cases := []struct {
		name       string
		cfg        models.Config
		in         []int
		trainGrads bool
		heavy      bool // minutes on the emulator: skipped there with -short
	}{
		{"madry-mnist", models.Config{"conv1": 4, "conv2": 8, "hidden": 16}, []int{3, 1, 28, 28}, true, false},
		{"resnet9", models.Config{"width": 4}, []int{2, 3, 32, 32}, true, false},
		{"resnet-v2-50", models.Config{"width": 4, "classes": 7, "image_size": 64}, []int{4, 3, 64, 64}, true, true},
		{"inception-v3", models.Config{"width_div": 32, "classes": 5, "image_size": 75}, []int{2, 3, 75, 75}, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, 21)
			if tc.heavy && testing.Short() && cuda.RunsOn() != "gpu" {
				t.Skip("-short: too slow on the fakecuda emulator")
			}
			g, c := twin(t, p, tc.name, tc.cfg)
			xg, xc := p.uniform(0, 1, tc.in...)
			zg, zc := g.Forward(xg, true), c.Forward(xc, true)
			p.check("train logits", zg, zc)
			dzg, dzc := p.randn(1, zc.Shape()...)
			if tc.trainGrads {
				p.check("train dx", g.Backward(dzg, nn.Grad{Params: true, Input: true}), c.Backward(dzc, nn.Grad{Params: true, Input: true}))
				p.checkParams("grad", g, c, true)
			}
			p.checkParams("param/buffer", g, c, false) // running statistics updated
			zg, zc = g.Forward(xg, false), c.Forward(xc, false)
			p.check("eval logits", zg, zc)
			p.check("eval dx", g.Backward(dzg, nn.Grad{Input: true}), c.Backward(dzc, nn.Grad{Input: true}))
		})
	}
}

// TestAttackOnCUDA runs PGD on a tiny model on both backends: every
// iterate stays in the ε-ball and [0, 1], the attack raises the loss as
// much as on the CPU, and with the same randomness the adversarial
// examples agree except where a gradient coordinate's sign is decided by
// rounding.
func TestAttackOnCUDA(t *testing.T) {
	p := newPair(t, 31)
	g, c := twin(t, p, "madry-mnist", models.Config{"conv1": 4, "conv2": 8, "hidden": 16})
	x0g, x0c := p.uniform(0, 1, 4, 1, 28, 28)
	labels := []int32{1, 7, 3, 0}
	cfg := attack.PGD(0.3, 0.05, 10)
	run := func(be tensor.Backend, m *models.Model, x0 *tensor.Tensor) ([]float32, float64) {
		a, err := attack.New(be, cfg)
		if err != nil {
			t.Fatal(err)
		}
		adv, _ := a.Run(models.EvalView{M: m}, x0, labels, rand.New(rand.NewPCG(5, 5)))
		loss := be.SoftmaxCrossEntropy(nil, m.Forward(adv, false), labels, 0, 1, nil)
		return nntest.Host(be, adv), loss
	}
	advG, lossG := run(p.g, g, x0g)
	advC, lossC := run(p.c, c, x0c)
	x0 := nntest.Host(p.c, x0c)
	differ := 0
	for i, v := range advG {
		if v < 0 || v > 1 || math.Abs(float64(v-x0[i])) > float64(cfg.Eps)+1e-6 {
			t.Fatalf("pixel %d = %v leaves the ball around %v or [0, 1]", i, v, x0[i])
		}
		if math.Abs(float64(v-advC[i])) > 1e-4 {
			differ++
		}
	}
	if differ > len(advG)/100 {
		t.Errorf("%d of %d adversarial pixels differ from the CPU's", differ, len(advG))
	}
	clean := p.c.SoftmaxCrossEntropy(nil, c.Forward(x0c, false), labels, 0, 1, nil)
	if !(lossG > clean) || math.Abs(lossG-lossC) > 1e-2*math.Abs(lossC) {
		t.Errorf("adversarial loss %.6g on CUDA, %.6g on the CPU, clean %.6g", lossG, lossC, clean)
	}
}

// TestObjectivesOnCUDA computes every objective's inputs and loss on both
// backends from the same batch, logits and randomness.
func TestObjectivesOnCUDA(t *testing.T) {
	for _, name := range objective.Names() {
		t.Run(name, func(t *testing.T) {
			cfg := objective.Config{Name: name, PairWeight: 0.5, NoiseStd: 0.1, MixupAlpha: 0.4}
			p := newPair(t, 41)
			oc, err := objective.New(p.c, cfg)
			if err != nil {
				t.Skipf("objective %s needs a configuration this test does not build: %v", name, err)
			}
			og, err := objective.New(p.g, cfg)
			if err != nil {
				t.Fatal(err)
			}
			m := 4
			xg, xc := p.uniform(0, 1, m, 1, 3, 3)
			ag, ac := p.uniform(0, 1, m, 1, 3, 3)
			ing := og.Inputs(xg, ag, rand.New(rand.NewPCG(9, 9)))
			inc := oc.Inputs(xc, ac, rand.New(rand.NewPCG(9, 9)))
			p.check("inputs", ing, inc)
			rows := oc.ForwardBatch(m)
			zg, zc := p.randn(2, rows, 5)
			labels := []int32{4, 0, 2, 2}
			dzg, tg := og.Loss(zg, labels)
			dzc, tc := oc.Loss(zc, labels)
			p.check("dz", dzg, dzc)
			for _, v := range []struct {
				what string
				g, c float64
			}{{"loss", tg.Loss, tc.Loss}, {"clean CE", tg.CleanCE, tc.CleanCE}, {"adv CE", tg.AdvCE, tc.AdvCE},
				{"pair", tg.Pair, tc.Pair}, {"logit norm", tg.LogitNorm, tc.LogitNorm}} {
				if math.IsNaN(v.c) != math.IsNaN(v.g) {
					t.Errorf("%s = %v, CPU %v", v.what, v.g, v.c)
				} else if !math.IsNaN(v.c) {
					p.checkScalar(v.what, v.g, v.c)
				}
			}
			if tg.CleanAcc != tc.CleanAcc || !(tg.AdvAcc == tc.AdvAcc || math.IsNaN(tc.AdvAcc) && math.IsNaN(tg.AdvAcc)) {
				t.Errorf("accuracies %v/%v, CPU %v/%v", tg.CleanAcc, tg.AdvAcc, tc.CleanAcc, tc.AdvAcc)
			}
		})
	}
}
