package train

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/data/datatest"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
)

func tinyConfig(t *testing.T) Config {
	c := DefaultConfig()
	c.Dataset = "synthetic"
	c.ModelConfig = models.Config{"conv1": 2, "conv2": 2, "hidden": 8}
	c.Batch, c.Steps = 4, 6
	c.AttackSteps, c.StepSize, c.Eps = 2, 0.05, 0.1
	c.Optimizer, c.LR = "rmsprop", 0.01
	c.WeightDecay, c.EMA = 1e-4, 0.9
	c.Out = t.TempDir()
	c.CheckpointEvery, c.Keep, c.LogEvery = 0, 2, 0
	return c
}

func newTrainer(t *testing.T, c Config) *Trainer {
	t.Helper()
	be := cpu.New(cpu.Options{Threads: 1})
	loader := data.NewLoader(datatest.Synthetic(64, 1), data.LoaderOptions{Seed: uint64(c.Seed)})
	tr, err := NewTrainer(be, c, loader, datatest.Synthetic(20, 2))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func bits(t *testing.T, what string, a, b []float32) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: lengths %d, %d", what, len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("%s: element %d differs: %v vs %v", what, i, a[i], b[i])
		}
	}
}

// TestResumeIsBitIdentical: 6 straight steps equal 3 steps, a checkpoint, a
// fresh process state resumed from it, and 3 more — parameters, optimizer
// slots, EMA and batch-norm-free model alike — for ALP with weight decay.
func TestResumeIsBitIdentical(t *testing.T) {
	c := tinyConfig(t)
	straight := newTrainer(t, c)
	if err := straight.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	c2 := c
	c2.Out = t.TempDir()
	c2.Steps = 3
	first := newTrainer(t, c2)
	if err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	c2.Steps, c2.Resume = 6, true
	second := newTrainer(t, c2)
	if second.Step != 3 {
		t.Fatalf("resumed at step %d, want 3", second.Step)
	}
	if err := second.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	bits(t, "parameters", second.Params(), straight.Params())
	for i, s := range straight.Opt.State() {
		bits(t, "optimizer "+s.Name, second.Opt.State()[i].Data, s.Data)
	}
	bits(t, "EMA", second.EMA.Values(), straight.EMA.Values())
	// The same seed gives the same run; another seed does not.
	again := newTrainer(t, c)
	_ = again.Run(context.Background())
	bits(t, "same seed", again.Params(), straight.Params())
}

func TestEveryObjectiveTrainsAStep(t *testing.T) {
	for _, o := range []string{"plain", "label-smoothing", "pgd", "mpgd", "alp", "clp", "logit-squeeze", "mixup", "vat-kl", "trades"} {
		c := tinyConfig(t)
		c.Objective, c.Steps, c.PairWeight = o, 2, 0.5
		tr := newTrainer(t, c)
		before := append([]float32(nil), tr.Params()...)
		terms, err := tr.TrainStep()
		if err != nil || math.IsNaN(terms.Loss) {
			t.Fatalf("%s: %v (%+v)", o, err, terms)
		}
		changed := false
		for i, v := range tr.Params() {
			changed = changed || v != before[i]
		}
		if !changed {
			t.Fatalf("%s: a step changed no parameter", o)
		}
		// The worker times the attack separately (the metrics' attack phase).
		if adv := tr.W.attack != nil; adv != (tr.W.AttackTime > 0) {
			t.Fatalf("%s: attack time %v with an attack: %v", o, tr.W.AttackTime, adv)
		}
	}
}

func TestTrainingLearnsAndValidationKeepsBest(t *testing.T) {
	c := tinyConfig(t)
	c.Objective, c.Steps, c.Batch = "plain", 60, 16
	c.ModelConfig = models.Config{"conv1": 4, "conv2": 8, "hidden": 32}
	c.Optimizer, c.LR, c.EMA, c.WeightDecay = "adam", 0.01, 0, 0
	c.ValidateEvery, c.ValidateExamples = 30, 20
	tr := newTrainer(t, c)
	var first, last float64
	tr.OnStep = func(step int64, terms objective.Terms) {
		if step == 0 {
			first = terms.Loss
		}
		last = terms.Loss
	}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !(last < first*0.5) {
		t.Fatalf("loss went %v → %v over 60 steps", first, last)
	}
	if _, err := os.Stat(filepath.Join(c.Out, "best.safetensors")); err != nil {
		t.Fatal("no best.safetensors after validation:", err)
	}
}

