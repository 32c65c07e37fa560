package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/cluster/clustertest"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/data/datatest"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
)

// bnConfig is tinyConfig with a model that has batch-norm running
// statistics: a width-1 resnet-v2-50 on the 1×28×28 synthetic images (16
// pre-activation blocks, 49 batch norms, a few hundred buffer values).
func bnConfig(t testing.TB) train.Config {
	c := tinyConfig(t)
	c.Model = "resnet-v2-50"
	c.ModelConfig = models.Config{"width": 1, "classes": 10, "in_channels": 1, "image_size": 28}
	c.Steps = 6
	return c
}

// newInProcessWithLog is newClusterB with the coordinator writing to clog
// (a file log, as the coordinator binary writes commit.log).
func newInProcessWithLog(t *testing.T, cfg train.Config, workers, backups, nshards int, clog paramserver.CommitLog) *clustertest.InProcess {
	t.Helper()
	loader := data.NewLoader(datatest.Synthetic(64, 5), data.LoaderOptions{Seed: uint64(cfg.Seed)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := clustertest.NewInProcess(ctx, cfg, clustertest.Options{Workers: workers, Backups: backups, Shards: nshards, Data: loader, Log: clog,
		Backend: func(int) tensor.Backend { return cpu.New(cpu.Options{Threads: 1}) }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// replayOnto replays entries onto fresh's shards the way an operator would:
// one model, for each (step, worker) it loads the shards' step-t parameters
// and buffers, recomputes that worker's gradient from (seed, step, slot) and
// hands back the gradient and the buffers its training forward pass left.
func replayOnto(t *testing.T, cfg train.Config, workers int, entries []paramserver.Entry, fresh *clustertest.InProcess) {
	t.Helper()
	be := cpu.New(cpu.Options{Threads: 1})
	m, err := models.New(be, cfg.Model, cfg.ModelConfig)
	if err != nil {
		t.Fatal(err)
	}
	tw, err := train.NewWorker(cfg, m, data.NewLoader(datatest.Synthetic(64, 5), data.LoaderOptions{Seed: uint64(cfg.Seed)}))
	if err != nil {
		t.Fatal(err)
	}
	shards := make([]*paramserver.Shard, len(fresh.Shards))
	for k, s := range fresh.Shards {
		shards[k] = s.S
	}
	if err := clustertest.Replay(ctxFor(t), entries, shards, m, tw, workers); err != nil {
		t.Fatal(err)
	}
}

// sameShardState fails unless two shards' complete states (version,
// parameters, batch-norm buffers, optimizer slots, EMA) agree bit for bit.
func sameShardState(t *testing.T, what string, got, want paramserver.ShardState) {
	t.Helper()
	if got.Version != want.Version || got.OptimKind != want.OptimKind || len(got.Optim) != len(want.Optim) {
		t.Fatalf("%s: version %d %s with %d slots, want %d %s with %d", what,
			got.Version, got.OptimKind, len(got.Optim), want.Version, want.OptimKind, len(want.Optim))
	}
	sameBits(t, what+": parameters", got.Params, want.Params)
	sameBits(t, what+": batch-norm buffers", got.Buffers, want.Buffers)
	sameBits(t, what+": EMA", got.EMA, want.EMA)
	for i := range got.Optim {
		if got.Optim[i].Name != want.Optim[i].Name {
			t.Fatalf("%s: optimizer slot %d is %q, want %q", what, i, got.Optim[i].Name, want.Optim[i].Name)
		}
		sameBits(t, what+": optimizer "+got.Optim[i].Name, got.Optim[i].Data, want.Optim[i].Data)
	}
}

// TestReplayOfTheFileLogReproducesTheRun (issue 5, test f, as an operator
// would do it): a 3-worker, 1-backup, 3-shard run of a model with batch
// norm records its commit log in a file; in step t worker t mod 3 is held
// back until the step is decided, so every step's set leaves out a
// different worker. The file is closed and reopened, and replaying its
// entries on fresh shards from the initial state, each listed worker's
// gradient and buffers recomputed from (seed, step, slot), reproduces every
// shard's parameters, batch-norm running statistics (averaged over the
// logged set), EMA and RMSProp state bit for bit. Replaying the same log
// with one step's set changed does not: the set matters.
func TestReplayOfTheFileLogReproducesTheRun(t *testing.T) {
	const workers, backups, nshards = 3, 1, 3
	cfg := bnConfig(t)
	path := filepath.Join(t.TempDir(), "commit.log")
	flog, err := paramserver.OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { flog.Close() }) // a second Close is a no-op
	c := newInProcessWithLog(t, cfg, workers, backups, nshards, flog)
	if c.Layout.Buffers.Total == 0 {
		t.Fatal("the model has no batch-norm buffers")
	}
	straggle(c, func(step int64) int { return int(step % workers) })
	if err := c.Run(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	want := make([]paramserver.ShardState, nshards)
	for k, s := range c.Shards {
		want[k] = s.S.Checkpoint()
	}
	recorded, err := flog.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if err := flog.Close(); err != nil {
		t.Fatal(err)
	}
	if slices.Equal(want[0].Buffers, c.Layout.InitBuffers) {
		t.Fatal("the run left the batch-norm buffers at their initial values")
	}

	// The operator's side: only the file.
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("commit log file: %v %v", fi, err)
	}
	reopened, err := paramserver.OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := reopened.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if err := reopened.Close(); err != nil {
		t.Fatal(err)
	}
	if len(entries) != int(cfg.Steps) || len(recorded) != len(entries) {
		t.Fatalf("reopened log has %d entries (%d recorded) for %d steps", len(entries), len(recorded), cfg.Steps)
	}
	all := []int{0, 1, 2}
	distinct := map[string]bool{}
	for i, e := range entries {
		if e.Step != int64(i) || !slices.Equal(e.Workers, recorded[i].Workers) {
			t.Fatalf("reopened entry %d is %+v, recorded %+v", i, e, recorded[i])
		}
		wantSet := slices.DeleteFunc(slices.Clone(all), func(w int) bool { return int64(w) == e.Step%workers })
		if !slices.Equal(e.Workers, wantSet) {
			t.Fatalf("step %d used workers %v, want %v (worker %d held back)", e.Step, e.Workers, wantSet, e.Step%workers)
		}
		distinct[fmt.Sprint(e.Workers)] = true
	}
	if len(distinct) != workers {
		t.Fatalf("the log's sets %v are not all different; replaying with one fixed set could pass", entries)
	}

	fresh := newClusterB(t, cfg, workers, backups, nshards)
	replayOnto(t, cfg, workers, entries, fresh)
	for k, s := range fresh.Shards {
		sameShardState(t, fmt.Sprintf("replayed shard %d", k), s.S.Checkpoint(), want[k])
	}

	// The same log with step 0's set changed ({1,2} → {0,1}) replays to
	// other parameters and other buffers.
	changed := slices.Clone(entries)
	changed[0] = paramserver.Entry{Step: 0, Workers: []int{0, 1}}
	other := newClusterB(t, cfg, workers, backups, nshards)
	replayOnto(t, cfg, workers, changed, other)
	got := other.Shards[0].S.Checkpoint()
	if slices.Equal(got.Buffers, want[0].Buffers) {
		t.Fatal("replaying with another set gave the same batch-norm buffers: the set did not matter")
	}
	if slices.Equal(got.Params, want[0].Params) {
		t.Fatal("replaying with another set gave the same parameters: the set did not matter")
	}
}

// TestReplayOfARunWithARequestedRollback: a run that the coordinator rolls
// back on request in its middle (as the training sentinel asks when robust
// accuracy collapses), going on from the checkpoint with half the learning
// rate, logs the scale with every later step; replaying its final log on
// fresh shards from the initial state reproduces every shard bit for bit,
// and the same log without the scales does not.
func TestReplayOfARunWithARequestedRollback(t *testing.T) {
	const workers, backups, nshards = 2, 0, 2
	cfg := tinyConfig(t)
	cfg.Steps, cfg.CheckpointEvery = 8, 2
	c := newInProcessWithLog(t, cfg, workers, backups, nshards, nil)
	var asked atomic.Bool
	for _, s := range c.Shards {
		s.BeforePush = func(ctx context.Context, step int64, w int) error {
			if step == 5 && c.Coord.Status().LastCheckpoint == 4 && asked.CompareAndSwap(false, true) {
				if err := c.Coord.RequestRollback(2, 0.5, "test: robust accuracy collapsed"); err != nil {
					t.Error(err)
				}
			}
			return nil
		}
	}
	if err := c.Run(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if st := c.Coord.Status(); st.Rollbacks != 1 || st.LRScale != 0.5 {
		t.Fatalf("after the run %+v, want 1 rollback and scale 0.5", st)
	}
	entries, err := c.Log.Entries()
	if err != nil {
		t.Fatal(err)
	}
	var scales []float64
	for _, e := range entries {
		scales = append(scales, e.LRScale)
	}
	if want := []float64{0, 0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5}; !slices.Equal(scales, want) {
		t.Fatalf("logged scales %v, want %v", scales, want)
	}
	fresh := newClusterB(t, cfg, workers, backups, nshards)
	replayOnto(t, cfg, workers, entries, fresh)
	for k, s := range fresh.Shards {
		sameShardState(t, fmt.Sprintf("replayed shard %d", k), s.S.Checkpoint(), c.Shards[k].S.Checkpoint())
	}
	unscaled := slices.Clone(entries)
	for i := range unscaled {
		unscaled[i].LRScale = 0
	}
	other := newClusterB(t, cfg, workers, backups, nshards)
	replayOnto(t, cfg, workers, unscaled, other)
	if slices.Equal(other.Shards[0].S.Checkpoint().Params, c.Shards[0].S.Checkpoint().Params) {
		t.Fatal("the log without its scales replayed to the same parameters: the scale did not matter")
	}
}
