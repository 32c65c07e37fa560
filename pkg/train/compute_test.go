package train

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/safetensors"
)

// TestStepPassesCountsWhatTheWorkerRuns checks the counting rule against
// hand-computed passes per example and against the passes a worker actually
// runs over a few steps of a tiny model (tinyConfig: PGD with K = 2).
func TestStepPassesCountsWhatTheWorkerRuns(t *testing.T) {
	for _, tc := range []struct {
		name      string
		set       func(c *Config)
		fwd, bwd  int64
		ensembles bool
	}{
		{"plain", func(c *Config) { c.Objective = "plain" }, 1, 1, false},
		{"clp (noise, no attack)", func(c *Config) { c.Objective = "clp" }, 1, 1, false},
		{"pgd K=2", func(c *Config) { c.Objective = "pgd" }, 1 + 2, 1 + 2, false},
		{"alp K=2", func(c *Config) { c.Objective = "alp" }, 2 + 2, 2 + 2, false},
		// 3 restarts of 2 steps, each restart scored; a random target reads the clean logits.
		{"mpgd K=2 R=3 random target", func(c *Config) { c.Objective, c.Restarts, c.AttackTarget = "mpgd", 3, "random" }, 2 + 6 + 3 + 1, 2 + 6, false},
		// The KL attack's clean logits, then K steps.
		{"trades K=2", func(c *Config) { c.Objective = "trades" }, 2 + 1 + 2, 2 + 2, false},
		{"single-step stepll", func(c *Config) { c.Objective, c.SingleStep = "single-step", "stepll" }, 2 + 1 + 1, 2 + 1, false},
		{"single-step fgsm true label, random ε", func(c *Config) { c.Objective, c.SingleStep, c.RandomEps = "single-step", "fgsm", true }, 2 + 1, 2 + 1, false},
		{"ensemble-adv stepll", nil, 2 + 1 + 1, 2 + 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tinyConfig(t)
			if tc.ensembles {
				c, _ = ensembleConfig(t)
			} else {
				tc.set(&c)
			}
			got, err := StepPasses(c)
			if err != nil {
				t.Fatal(err)
			}
			if want := (Passes{Forward: tc.fwd, Backward: tc.bwd}); got != want {
				t.Fatalf("StepPasses = %+v, want %+v", got, want)
			}
			tr := newTrainer(t, c)
			const steps = 3 // ensemble-adv: the trained model and both static models as sources
			for range steps {
				if _, err := tr.TrainStep(); err != nil {
					t.Fatal(err)
				}
			}
			if want := got.Scale(steps * int64(c.Batch)); tr.W.Passes != want {
				t.Fatalf("the worker ran %+v passes in %d steps of %d, the rule says %+v", tr.W.Passes, steps, c.Batch, want)
			}
		})
	}
}

// TestComputeAccumulatesAcrossResume checks the checkpoints' compute
// accounting, its wall time on a clock advanced 5 s per step, and that a
// resumed run continues the restored totals.
func TestComputeAccumulatesAcrossResume(t *testing.T) {
	c := tinyConfig(t) // alp, PGD-2: 4 forward and 4 backward passes per example; 64 training examples
	c.Steps = 3
	clocked := func(tr *Trainer) {
		now := time.Unix(1000, 0)
		tr.acct.now = func() time.Time { return now }
		tr.OnStep = func(int64, objective.Terms) { now = now.Add(5 * time.Second) }
	}
	first := newTrainer(t, c)
	clocked(first)
	if err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Steps, c.Resume = 5, true
	second := newTrainer(t, c)
	clocked(second)
	if err := second.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		step  int64
		steps int64
	}{{3, 3}, {5, 5}} {
		f, err := safetensors.ReadFile(filepath.Join(c.Out, checkpoint.ModelFileName(tc.step)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := checkpoint.ReadCompute(f.Metadata)
		if err != nil || got == nil {
			t.Fatalf("step %d: compute %v, %v", tc.step, got, err)
		}
		ex := tc.steps * 4
		want := checkpoint.Compute{WallSeconds: 5 * float64(tc.steps), Steps: tc.steps, ExamplesSeen: ex,
			ForwardPasses: 4 * ex, BackwardPasses: 4 * ex, DatasetSize: 64,
			ForwardPerExample: float64(4*ex) / 64, BackwardPerExample: float64(4*ex) / 64, PassesPerExample: float64(8*ex) / 64}
		if *got != want {
			t.Fatalf("step %d: compute %+v, want %+v", tc.step, *got, want)
		}
	}
}

// TestComputeUnknownAfterResumingAnOldCheckpoint checks that a run resumed
// from a checkpoint without accounting records none, rather than a count
// that leaves out the steps before the resume.
func TestComputeUnknownAfterResumingAnOldCheckpoint(t *testing.T) {
	c := tinyConfig(t)
	c.Steps = 2
	if err := newTrainer(t, c).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.Out, checkpoint.ModelFileName(2))
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Metadata[checkpoint.MetaCompute]; !ok {
		t.Fatal("the checkpoint has no compute accounting")
	}
	delete(f.Metadata, checkpoint.MetaCompute)
	if err := f.WriteFileAtomic(path); err != nil {
		t.Fatal(err)
	}
	c.Steps, c.Resume = 3, true
	tr := newTrainer(t, c)
	if got, ok := tr.Compute(); ok {
		t.Fatalf("resumed from a checkpoint without accounting, Compute = %+v", got)
	}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, err = safetensors.ReadFile(filepath.Join(c.Out, checkpoint.ModelFileName(3)))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := f.Metadata[checkpoint.MetaCompute]; ok {
		t.Fatalf("step 3 records compute %s after resuming from a checkpoint without it", v)
	}
}
