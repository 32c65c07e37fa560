package strong

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// netModel adapts an nn.Layer to attack.Model.
type netModel struct {
	be  tensor.Backend
	net nn.Layer
}

func (m netModel) Backend() tensor.Backend                { return m.be }
func (m netModel) Logits(x *tensor.Tensor) *tensor.Tensor { return m.net.Forward(x, false) }
func (m netModel) InputGrad(dz *tensor.Tensor) *tensor.Tensor {
	return m.net.Backward(dz, nn.Grad{Input: true})
}

// linearModel returns z = W·vec(x) + b with the given weights (K × in).
func linearModel(be tensor.Backend, w, b []float32, in, k int) netModel {
	d := nn.NewDense(be, "fc", in, k, true)
	be.Upload(d.W.Value, w)
	be.Upload(d.B.Value, b)
	return netModel{be, nn.NewSequential(nn.NewFlatten(), d)}
}

// scaled multiplies a model's logits, and their gradient, by s: the same
// decisions, a saturated softmax and a cross-entropy gradient that
// underflows — the textbook gradient masking.
type scaled struct {
	m     attack.Model
	s     float32
	z, dz *tensor.Tensor
}

func (m *scaled) Backend() tensor.Backend { return m.m.Backend() }
func (m *scaled) Logits(x *tensor.Tensor) *tensor.Tensor {
	z := m.m.Logits(x)
	be := m.Backend()
	if m.z == nil || !m.z.Shape().Equal(z.Shape()) {
		m.z, m.dz = be.New(z.Shape()...), be.New(z.Shape()...)
	}
	be.Copy(m.z, z)
	be.Scale(m.z, m.s)
	return m.z
}
func (m *scaled) InputGrad(dz *tensor.Tensor) *tensor.Tensor {
	be := m.Backend()
	be.Copy(m.dz, dz)
	be.Scale(m.dz, m.s)
	return m.m.InputGrad(m.dz)
}

func randomImages(n, c, h, w int, seed uint64) *data.Dataset {
	rng := rand.New(rand.NewPCG(seed, 1))
	d := &data.Dataset{Name: "random", C: c, H: h, W: w, Classes: 10, Images: make([]float32, n*c*h*w), Labels: make([]int32, n)}
	for i := range d.Images {
		d.Images[i] = rng.Float32()
	}
	return d
}

// labelByModel sets each label to the model's prediction: clean accuracy 100%.
func labelByModel(t *testing.T, m attack.Model, d *data.Dataset) {
	be := m.Backend()
	x := be.New(d.Len(), d.C, d.H, d.W)
	be.Upload(x, d.Images)
	z := nntest.Host(be, m.Logits(x))
	k := len(z) / d.Len()
	d.Classes = k
	for i := range d.Labels {
		best := 0
		for j := 0; j < k; j++ {
			if z[i*k+j] > z[i*k+best] {
				best = j
			}
		}
		d.Labels[i] = int32(best)
	}
}

func tinyMadry(t *testing.T, seed int64) attack.Model {
	m, err := models.New(nntest.Backends()[0], "madry-mnist", models.Config{"conv1": 4, "conv2": 4, "hidden": 16})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(seed)
	return models.EvalView{M: m}
}

func fastChecks() CheckOptions {
	return CheckOptions{Examples: 20, Steps: []int{1, 3, 10}, SweepSteps: 10, SliceExamples: 10, SlicePoints: 11}
}

func TestLossGradientsMatchFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, l := range []LossKind{CE, CW, DLR, TargetedCE} {
		for trial := 0; trial < 20; trial++ {
			z := make([]float32, 6)
			for j := range z {
				z[j] = float32(rng.NormFloat64() * 2)
			}
			y, tg := rng.IntN(6), rng.IntN(6)
			dz := make([]float32, 6)
			l.eval(z, y, tg, dz)
			for j := range z {
				h := float32(1e-3)
				zp, zm := append([]float32(nil), z...), append([]float32(nil), z...)
				zp[j] += h
				zm[j] -= h
				fd := (l.eval(zp, y, tg, nil) - l.eval(zm, y, tg, nil)) / float64(2*h)
				// Skip kinks (max and sort switch within ±h).
				fp := (l.eval(zp, y, tg, nil) - l.eval(z, y, tg, nil)) / float64(h)
				fm := (l.eval(z, y, tg, nil) - l.eval(zm, y, tg, nil)) / float64(h)
				if math.Abs(fp-fm) > 1e-2 {
					continue
				}
				if math.Abs(fd-float64(dz[j])) > 1e-2*math.Max(1, math.Abs(fd)) {
					t.Fatalf("%v: ∂/∂z_%d = %v, finite difference %v (z=%v y=%d t=%d)", l, j, dz[j], fd, z, y, tg)
				}
			}
		}
	}
}

// TestAPGDReachesLinearWorstCase: for a linear two-class model both the CE
// and the CW margin rise monotonically along v = w_other − w_true in every
// coordinate, so the L∞ worst case is clip(x + ε·sign(v), 0, 1); APGD (and
// fixed-step PGD with steps·α ≥ 2ε) must find it exactly from a random start.
func TestAPGDReachesLinearWorstCase(t *testing.T) {
	for _, be := range nntest.Backends() {
		rng := rand.New(rand.NewPCG(3, 3))
		w := make([]float32, 32)
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		m := linearModel(be, w, []float32{0.1, -0.1}, 16, 2)
		n := 6
		x0 := make([]float32, n*16)
		for i := range x0 {
			x0[i] = rng.Float32()
		}
		labels := []int32{0, 1, 0, 1, 1, 0}
		for _, it := range []Iterative{
			{Eps: 0.1, Steps: 20, RandomStart: true, Loss: CE},
			{Eps: 0.1, Steps: 20, RandomStart: true, Loss: CW},
			{Eps: 0.1, Steps: 10, Step: 0.03, RandomStart: true, Loss: CW},
		} {
			ev := newEvaluator(m, [3]int{1, 4, 4}, 8)
			res := it.run(ev, x0, n, labels, nil, rand.New(rand.NewPCG(4, 4)))
			for i, y := range labels {
				for j := 0; j < 16; j++ {
					v := w[int(1-y)*16+j] - w[int(y)*16+j]
					want := x0[i*16+j]
					if v > 0 {
						want = min(want+it.Eps, 1)
					} else if v < 0 {
						want = max(want-it.Eps, 0)
					}
					if got := res.Best[i*16+j]; math.Abs(float64(got-want)) > 1e-6 {
						t.Fatalf("%s %+v: example %d pixel %d = %v, analytic worst case %v", nntest.Name(be), it, i, j, got, want)
					}
				}
			}
			if ev.Grads != it.Steps*n || ev.Forwards != n {
				t.Errorf("%+v: %d gradient rows, %d forward rows; want %d and %d", it, ev.Grads, ev.Forwards, it.Steps*n, n)
			}
		}
	}
}

func TestSquareDecreasesMarginAndStaysInBall(t *testing.T) {
	be := nntest.Backends()[0]
	rng := rand.New(rand.NewPCG(5, 5))
	w := make([]float32, 32)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	m := linearModel(be, w, []float32{0, 0}, 16, 2)
	d := randomImages(8, 1, 4, 4, 7)
	labelByModel(t, m, d)
	ev := newEvaluator(m, [3]int{1, 4, 4}, 8)
	clean := ev.logits(d.Images, 8)
	cleanMargin := make([]float32, 8)
	for i := range cleanMargin {
		cleanMargin[i] = margin(clean[i*2:(i+1)*2], int(d.Labels[i]))
	}
	sq := Square{Eps: 0.05, Queries: 300, PInit: 0.8}
	res, trace := sq.run(ev, d.Images, 8, d.Labels, rand.New(rand.NewPCG(6, 6)))
	for q := 1; q < len(trace); q++ {
		if trace[q] > trace[q-1] {
			t.Fatalf("mean margin rose at query %d: %v → %v", q, trace[q-1], trace[q])
		}
	}
	for i := 0; i < 8; i++ {
		if got := float32(-res.BestLoss[i]); !(got < cleanMargin[i]) {
			t.Errorf("example %d: margin %v not below the clean %v", i, got, cleanMargin[i])
		}
	}
	for j, v := range res.Adv {
		if v < 0 || v > 1 || math.Abs(float64(v-d.Images[j])) > float64(sq.Eps)+1e-7 {
			t.Fatalf("pixel %d = %v leaves [0,1] ∩ B∞(%v, %v)", j, v, d.Images[j], sq.Eps)
		}
	}
	z := ev.logits(res.Adv, 8)
	for i := 0; i < 8; i++ {
		if m := margin(z[i*2:(i+1)*2], int(d.Labels[i])); math.Abs(float64(m)+res.BestLoss[i]) > 1e-5 {
			t.Errorf("example %d: reported margin %v, recomputed %v", i, -res.BestLoss[i], m)
		}
	}
}

