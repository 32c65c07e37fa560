package paramserver

import (
	"context"
	"github.com/logitpair/logitpair/pkg/train"
	"path/filepath"
	"slices"
	"testing"

	"github.com/logitpair/logitpair/pkg/optim"
)

// testCluster is a tiny in-process cluster: shards from Partition of a
// madry-shaped layout, all buffers on shard 0.
type testCluster struct {
	shards []*Shard
	total  int
	nbuf   int
}

const replayWorkers, replayBufs = 5, 6

func newTestCluster(t *testing.T, store Store) *testCluster {
	t.Helper()
	l := smallLayout()
	parts, err := Partition(l, 3)
	if err != nil {
		t.Fatal(err)
	}
	base := baseConfig(optim.KindRMSProp, l.Total, replayWorkers)
	base.Schedule, base.LR = "step:3:0.9", 0.02
	base.WeightDecay, base.Decay = 0.005, train.DecayMask(l)
	ema := optim.DefaultEMA()
	base.EMA = &ema
	init, initBuf := vec(l.Total, 0.2, 42), vec(replayBufs, 1, 43)
	c := &testCluster{total: l.Total, nbuf: replayBufs}
	for _, p := range parts {
		cfg := ConfigFor(base, p, replayBufs)
		cfg.InitBuffers = initBuf[cfg.BufLo:cfg.BufHi]
		c.shards = append(c.shards, mustShard(t, cfg, init[cfg.Lo:cfg.Hi], store))
	}
	return c
}

// pull assembles the whole parameter and buffer vectors at step.
func (c *testCluster) pull(ctx context.Context, step int64) ([]float32, []float32, error) {
	params, bufs := make([]float32, c.total), make([]float32, c.nbuf)
	for _, s := range c.shards {
		p, b, err := s.Pull(ctx, step)
		if err != nil {
			return nil, nil, err
		}
		cfg := s.Config()
		copy(params[cfg.Lo:cfg.Hi], p)
		copy(bufs[cfg.BufLo:cfg.BufHi], b)
	}
	return params, bufs, nil
}

// workerStep is a worker's deterministic "training step": a function of
// the pulled parameters and buffers, the step and the worker slot (as a
// real worker's is of its batch and attack seed).
func workerStep(params, bufs []float32, step int64, w int) (grad, newBufs []float32) {
	noise := vec(len(params), 1, 77, uint64(step), uint64(w))
	grad = make([]float32, len(params))
	for i, p := range params {
		grad[i] = float32(0.3*p) + noise[i]
	}
	batch := vec(len(bufs), 1, 78, uint64(step), uint64(w))
	newBufs = make([]float32, len(bufs))
	for i, b := range bufs {
		newBufs[i] = float32(0.9*b) + float32(0.1*batch[i]) // a running mean
	}
	return grad, newBufs
}

// run drives steps [from, to) with every worker pushing and the
// coordinator logging the set before applying it.
func (c *testCluster) run(t *testing.T, log CommitLog, from, to int64, sets func(int64) []int) {
	t.Helper()
	c.runScaled(t, log, from, to, sets, 0)
}

// runScaled is run with every step's learning rate scaled by lrScale.
func (c *testCluster) runScaled(t *testing.T, log CommitLog, from, to int64, sets func(int64) []int, lrScale float64) {
	t.Helper()
	ctx := testCtx(t)
	for step := from; step < to; step++ {
		params, bufs, err := c.pull(ctx, step)
		if err != nil {
			t.Fatal(err)
		}
		// Workers push in a step-dependent order; backups push too.
		order := []int{4, 0, 3, 1, 2}
		for range step % 5 {
			order = append(order[1:], order[0])
		}
		for _, w := range order {
			g, b := workerStep(params, bufs, step, w)
			for _, s := range c.shards {
				cfg := s.Config()
				mustPush(t, s, step, w, g[cfg.Lo:cfg.Hi], b[cfg.BufLo:cfg.BufHi])
			}
		}
		set := sets(step)
		if err := log.Append(Entry{Step: step, Workers: set, LRScale: lrScale}); err != nil {
			t.Fatal(err)
		}
		for _, s := range c.shards {
			if err := s.ApplyScaled(step, set, lrScale); err != nil {
				t.Fatalf("ApplyScaled(%d, %v, %v): %v", step, set, lrScale, err)
			}
		}
	}
}

