package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/safetensors"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
)

// sameTensors fails unless files a and b hold the same tensors, byte for byte.
func sameTensors(t *testing.T, what string, a, b *safetensors.File) {
	t.Helper()
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%s: %d tensors vs %d", what, len(a.Tensors), len(b.Tensors))
	}
	for _, ta := range a.Tensors {
		tb, ok := b.Get(ta.Name)
		if !ok || !bytes.Equal(ta.Data, tb.Data) {
			t.Fatalf("%s: tensor %s differs", what, ta.Name)
		}
	}
}

func readST(t *testing.T, path string) *safetensors.File {
	t.Helper()
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestBestCheckpointIsTheBestRobustValidation drives the trainer's
// best-keeping with chosen robust accuracies, 0.3 0.7 0.5 0.7 0.2 0.6 at
// steps 1..6: best.safetensors must stay the model of step 2 (the first
// 0.7) although later validations, worse or tied, ran on other weights;
// a resumed run keeps comparing with the best so far (best.json) and
// replaces it only when beaten.
func TestBestCheckpointIsTheBestRobustValidation(t *testing.T) {
	c := tinyConfig(t)
	c.Objective, c.Steps, c.EMA = "plain", 6, 0
	c.ValidateEvery, c.ValidateExamples, c.CheckpointEvery, c.Keep = 1, 4, 1, 100
	script := map[int64]float64{1: 0.3, 2: 0.7, 3: 0.5, 4: 0.7, 5: 0.2, 6: 0.6, 7: 0.65, 8: 0.9}
	drive := func(tr *Trainer) *bytes.Buffer {
		var log bytes.Buffer
		tr.Progress = &log
		tr.measure = func() (validation, error) {
			return validation{Robust: script[tr.Step], Clean: 1, Attack: "scripted", Examples: 4}, nil
		}
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return &log
	}
	log := drive(newTrainer(t, c))
	if n := strings.Count(log.String(), "validation at step"); n != 6 {
		t.Fatalf("%d validations, want 6:\n%s", n, log)
	}
	checkBest := func(step int64, acc string) {
		t.Helper()
		var bj struct {
			Step int64   `json:"step"`
			Acc  float64 `json:"robust_accuracy"`
		}
		b, err := os.ReadFile(filepath.Join(c.Out, "best.json"))
		if err != nil || json.Unmarshal(b, &bj) != nil || bj.Step != step {
			t.Fatalf("best.json %s (%v), want step %d", b, err, step)
		}
		best := readST(t, filepath.Join(c.Out, "best.safetensors"))
		if best.Metadata["step"] != itoa(step) || best.Metadata["robust_accuracy"] != acc {
			t.Fatalf("best.safetensors metadata step %s robust %s, want %d %s", best.Metadata["step"], best.Metadata["robust_accuracy"], step, acc)
		}
		sameTensors(t, "best.safetensors vs the checkpoint of its step", best, readST(t, filepath.Join(c.Out, checkpoint.ModelFileName(step))))
	}
	checkBest(2, "0.700000")
	// The later checkpoints really hold other weights (so the comparison bites).
	a, b := readST(t, filepath.Join(c.Out, checkpoint.ModelFileName(2))), readST(t, filepath.Join(c.Out, checkpoint.ModelFileName(5)))
	if bytes.Equal(a.Tensors[0].Data, b.Tensors[0].Data) && bytes.Equal(a.Tensors[len(a.Tensors)-1].Data, b.Tensors[len(b.Tensors)-1].Data) {
		t.Fatal("steps 2 and 5 have the same weights")
	}

	// Resumed: 0.65 at step 7 does not beat 0.7; 0.9 at step 8 does.
	c.Resume, c.Steps = true, 7
	drive(newTrainer(t, c))
	checkBest(2, "0.700000")
	c.Steps = 8
	drive(newTrainer(t, c))
	checkBest(8, "0.900000")
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestInitFromStartsFromTheGivenWeights: with --init-from the trainer's
// parameters before the first step are exactly the file's (not the seed's
// initialization), and its first step is bit for bit the step of a trainer
// whose model was loaded with those weights by hand.
func TestInitFromStartsFromTheGivenWeights(t *testing.T) {
	be := cpu.New(cpu.Options{Threads: 1})
	c := tinyConfig(t)
	c.Objective, c.EMA = "alp", 0
	src, err := models.New(be, c.Model, c.ModelConfig)
	if err != nil {
		t.Fatal(err)
	}
	src.Init(99)
	path := filepath.Join(t.TempDir(), "init.safetensors")
	file := src.StateDict()
	if err := file.WriteFileAtomic(path); err != nil {
		t.Fatal(err)
	}
	want := make([]float32, src.FlatLayout().Total)
	nn.Gather(be, src.Trainable(), want, false)

	ci := c
	ci.InitFrom = path
	a := newTrainer(t, ci)
	bits(t, "parameters before the first step", a.Params(), want)
	seeded := newTrainer(t, c)
	if math.Float32bits(seeded.Params()[0]) == math.Float32bits(want[0]) {
		t.Fatal("the seed's initialization equals the file's: the test proves nothing")
	}
	// Reference: the seeded trainer with the file's weights loaded by hand.
	if err := seeded.W.Model.LoadStateDict(file, path); err != nil {
		t.Fatal(err)
	}
	nn.Gather(be, seeded.W.Model.Trainable(), seeded.params, false)
	ta, err := a.TrainStep()
	if err != nil {
		t.Fatal(err)
	}
	tb, err := seeded.TrainStep()
	if err != nil {
		t.Fatal(err)
	}
	if ta.Loss != tb.Loss {
		t.Fatalf("first-step loss %v, from the file's weights %v", ta.Loss, tb.Loss)
	}
	bits(t, "parameters after the first step", a.Params(), seeded.Params())
}

// TestWeightDecayIsInTheReportedLoss: with --weight-decay wd the step's
// loss is the objective's plus wd·½·Σθ² over the conv and dense kernels
// (summed here from the layout's decayed ranges), while the gradient is
// unchanged: the objective's plus float32(wd)·θ on those kernels.
func TestWeightDecayIsInTheReportedLoss(t *testing.T) {
	const wd = 0.05
	c := tinyConfig(t)
	c.Objective, c.EMA, c.WeightDecay = "plain", 0, 0
	plain := newTrainer(t, c)
	c.WeightDecay = wd
	decayed := newTrainer(t, c)
	bits(t, "same initialization", plain.Params(), decayed.Params())

	var sum float64
	decayedElem := make([]bool, len(plain.Params()))
	kernels := 0
	for _, r := range plain.W.Layout().Ranges {
		if !r.Role.Decayed() {
			continue
		}
		if strings.HasSuffix(r.Name, "bias") {
			t.Fatalf("bias %s is decayed", r.Name)
		}
		kernels++
		for i, v := range plain.Params()[r.Offset : r.Offset+r.Size] {
			sum += float64(v) * float64(v)
			decayedElem[r.Offset+i] = true
		}
	}
	if kernels != 4 { // conv1, conv2, fc1, fc2 weights of madry-mnist
		t.Fatalf("%d decayed tensors, want 4", kernels)
	}
	g0 := make([]float32, len(plain.Params()))
	g1 := make([]float32, len(g0))
	t0, err := plain.W.Gradient(0, 0, 1, g0)
	if err != nil {
		t.Fatal(err)
	}
	t1, err := decayed.Gradient()
	if err != nil {
		t.Fatal(err)
	}
	copy(g1, decayed.Grad())
	l2 := wd * 0.5 * sum
	if l2 < 1e-4 {
		t.Fatalf("weight-decay term %v too small to see", l2)
	}
	if math.Abs(t1.Loss-(t0.Loss+l2)) > 1e-12*(1+t0.Loss) {
		t.Fatalf("loss with weight decay %v, want objective %v + wd·½Σθ² %v = %v", t1.Loss, t0.Loss, l2, t0.Loss+l2)
	}
	if t1.CleanCE != t0.CleanCE {
		t.Fatalf("clean CE changed by weight decay: %v vs %v", t1.CleanCE, t0.CleanCE)
	}
	for i, p := range decayed.Params() {
		want := g0[i]
		if decayedElem[i] {
			want += float32(float32(wd) * p)
		}
		if math.Float32bits(g1[i]) != math.Float32bits(want) {
			t.Fatalf("gradient %d = %v, want %v (decayed %v)", i, g1[i], want, decayedElem[i])
		}
	}
	// The trainer reports (OnStep, progress) the same loss.
	ts, err := decayed.TrainStep()
	if err != nil || ts.Loss != t1.Loss {
		t.Fatalf("TrainStep loss %v (%v), want %v", ts.Loss, err, t1.Loss)
	}

	// A weight-decay term that overflows is a non-finite loss, caught
	// before the optimizer step (the objective's own loss is finite).
	if !(sum > 2) {
		t.Fatalf("Σθ² = %v: too small to overflow", sum)
	}
	c.WeightDecay = math.MaxFloat64
	huge := newTrainer(t, c)
	_, err = huge.TrainStep()
	var nf *NonFiniteError
	if !errors.As(err, &nf) || !math.IsInf(nf.Terms.Loss, 1) || math.IsInf(nf.Terms.CleanCE, 0) {
		t.Fatalf("overflowing weight decay: %v", err)
	}
}

// TestFlagsOverrideConfigFile: flags given on the command line win over the
// --config file, lists included (a list flag's printed value does not
// parse back, and setting a changed list appends); keys only in the file
// are taken from it.
func TestFlagsOverrideConfigFile(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"c.yaml": "objective: ensemble-adv\nbatch: 7\neps: 0.2\nstatic-models: [file.safetensors]\nmodel-config: {conv1: 3}\n",
		"c.json": `{"objective": "ensemble-adv", "batch": 7, "eps": 0.2, "static-models": ["file.safetensors"], "model-config": {"conv1": 3}}`,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		c := DefaultConfig()
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		finalize := BindFlags(fs, &c)
		if err := fs.Parse([]string{"--config", p, "--eps", "0.25", "--static-models", "a.safetensors,b.safetensors", "--model-config", `{"conv1": 5}`}); err != nil {
			t.Fatal(err)
		}
		if err := finalize(); err != nil {
			t.Fatal(err)
		}
		if c.Objective != "ensemble-adv" || c.Batch != 7 || c.Eps != 0.25 || c.ModelConfig["conv1"] != 5 ||
			strings.Join(c.StaticModels, " ") != "a.safetensors b.safetensors" {
			t.Fatalf("%s: got objective %s batch %d eps %v model-config %v static-models %q", name, c.Objective, c.Batch, c.Eps, c.ModelConfig, c.StaticModels)
		}
		// Without the flags, the file's values.
		c = DefaultConfig()
		fs = pflag.NewFlagSet("t", pflag.ContinueOnError)
		finalize = BindFlags(fs, &c)
		if err := fs.Parse([]string{"--config", p}); err != nil {
			t.Fatal(err)
		}
		if err := finalize(); err != nil {
			t.Fatal(err)
		}
		if c.Eps != 0.2 || strings.Join(c.StaticModels, " ") != "file.safetensors" || c.ModelConfig["conv1"] != 3 {
			t.Fatalf("%s: file values not taken: eps %v static-models %q model-config %v", name, c.Eps, c.StaticModels, c.ModelConfig)
		}
	}
}