// TestUntrainedModelFallsToZero: an untrained network (labels set to its own
// predictions, so clean accuracy is 100%) has no robustness at ε = 0.3.
func TestUntrainedModelFallsToZero(t *testing.T) {
	m := tinyMadry(t, 1)
	d := randomImages(30, 1, 28, 28, 2)
	labelByModel(t, m, d)
	o := Options{Model: "tiny", Eps: 0.3, Batch: 15, Seed: 1, Steps: 10, Restarts: 2, SquareQueries: 30, Checks: fastChecks()}
	rep, err := Run(m, d, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.CleanAccuracy != 1 || rep.Examples != 30 {
		t.Fatalf("clean accuracy %v over %d", rep.CleanAccuracy, rep.Examples)
	}
	if rep.RobustAccuracy > 0.02 || *rep.WhiteboxAccuracy > 0.02 {
		t.Fatalf("untrained model keeps %.3f (white box %.3f) at ε = 0.3", rep.RobustAccuracy, *rep.WhiteboxAccuracy)
	}
	names := []string{}
	for _, s := range rep.Stages {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "apgd-ce,apgd-dlr,apgd-t-ll,apgd-t-rnd,square" {
		t.Fatalf("stages %s", got)
	}
	for _, c := range rep.Checks {
		if c.Name == "large-eps" && c.Status != Pass {
			t.Errorf("large-eps: %+v", c)
		}
	}
	// Same seed, same report.
	rep2, _ := Run(m, d, o)
	if rep2.RobustAccuracy != rep.RobustAccuracy || rep2.GradientPasses != rep.GradientPasses || rep2.Diagnostics.Slices[0].Loss[3] != rep.Diagnostics.Slices[0].Loss[3] {
		t.Fatalf("not deterministic")
	}
}

// TestScaledLogitsAreFlagged: logits × 10⁴ keep every decision but saturate
// the softmax, so the CE gradient underflows to zero: APGD-CE alone would
// report the model robust. The checks must flag it, and the DLR stage (scale
// invariant) must break it anyway.
func TestScaledLogitsAreFlagged(t *testing.T) {
	base := tinyMadry(t, 3)
	d := randomImages(30, 1, 28, 28, 4)
	labelByModel(t, base, d)
	m := &scaled{m: base, s: 1e4}
	rep, err := Run(m, d, Options{Model: "scaled", Eps: 0.3, Batch: 15, Seed: 2, Steps: 10, Restarts: 1, SquareQueries: 20, NoTargeted: true, Checks: fastChecks()})
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]Status{}
	for _, c := range rep.Checks {
		status[c.Name] = c.Status
		t.Logf("%s: %s — %s", c.Name, c.Status, c.Evidence)
	}
	for _, name := range []string{"zero-gradient", "saturated-softmax", "convergence:apgd-ce", "loss-surface"} {
		if status[name] != Warn {
			t.Errorf("check %s: %q, want warn", name, status[name])
		}
	}
	if rep.Warnings < 4 {
		t.Errorf("%d warnings", rep.Warnings)
	}
	ce, dlr := rep.Stages[0], rep.Stages[1]
	if !(ce.Accuracy >= 0.5 && dlr.Accuracy <= 0.05) {
		t.Errorf("APGD-CE leaves %.2f, APGD-DLR %.2f: want CE fooled (≥ 0.5) and DLR not (≤ 0.05)", ce.Accuracy, dlr.Accuracy)
	}
}

// robustLinear is robust by design: one feature pixel x, logits
// z = (a(0.5 − x), a(x − 0.5), c), class 0 for x ≤ 0.05 and class 1 for
// x ≥ 0.95, so at ε = 0.3 the worst case keeps a margin of at least
// 0.3a − c > 0 while ε ≥ 0.5 reaches the boundary. Extra pixels have weight 0.
func robustLinear(be tensor.Backend, pixels int) netModel {
	const a, c = 10, 0.5
	w := make([]float32, 3*pixels)
	w[0], w[pixels] = -a, a
	return linearModel(be, w, []float32{a / 2, -a / 2, c}, pixels, 3)
}

func TestRobustModelPassesChecks(t *testing.T) {
	be := nntest.Backends()[0]
	m := robustLinear(be, 1)
	n := 40
	d := &data.Dataset{Name: "pixel", C: 1, H: 1, W: 1, Classes: 3, Images: make([]float32, n), Labels: make([]int32, n)}
	for i := 0; i < n; i++ {
		u := float32(i/2) / float32(n/2) * 0.05
		if i%2 == 0 {
			d.Images[i], d.Labels[i] = u, 0
		} else {
			d.Images[i], d.Labels[i] = 1-u, 1
		}
	}
	rep, err := Run(m, d, Options{Model: "robust", Eps: 0.3, Batch: 16, Seed: 3, Steps: 20, Restarts: 3, SquareQueries: 50,
		Sources: []attack.Model{robustLinear(be, 1)}, SourceNames: []string{"twin"}, Checks: fastChecks()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Checks {
		if c.Status != Pass {
			t.Errorf("check %s: %s — %s", c.Name, c.Status, c.Evidence)
		}
	}
	if rep.CleanAccuracy != 1 || rep.RobustAccuracy != 1 || rep.Warnings != 0 || rep.TransferAccuracy == nil || *rep.TransferAccuracy != 1 {
		t.Fatalf("clean %v robust %v warnings %d transfer %v", rep.CleanAccuracy, rep.RobustAccuracy, rep.Warnings, rep.TransferAccuracy)
	}
	if len(rep.Checks) < 10 {
		t.Fatalf("only %d checks", len(rep.Checks))
	}
}

// counting records which examples each run of each stage queries; pixel 1
// of every input is the example's id (spaced wider than 2ε).
type counting struct {
	netModel
	stage string
	seen  map[string]map[int]bool
}

func (c *counting) Logits(x *tensor.Tensor) *tensor.Tensor {
	h := nntest.Host(c.be, x)
	for r := 0; r < x.Dim(0); r++ {
		id := int(math.Round(float64(h[r*2+1]) / 0.05))
		if c.seen[c.stage] == nil {
			c.seen[c.stage] = map[int]bool{}
		}
		c.seen[c.stage][id] = true
	}
	return c.netModel.Logits(x)
}

// TestCascadeAttacksOnlyCorrectPoints: clean errors are never attacked,
// examples broken by a stage (or restart) are never queried again, and
// examples that hold are attacked by every run of every stage. Each batch
// of a run is reported (Advance), and each stage's wall time recorded: the
// clock moves 2 s per batch.
func TestCascadeAttacksOnlyCorrectPoints(t *testing.T) {
	be := nntest.Backends()[0]
	m := &counting{netModel: robustLinear(be, 2), stage: "clean", seen: map[string]map[int]bool{}}
	n := 18
	d := &data.Dataset{Name: "ids", C: 1, H: 1, W: 2, Classes: 3, Images: make([]float32, 2*n), Labels: make([]int32, n)}
	kind := func(i int) string { return [...]string{"robust", "weak", "wrong"}[i%3] }
	for i := 0; i < n; i++ {
		d.Labels[i] = 1
		d.Images[2*i+1] = float32(i) * 0.05
		switch kind(i) {
		case "robust":
			d.Images[2*i] = 0.98
		case "weak":
			d.Images[2*i] = 0.56 // z1 − z2 = 0.1: any ε = 0.02 attack breaks it
		case "wrong":
			d.Images[2*i] = 0.2
		}
	}
	var order, advanced []string
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o := Options{Model: "ids", Eps: 0.02, Batch: 4, Seed: 4, Steps: 10, Restarts: 3, SquareQueries: 30, Checks: CheckOptions{Skip: true},
		Progress: func(stage string, restart, attacked int) {
			key := stage + "#" + string(rune('0'+restart))
			m.stage = key
			order = append(order, key)
		},
		Advance: func(stage string, restart, done, total int) {
			advanced = append(advanced, fmt.Sprintf("%s#%d:%d/%d", stage, restart, done, total))
			clock = clock.Add(2 * time.Second)
		},
		now: func() time.Time { return clock }}
	rep, err := Run(m, d, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.seen["clean"]) != n {
		t.Fatalf("clean pass saw %d examples", len(m.seen["clean"]))
	}
	want := []string{"apgd-ce#0", "apgd-ce#1", "apgd-ce#2", "apgd-dlr#0", "apgd-dlr#1", "apgd-dlr#2", "apgd-t-ll#0", "apgd-t-rnd#0", "square#0"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("runs %v, want %v", order, want)
	}
	for _, key := range want {
		for i := 0; i < n; i++ {
			shouldSee := kind(i) == "robust" || (key == "apgd-ce#0" && kind(i) == "weak")
			if m.seen[key][i] != shouldSee {
				t.Errorf("%s: example %d (%s) queried: %v", key, i, kind(i), m.seen[key][i])
			}
		}
	}
	if rep.CleanAccuracy != 2.0/3 || rep.RobustAccuracy != 1.0/3 || rep.Stages[0].Attacked != 12 || rep.Stages[0].Broken != 6 || rep.Stages[1].Attacked != 6 {
		t.Fatalf("clean %v robust %v stage 0 %d/%d stage 1 %d", rep.CleanAccuracy, rep.RobustAccuracy, rep.Stages[0].Broken, rep.Stages[0].Attacked, rep.Stages[1].Attacked)
	}
	// 6 robust examples in batches of 4 (4 + 2 rows), 10 iterations (the
	// last a forward only) per run, 3 runs.
	if g, f := rep.Stages[1].GradientPasses, rep.Stages[1].Forwards; g != 3*10*6 || f != 3*6 {
		t.Errorf("apgd-dlr: %d gradient rows, %d forward rows; want %d and %d", g, f, 3*10*6, 3*6)
	}
	// apgd-ce: 12 examples (3 batches), then 6 twice (2 batches each).
	if got, want := strings.Join(advanced[:7], " "), "apgd-ce#0:4/12 apgd-ce#0:8/12 apgd-ce#0:12/12 apgd-ce#1:4/6 apgd-ce#1:6/6 apgd-ce#2:4/6 apgd-ce#2:6/6"; got != want {
		t.Errorf("advance %s, want %s", got, want)
	}
	var secs []float64
	for _, st := range rep.Stages {
		secs = append(secs, st.Seconds)
	}
	if want := []float64{14, 12, 4, 4, 4}; fmt.Sprint(secs) != fmt.Sprint(want) || rep.Seconds != 38 {
		t.Errorf("stage seconds %v (total %v), want %v (total 38)", secs, rep.Seconds, want)
	}
	if got, want := TimeLine(rep), "time: apgd-ce 14s, apgd-dlr 12s, apgd-t-ll 4.0s, apgd-t-rnd 4.0s, square 4.0s; total 38s"; got != want {
		t.Errorf("TimeLine %q, want %q", got, want)
	}
}