// nanBatcher serves good batches until step bad, then NaN pixels.
type nanBatcher struct {
	inner *data.Loader
	bad   int64
}

func (n nanBatcher) Batch(step int64, w, ws, b int, x []float32, y []int32) ([]int, error) {
	idx, err := n.inner.Batch(step, w, ws, b, x, y)
	if step >= n.bad {
		x[0] = float32(math.NaN())
	}
	return idx, err
}

func TestNaNLossStopsAndKeepsTheLastGoodCheckpoint(t *testing.T) {
	c := tinyConfig(t)
	c.Objective, c.Steps, c.CheckpointEvery = "plain", 10, 2
	be := cpu.New(cpu.Options{Threads: 1})
	loader := data.NewLoader(datatest.Synthetic(64, 1), data.LoaderOptions{Seed: 1})
	tr, err := NewTrainer(be, c, nanBatcher{loader, 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = tr.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "NaN at step 5") || !strings.Contains(err.Error(), "ckpt-00000004.safetensors") {
		t.Fatalf("got %v", err)
	}
	p, err := checkpoint.ReadPointer(c.Out)
	if err != nil || p.Step != 4 {
		t.Fatalf("latest checkpoint %+v %v, want step 4", p, err)
	}
	c.Resume = true
	if _, err := NewTrainer(be, c, loader, nil); err != nil {
		t.Fatalf("the last good checkpoint does not load: %v", err)
	}
}

func TestPruneKeepsNewest(t *testing.T) {
	c := tinyConfig(t)
	c.Objective, c.Steps, c.CheckpointEvery, c.Keep = "plain", 8, 2, 2
	tr := newTrainer(t, c)
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	m, _ := filepath.Glob(filepath.Join(c.Out, "ckpt-*.safetensors"))
	var names []string
	for _, p := range m {
		names = append(names, filepath.Base(p))
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"ckpt-00000006.safetensors", "ckpt-00000008.safetensors", "ckpt-00000008.state.safetensors", "ckpt-00000008-ema.safetensors"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in %s", want, got)
		}
	}
	if strings.Contains(got, "ckpt-00000004") {
		t.Errorf("old checkpoint kept: %s", got)
	}
}

func TestBadConfigErrors(t *testing.T) {
	cases := map[string]func(*Config){
		"unknown model":     func(c *Config) { c.Model = "vgg" },
		"unknown objective": func(c *Config) { c.Objective = "alpp" },
		"λ must be":         func(c *Config) { c.PairWeight = -1 },
		"eps must be in":    func(c *Config) { c.Eps = 1.5 },
		"step size must":    func(c *Config) { c.StepSize = 0 },
		"--batch":           func(c *Config) { c.Batch = 0 },
		"--ema":             func(c *Config) { c.EMA = 1 },
		"exclude each":      func(c *Config) { c.Resume, c.InitFrom = true, "x" },
		"unknown optimizer": func(c *Config) { c.Optimizer = "adagrad" },
	}
	for want, mod := range cases {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

func TestInitFromAnotherArchitectureFails(t *testing.T) {
	be := nntest.Backends()[0]
	other, _ := models.New(be, "resnet9", models.Config{"width": 2})
	path := filepath.Join(t.TempDir(), "r.safetensors")
	if err := other.StateDict().WriteFileAtomic(path); err != nil {
		t.Fatal(err)
	}
	c := tinyConfig(t)
	c.InitFrom = path
	_, err := NewTrainer(be, c, data.NewLoader(datatest.Synthetic(8, 1), data.LoaderOptions{}), nil)
	if err == nil || !strings.Contains(err.Error(), "holds a resnet9, not a madry-mnist") {
		t.Fatalf("got %v", err)
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte("objective: mpgd\nbatch: 7\neps: 0.2\n"), 0o644)
	c := DefaultConfig()
	if err := c.Load(p); err != nil {
		t.Fatal(err)
	}
	if c.Objective != "mpgd" || c.Batch != 7 || c.Eps != 0.2 || c.Model != "madry-mnist" {
		t.Fatalf("loaded %+v", c)
	}
	os.WriteFile(p, []byte("objectiv: mpgd\n"), 0o644)
	if err := c.Load(p); err == nil || !strings.Contains(err.Error(), "objectiv") {
		t.Fatalf("unknown key: %v", err)
	}
}
