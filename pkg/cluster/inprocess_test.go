package cluster_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/data/datatest"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/cluster/clustertest"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/safetensors"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
)

func tinyConfig(t testing.TB) train.Config {
	c := train.DefaultConfig()
	c.Dataset = "synthetic"
	c.ModelConfig = models.Config{"conv1": 2, "conv2": 2, "hidden": 8}
	c.Batch, c.Steps = 4, 5
	c.AttackSteps, c.StepSize, c.Eps = 2, 0.05, 0.1
	c.Optimizer, c.LR, c.WeightDecay, c.EMA = "rmsprop", 0.01, 1e-3, 0.9
	c.Out, c.CheckpointEvery, c.LogEvery = t.TempDir(), 0, 0
	return c
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newCluster(t *testing.T, cfg train.Config, w, b, shards int) *clustertest.InProcess {
	t.Helper()
	return newClusterB(t, cfg, w, b, shards)
}

func newClusterB(t testing.TB, cfg train.Config, w, b, shards int) *clustertest.InProcess {
	t.Helper()
	loader := data.NewLoader(datatest.Synthetic(64, 5), data.LoaderOptions{Seed: uint64(cfg.Seed)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := clustertest.NewInProcess(ctx, cfg, clustertest.Options{Workers: w, Backups: b, Shards: shards, Data: loader,
		Backend: func(int) tensor.Backend { return cpu.New(cpu.Options{Threads: 1}) }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// straggle makes worker slow(t) of every step t a straggler: its pushes wait
// until the coordinator has decided step t without it.
func straggle(c *clustertest.InProcess, slow func(step int64) int) {
	for _, s := range c.Shards {
		s.BeforePush = func(ctx context.Context, step int64, w int) error {
			if w != slow(step) {
				return nil
			}
			for c.Coord.Status().Step <= step {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(2 * time.Millisecond):
				}
			}
			return nil
		}
	}
}

func sameBits(t *testing.T, what string, a, b []float32) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: lengths %d and %d", what, len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("%s: element %d: %v vs %v", what, i, a[i], b[i])
		}
	}
}

// TestOneWorkerEqualsLocalTraining (issue 5, test a): one worker, no backup,
// two shards, K steps of ALP with RMSProp, weight decay and EMA give
// bit-identical parameters to `logitpair train` with the same seed. So do
// 17 shards (the design card's --ps), which cut most of the tiny model's
// tensors, decayed kernels included: weight decay, added by the shards over
// the mask clipped to each range, reaches exactly the decayed elements.
// With --wire-format bf16 both round every gradient value to bfloat16 and
// still agree; their parameters differ from float32 training's.
func TestOneWorkerEqualsLocalTraining(t *testing.T) {
	var float32Params []float32
	for _, tc := range []struct {
		shards int
		format string
	}{{2, "float32"}, {17, "float32"}, {2, "bf16"}} {
		shards := tc.shards
		t.Run(fmt.Sprintf("%d shards %s", shards, tc.format), func(t *testing.T) {
			cfg := tinyConfig(t)
			cfg.WireFormat = tc.format
			c := newCluster(t, cfg, 1, 0, shards)
			if shards == 17 && !cutsADecayedTensor(c.Layout) {
				t.Fatal("no shard edge falls inside a decayed tensor: the test would not check split weight decay")
			}
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
			sameBits(t, "cluster vs local training", got, tr.Params())
			switch {
			case tc.format == "float32":
				float32Params = got
			case float32Params != nil && slices.Equal(got, float32Params):
				t.Fatal("bf16 gradients trained the same parameters as float32 ones: nothing was rounded")
			}
			entries, _ := c.Log.Entries()
			if len(entries) != int(cfg.Steps) {
				t.Fatalf("commit log has %d entries, want %d", len(entries), cfg.Steps)
			}
		})
	}
}

// cutsADecayedTensor reports whether a shard edge of l falls strictly inside
// a tensor that weight decay applies to.
func cutsADecayedTensor(l *cluster.Layout) bool {
	for _, s := range l.Shards[1:] {
		for _, r := range l.Params.Ranges {
			if r.Role.Decayed() && r.Offset < s.Lo && s.Lo < r.Offset+r.Size {
				return true
			}
		}
	}
	return false
}

// TestBackupsDropTheStraggler (test b): W = 3 with b = 1 and worker 2 slowed
// until each step has been decided: every step uses exactly N = 2 gradients,
// never worker 2's, whose late gradients are dropped and counted.
func TestBackupsDropTheStraggler(t *testing.T) {
	cfg := tinyConfig(t)
	c := newCluster(t, cfg, 3, 1, 2)
	straggle(c, func(int64) int { return 2 })
	if err := c.Run(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	entries, _ := c.Log.Entries()
	if len(entries) != int(cfg.Steps) {
		t.Fatalf("%d log entries for %d steps", len(entries), cfg.Steps)
	}
	for _, e := range entries {
		if len(e.Workers) != 2 || e.Workers[0] != 0 || e.Workers[1] != 1 {
			t.Fatalf("step %d used workers %v, want [0 1]", e.Step, e.Workers)
		}
	}
	var stale int64
	for _, s := range c.Shards {
		st := s.S.Stats()
		stale += st.Rejected.Stale
		if st.Applied != cfg.Steps {
			t.Fatalf("shard applied %d steps", st.Applied)
		}
	}
	if stale == 0 {
		t.Fatal("the straggler's late gradients were not counted as stale")
	}
}

// TestReplayReproducesTheRun (test f): replaying the recorded commit log on
// fresh shards from the initial state, with each listed worker's gradient
// recomputed from (seed, step, slot), gives the run's parameters bit for bit.
func TestReplayReproducesTheRun(t *testing.T) {
	cfg := tinyConfig(t)
	c := newCluster(t, cfg, 3, 1, 3)
	if err := c.Run(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	want, _ := c.Params(ctxFor(t))
	entries, _ := c.Log.Entries()

	fresh := newCluster(t, cfg, 3, 1, 3)
	shards := make([]*paramserver.Shard, len(fresh.Shards))
	for k, s := range fresh.Shards {
		shards[k] = s.S
	}
	be := cpu.New(cpu.Options{Threads: 1})
	m, _ := models.New(be, cfg.Model, cfg.ModelConfig)
	wcfg := cfg
	wcfg.WeightDecay = 0
	loader := data.NewLoader(datatest.Synthetic(64, 5), data.LoaderOptions{Seed: uint64(cfg.Seed)})
	tw, _ := train.NewWorker(wcfg, m, loader)
	err := paramserver.Replay(entries, shards, func(step int64, w int) ([]float32, []float32) {
		p, _ := fresh.Params(ctxFor(t))
		nn.Scatter(be, m.Trainable(), p)
		g := make([]float32, len(p))
		if _, err := tw.Gradient(step, w, 3, g); err != nil {
			t.Fatal(err)
		}
		return g, []float32{}
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := fresh.Params(ctxFor(t))
	sameBits(t, "replayed run", got, want)
}

// TestLocalTrainingResumesAClusterCheckpoint: a one-worker cluster's
// consistent checkpoint (model, EMA and optimizer state gathered from the
// shards in local training's format) is resumed by `logitpair train
// --resume`, and the result equals local training straight through.
// The model, EMA and optimizer state are assembled from 2 shards and from
// 17, whose ranges split tensors.
func TestLocalTrainingResumesAClusterCheckpoint(t *testing.T) {
	for _, shards := range []int{2, 17} {
		t.Run(fmt.Sprintf("%d shards", shards), func(t *testing.T) { resumeClusterCheckpoint(t, shards) })
	}
}

func resumeClusterCheckpoint(t *testing.T, shards int) {
	cfg := tinyConfig(t)
	cfg.Steps, cfg.CheckpointEvery = 4, 2
	dir := t.TempDir()
	loader := data.NewLoader(datatest.Synthetic(64, 5), data.LoaderOptions{Seed: uint64(cfg.Seed)})
	c, err := clustertest.NewInProcess(ctxFor(t), cfg, clustertest.Options{Workers: 1, Backups: 0, Shards: shards, Data: loader, CheckpointDir: dir,
		Backend: func(int) tensor.Backend { return cpu.New(cpu.Options{Threads: 1}) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	p, err := checkpoint.ReadPointer(dir)
	if err != nil || p.Step != 4 || p.EMA == "" {
		t.Fatalf("latest checkpoint %+v %v", p, err)
	}
	// The cluster's checkpoints record the compute: 4 steps of 4 examples
	// on 1 worker, ALP with PGD-2 (4 forward and 4 backward passes per
	// example), 64 training examples.
	f, err := safetensors.ReadFile(filepath.Join(dir, p.Model))
	if err != nil {
		t.Fatal(err)
	}
	got, err := checkpoint.ReadCompute(f.Metadata)
	if err != nil || got == nil || !(got.WallSeconds > 0) {
		t.Fatalf("cluster checkpoint compute %+v, %v", got, err)
	}
	wall := got.WallSeconds
	want := checkpoint.Compute{WallSeconds: wall, Steps: 4, ExamplesSeen: 16, ForwardPasses: 64, BackwardPasses: 64}.WithDataset(64)
	if *got != want {
		t.Fatalf("cluster checkpoint compute %+v, want %+v", *got, want)
	}
	// A later coordinator continues from the newest checkpoint's accounting.
	now := time.Unix(100, 0)
	mw := &cluster.ModelWriter{Dir: dir, Cfg: cfg}
	if err := mw.StartCompute(2, 64, func() time.Time { return now }); err != nil {
		t.Fatal(err)
	}
	now = now.Add(7 * time.Second)
	if c, ok := mw.Compute(6); !ok || c != (checkpoint.Compute{WallSeconds: wall + 7, Steps: 6, ExamplesSeen: 32, ForwardPasses: 128, BackwardPasses: 128}.WithDataset(64)) {
		t.Fatalf("the next coordinator's compute at step 6: %+v, %v", c, ok)
	}
	resumed := cfg
	resumed.Steps, resumed.Resume, resumed.Out = 6, true, dir
	tr, err := train.NewTrainer(cpu.New(cpu.Options{Threads: 1}), resumed, loader, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Step != 4 {
		t.Fatalf("resumed at step %d", tr.Step)
	}
	for tr.Step < 6 {
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	straight := cfg
	straight.Steps = 6
	ref, _ := train.NewTrainer(cpu.New(cpu.Options{Threads: 1}), straight, loader, nil)
	for ref.Step < 6 {
		if _, err := ref.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	if c, ok := tr.Compute(); !ok || c.Steps != 6 || c.ForwardPasses != 96 || c.WallSeconds != wall {
		t.Errorf("local training resumed from the cluster checkpoint: compute %+v, %v; want 6 steps, 96 forward passes, %v s", c, ok, wall)
	}
	sameBits(t, "cluster checkpoint resumed locally", tr.Params(), ref.Params())
	sameBits(t, "EMA", tr.EMA.Values(), ref.EMA.Values())
}

// TestModelWriterSparesTheKeptCheckpoint: the coordinator's checkpoint
// files of the step KeepCheckpoint names survive the pruning to the
// --keep newest (as the shards' states do); without the name it is pruned.
func TestModelWriterSparesTheKeptCheckpoint(t *testing.T) {
	for _, kept := range []bool{true, false} {
		t.Run(fmt.Sprintf("kept=%v", kept), func(t *testing.T) {
			cfg := tinyConfig(t)
			cfg.Steps, cfg.CheckpointEvery, cfg.Keep = 8, 2, 1
			dir := t.TempDir()
			loader := data.NewLoader(datatest.Synthetic(64, 5), data.LoaderOptions{Seed: uint64(cfg.Seed)})
			c, err := clustertest.NewInProcess(ctxFor(t), cfg, clustertest.Options{Workers: 1, Backups: 0, Shards: 2, Data: loader, CheckpointDir: dir,
				Backend: func(int) tensor.Backend { return cpu.New(cpu.Options{Threads: 1}) }})
			if err != nil {
				t.Fatal(err)
			}
			if kept {
				c.Coord.KeepCheckpoint(2)
			}
			if err := c.Run(ctxFor(t)); err != nil {
				t.Fatal(err)
			}
			steps, err := checkpoint.Steps(dir)
			if err != nil {
				t.Fatal(err)
			}
			want := []int64{8}
			if kept {
				want = []int64{8, 2}
			}
			if !slices.Equal(steps, want) {
				t.Fatalf("checkpoints %v, want %v", steps, want)
			}
		})
	}
}