// grads is Replay's callback for this cluster: it pulls the replaying
// shards' parameters at step (they are there by then) and runs workerStep.
func (c *testCluster) grads(t *testing.T) func(int64, int) ([]float32, []float32) {
	ctx := testCtx(t)
	return func(step int64, w int) ([]float32, []float32) {
		params, bufs, err := c.pull(ctx, step)
		if err != nil {
			t.Fatalf("replay pull %d: %v", step, err)
		}
		return workerStep(params, bufs, step, w)
	}
}

func (c *testCluster) states() []ShardState {
	var out []ShardState
	for _, s := range c.shards {
		out = append(out, s.Checkpoint())
	}
	return out
}

func sameCluster(t *testing.T, what string, got, want *testCluster) {
	t.Helper()
	g, w := got.states(), want.states()
	for i := range g {
		sameState(t, what, g[i], w[i])
	}
}

var replaySets = [][]int{{0, 1, 2}, {1, 2, 4}, {0, 3}, {0, 1, 2, 3, 4}, {2}, {0, 2, 4}, {1, 3, 4}, {3}}

func replaySet(step int64) []int { return replaySets[step%int64(len(replaySets))] }

func TestReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "commit.log")
	log, err := OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	orig := newTestCluster(t, nil)
	orig.run(t, log, 0, 12, replaySet)
	log.Close()

	reopened, err := OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	entries := mustEntries(t, reopened)
	if len(entries) != 12 {
		t.Fatalf("%d entries", len(entries))
	}
	fresh := newTestCluster(t, nil)
	if err := Replay(entries, fresh.shards, fresh.grads(t)); err != nil {
		t.Fatal(err)
	}
	sameCluster(t, "replayed", fresh, orig)
	// The sets matter: replaying with one set changed diverges.
	other := newTestCluster(t, nil)
	changed := slices.Clone(entries)
	changed[5] = Entry{Step: 5, Workers: []int{0, 1}}
	if err := Replay(changed, other.shards, other.grads(t)); err != nil {
		t.Fatal(err)
	}
	if slices.Equal(other.states()[0].Params, orig.states()[0].Params) {
		t.Error("a different set gave the same parameters")
	}
	// Replaying again is a no-op: every shard is past every step.
	if err := Replay(entries, fresh.shards, func(int64, int) ([]float32, []float32) {
		t.Fatal("grads called for an applied step")
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestReplayFromCheckpoint: a cluster rolled back to a checkpoint (shards
// restored, log truncated) recomputes the lost steps identically, and
// replaying the whole log onto shards loaded from the checkpoint skips the
// steps before it.
func TestReplayFromCheckpoint(t *testing.T) {
	store := NewMemStore()
	log := NewMemLog()
	orig := newTestCluster(t, store)
	orig.run(t, log, 0, 5, replaySet)
	for _, s := range orig.shards {
		if err := s.Save(); err != nil {
			t.Fatal(err)
		}
	}
	orig.run(t, log, 5, 10, replaySet)
	entries := mustEntries(t, log)

	// Shards loaded from the store start at version 5.
	loaded := newTestCluster(t, store)
	for _, s := range loaded.shards {
		if v := s.Version(); v != 5 {
			t.Fatalf("loaded shard at version %d", v)
		}
	}
	if err := Replay(entries, loaded.shards, loaded.grads(t)); err != nil {
		t.Fatal(err)
	}
	sameCluster(t, "replayed from checkpoint", loaded, orig)

	// Rollback of the original cluster: restore, truncate, run again.
	for _, s := range orig.shards {
		st, _, _ := store.Load(s.Config().Index)
		if err := s.Restore(st); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.TruncateAfter(4); err != nil {
		t.Fatal(err)
	}
	orig.run(t, log, 5, 10, replaySet)
	sameCluster(t, "rolled back and rerun", orig, loaded)
	if got := mustEntries(t, log); !entriesEqual(got, entries) {
		t.Errorf("log after rollback %v, want %v", got, entries)
	}

	// A shard behind the log cannot be replayed.
	behind := newTestCluster(t, nil)
	if err := Replay(entries[5:], behind.shards, behind.grads(t)); err == nil {
		t.Error("Replay onto shards behind the log: no error")
	}
}
