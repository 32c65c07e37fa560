package cluster_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/data/datatest"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
)

// ensembleConfig is tinyConfig trained with ensemble-adv against two static
// models written to files; it returns the files' contents too.
func ensembleConfig(t *testing.T) (train.Config, [][]byte) {
	cfg := tinyConfig(t)
	cfg.Objective, cfg.SingleStep, cfg.Steps = "ensemble-adv", "stepll", 6
	dir := t.TempDir()
	var files [][]byte
	for i := int64(0); i < 2; i++ {
		m, err := models.New(cpu.New(cpu.Options{Threads: 1}), cfg.Model, cfg.ModelConfig)
		if err != nil {
			t.Fatal(err)
		}
		m.Init(20 + i)
		p := filepath.Join(dir, fmt.Sprintf("static-%d.safetensors", i))
		f := checkpoint.ModelFile(m, 0, nil)
		if err := f.WriteFileAtomic(p); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		cfg.StaticModels, files = append(cfg.StaticModels, p), append(files, b)
	}
	return cfg, files
}

// staticUnchanged checks that the static model files are byte-identical to
// what was written.
func staticUnchanged(t *testing.T, cfg train.Config, files [][]byte) {
	t.Helper()
	for i, p := range cfg.StaticModels {
		now, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(now, files[i]) {
			t.Fatalf("static model file %s changed (%v)", p, err)
		}
	}
}

// TestEnsembleAdvOneWorkerEqualsLocalTraining: through the in-process
// cluster (one worker, two shards), ensemble-adv loads the static models in
// its worker and reproduces local training bit for bit — local training
// whose static models stay bit-identical to their files
// (train.TestEnsembleAdvStaticModelsNeverChange) — so the cluster worker's
// static models, which shape every second and third step's gradient, did not
// change either; the files are untouched.
func TestEnsembleAdvOneWorkerEqualsLocalTraining(t *testing.T) {
	cfg, files := ensembleConfig(t)
	c := newCluster(t, cfg, 1, 0, 2)
	var sources []int
	c.Work[0].OnStep = func(step int64, terms objective.Terms, _ bool) { sources = append(sources, terms.Source) }
	if err := c.Run(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	got, err := c.Params(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	loader := data.NewLoader(datatest.Synthetic(64, 5), data.LoaderOptions{Seed: uint64(cfg.Seed)})
	tr, err := train.NewTrainer(cpu.New(cpu.Options{Threads: 1}), cfg, loader, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < cfg.Steps; i++ {
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	sameBits(t, "ensemble-adv: cluster vs local training", got, tr.Params())
	for i, want := range []int{0, 1, 2, 0, 1, 2} {
		if i >= len(sources) || sources[i] != want {
			t.Fatalf("cluster worker used sources %v, want round-robin 0 1 2 0 1 2", sources)
		}
	}
	staticUnchanged(t, cfg, files)
	// A fresh load of each file still gives the parameters written.
	for i, p := range cfg.StaticModels {
		ms, err := train.LoadStaticModels(cpu.New(cpu.Options{Threads: 1}), []string{p}, tr.W.Model)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := models.New(cpu.New(cpu.Options{Threads: 1}), cfg.Model, cfg.ModelConfig)
		ref.Init(20 + int64(i))
		a, b := make([]float32, ref.FlatLayout().Total), make([]float32, ref.FlatLayout().Total)
		nn.Gather(ref.Backend, ref.Trainable(), a, false)
		nn.Gather(ms[0].Backend, ms[0].Trainable(), b, false)
		sameBits(t, "static model "+p, b, a)
	}
}

// TestEnsembleAdvWorkersShareTheSchedule: with three workers and the random
// schedule, every worker crafts step t's adversarial batch on the same
// source, the one the schedule names.
func TestEnsembleAdvWorkersShareTheSchedule(t *testing.T) {
	cfg, files := ensembleConfig(t)
	cfg.SourceSchedule, cfg.Steps = "random", 8
	c := newCluster(t, cfg, 3, 0, 2)
	var mu sync.Mutex
	seen := map[int64]map[int]int{} // step → worker → source
	for w, wk := range c.Work {
		wk.OnStep = func(step int64, terms objective.Terms, _ bool) {
			mu.Lock()
			defer mu.Unlock()
			if seen[step] == nil {
				seen[step] = map[int]int{}
			}
			seen[step][w] = terms.Source
		}
	}
	if err := c.Run(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	obj, err := objective.New(nil, cfg.ObjectiveConfig())
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	for step := int64(0); step < cfg.Steps; step++ {
		want := obj.Source(step, train.SourceRNG(cfg.Seed, step))
		if len(seen[step]) != 3 {
			t.Fatalf("step %d computed by %d workers, want 3", step, len(seen[step]))
		}
		for w, s := range seen[step] {
			if s != want {
				t.Fatalf("step %d: worker %d used source %d, the schedule says %d", step, w, s, want)
			}
		}
		used[want] = true
	}
	if len(used) < 2 {
		t.Errorf("8 random steps all used one source")
	}
	staticUnchanged(t, cfg, files)
}
