package train

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/data/datatest"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
)

// writeStatic writes a tiny madry-mnist initialized from seed as a model
// file, the way logitpair train writes one, and returns its path.
func writeStatic(t *testing.T, dir string, seed int64, mc models.Config) string {
	t.Helper()
	m, err := models.New(cpu.New(cpu.Options{Threads: 1}), "madry-mnist", mc)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(seed)
	p := filepath.Join(dir, "static-"+string(rune('a'+seed))+".safetensors")
	if err := checkpoint.ModelFile(m, 0, map[string]string{"objective": "plain"}).WriteFileAtomic(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func ensembleConfig(t *testing.T) (Config, []string) {
	c := tinyConfig(t)
	dir := t.TempDir()
	c.StaticModels = []string{writeStatic(t, dir, 11, c.ModelConfig), writeStatic(t, dir, 12, c.ModelConfig)}
	c.Objective, c.SingleStep, c.Eps = "ensemble-adv", "stepll", 0.1
	return c, c.StaticModels
}

func flat(m *models.Model) []float32 {
	p := make([]float32, m.FlatLayout().Total)
	nn.Gather(m.Backend, m.Trainable(), p, false)
	return p
}

// TestSingleStepFGSMEqualsOneStepMPGD (known answer): single-step with fgsm
// at ε trains exactly as mpgd with a one-step attack of size ε without random
// start (--attack fgsm_EPS), bit for bit.
func TestSingleStepFGSMEqualsOneStepMPGD(t *testing.T) {
	a := tinyConfig(t)
	a.Objective, a.SingleStep, a.Eps = "single-step", "fgsm", 0.1
	b := tinyConfig(t)
	b.Objective, b.Attack = "mpgd", "fgsm_25.5" // 25.5/255 = 0.1
	ac, err := a.TrainAttackConfig()
	if err != nil {
		t.Fatal(err)
	}
	bc, _ := b.TrainAttackConfig()
	if ac != bc {
		t.Fatalf("single-step fgsm attack %+v, mpgd --attack fgsm_25.5 %+v", ac, bc)
	}
	ta, tb := newTrainer(t, a), newTrainer(t, b)
	for i := 0; i < 4; i++ {
		xa, err := ta.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		xb, _ := tb.TrainStep()
		if xa.Loss != xb.Loss || xa.AdvCE != xb.AdvCE {
			t.Fatalf("step %d: single-step loss %v (adv CE %v), mpgd %v (%v)", i, xa.Loss, xa.AdvCE, xb.Loss, xb.AdvCE)
		}
	}
	bits(t, "single-step fgsm vs one-step mpgd", ta.Params(), tb.Params())
}

// TestEnsembleAdvStaticModelsNeverChange: six steps of ensemble-adv (which
// update the model) leave every static model's parameters bit-identical to
// the file's and the files byte-identical; the round-robin schedule is
// followed (model, static 1, static 2, model, …), and at the model's steps
// the gradient is single-step's while at a static model's it is not.
func TestEnsembleAdvStaticModelsNeverChange(t *testing.T) {
	c, paths := ensembleConfig(t)
	files := make([][]byte, len(paths))
	for i, p := range paths {
		files[i], _ = os.ReadFile(p)
	}
	tr := newTrainer(t, c)
	if len(tr.W.static) != 2 {
		t.Fatalf("%d static models loaded, want 2", len(tr.W.static))
	}
	before := [][]float32{flat(tr.W.static[0]), flat(tr.W.static[1])}
	start := append([]float32(nil), tr.Params()...)
	var sources []int
	tr.OnStep = func(step int64, terms objective.Terms) { sources = append(sources, terms.Source) }
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 1, 2, 0, 1, 2}; !equalInts(sources, want) {
		t.Fatalf("sources %v, want %v", sources, want)
	}
	changed := false
	for i, v := range tr.Params() {
		changed = changed || v != start[i]
	}
	if !changed {
		t.Fatal("training changed no parameter of the model")
	}
	for i, s := range tr.W.static {
		bits(t, "static model "+paths[i], flat(s), before[i])
		now, _ := os.ReadFile(paths[i])
		if !bytes.Equal(now, files[i]) {
			t.Fatalf("static model file %s changed", paths[i])
		}
	}
	// The same parameters, steps 0–5: ensemble-adv's gradient equals
	// single-step's exactly when the model is the step's source.
	be := cpu.New(cpu.Options{Threads: 1})
	loader := data.NewLoader(datatest.Synthetic(64, 1), data.LoaderOptions{Seed: uint64(c.Seed)})
	newW := func(c Config) *Worker {
		m, _ := models.New(be, c.Model, c.ModelConfig)
		m.Init(c.Seed)
		w, err := NewWorker(c, m, loader)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	ss := c
	ss.Objective, ss.StaticModels = "single-step", nil
	we, ws := newW(c), newW(ss)
	ge, gs := make([]float32, we.Layout().Total), make([]float32, ws.Layout().Total)
	for step := int64(0); step < 6; step++ {
		if _, err := we.Gradient(step, 0, 1, ge); err != nil {
			t.Fatal(err)
		}
		if _, err := ws.Gradient(step, 0, 1, gs); err != nil {
			t.Fatal(err)
		}
		same := true
		for i := range ge {
			same = same && math.Float32bits(ge[i]) == math.Float32bits(gs[i])
		}
		if same != (step%3 == 0) {
			t.Errorf("step %d (source %d): gradient equal to single-step's: %v", step, step%3, same)
		}
	}
}

// TestEnsembleAdvRandomSchedule: the random schedule's sources are a
// function of (seed, step), the same in every slot, and use every source.
func TestEnsembleAdvRandomSchedule(t *testing.T) {
	c, _ := ensembleConfig(t)
	c.SourceSchedule, c.Steps = "random", 12
	run := func(slot int) []int {
		tr := newTrainer(t, c)
		var got []int
		g := make([]float32, tr.W.Layout().Total)
		for step := int64(0); step < c.Steps; step++ {
			terms, err := tr.W.Gradient(step, slot, 2, g)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, terms.Source)
		}
		return got
	}
	a, b := run(0), run(1)
	if !equalInts(a, b) {
		t.Fatalf("slots 0 and 1 used sources %v and %v", a, b)
	}
	obj, _ := objective.New(nil, c.ObjectiveConfig())
	seen := map[int]bool{}
	for step, s := range a {
		if want := obj.Source(int64(step), SourceRNG(c.Seed, int64(step))); s != want {
			t.Fatalf("step %d: source %d, schedule says %d", step, s, want)
		}
		seen[s] = true
	}
	if len(seen) != 3 {
		t.Errorf("12 random steps used only sources %v", a)
	}
}

// TestRandomEpsIsDeterministic: single-step with --random-eps repeats for a
// seed and differs from the fixed ε.
func TestRandomEpsIsDeterministic(t *testing.T) {
	c := tinyConfig(t)
	c.Objective, c.Eps, c.Steps = "single-step", 0.1, 3
	fixed := newTrainer(t, c)
	c.RandomEps = true
	a, b := newTrainer(t, c), newTrainer(t, c)
	for _, tr := range []*Trainer{fixed, a, b} {
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	bits(t, "random ε, same seed", a.Params(), b.Params())
	differ := false
	for i, v := range a.Params() {
		differ = differ || v != fixed.Params()[i]
	}
	if !differ {
		t.Fatal("random ε trained exactly as the fixed ε")
	}
}

func TestStaticModelErrors(t *testing.T) {
	dir := t.TempDir()
	c := tinyConfig(t)
	wrongClasses := writeStatic(t, dir, 3, models.Config{"conv1": 2, "conv2": 2, "hidden": 8, "classes": 7})
	other, _ := models.New(cpu.New(cpu.Options{Threads: 1}), "resnet9", models.Config{"width": 2})
	wrongShape := filepath.Join(dir, "resnet9.safetensors")
	if err := checkpoint.ModelFile(other, 0, nil).WriteFileAtomic(wrongShape); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.safetensors")
	for _, tc := range []struct {
		path, want string
	}{
		{missing, "static model " + missing},
		{wrongClasses, "has 7 classes"},
		{wrongShape, "takes inputs of"},
	} {
		cc := c
		cc.Objective, cc.StaticModels = "ensemble-adv", []string{tc.path}
		_, err := NewTrainer(cpu.New(cpu.Options{Threads: 1}), cc, data.NewLoader(datatest.Synthetic(8, 1), data.LoaderOptions{}), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: got %v, want an error naming the file and saying %q", tc.path, err, tc.want)
		}
	}
	for want, mod := range map[string]func(*Config){
		"--static-models applies": func(c *Config) { c.Objective, c.StaticModels = "mpgd", []string{"x"} },
		"--random-eps applies":    func(c *Config) { c.Objective, c.RandomEps = "alp", true },
		"at least one static":     func(c *Config) { c.Objective = "ensemble-adv" },
		"--single-step":           func(c *Config) { c.Objective, c.SingleStep = "single-step", "pgd" },
		"source schedule": func(c *Config) {
			c.Objective, c.StaticModels, c.SourceSchedule = "ensemble-adv", []string{"x"}, "cyclic"
		},
		"entry 2 is empty": func(c *Config) { c.Objective, c.StaticModels = "ensemble-adv", []string{"x", " "} },
	} {
		cc := DefaultConfig()
		mod(&cc)
		if err := cc.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
