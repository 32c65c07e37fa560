package node

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/cluster/clustertest"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
)

// replayMatches checks a finished process cluster the way issue 12 asks of
// every fault test: the commit log, replayed from the run's seed onto fresh
// shards (each (step, worker) gradient recomputed from the step's
// parameters), gives bit for bit the parameters, buffers and optimizer
// state each shard saved at the final step.
func replayMatches(t *testing.T, c *Cluster, steps int64) {
	t.Helper()
	dir := filepath.Join(c.L.Dir, "coordinator")
	rec, ok, err := cluster.ReadRunRecord(dir)
	if err != nil || !ok {
		t.Fatalf("run record in %s: %v %v", dir, ok, err)
	}
	cfg, shape := rec.Train, rec.Cluster
	be := cpu.New(cpu.Options{Threads: 1})
	layout, _, err := cluster.NewLayout(be, cfg, shape.PS)
	if err != nil {
		t.Fatal(err)
	}
	shards := make([]*paramserver.Shard, shape.PS)
	for k := range shards {
		sc, init, err := layout.ShardConfig(cfg, k, shape.Workers)
		if err != nil {
			t.Fatal(err)
		}
		if shards[k], err = paramserver.NewShard(sc, init, nil); err != nil {
			t.Fatal(err)
		}
	}
	m, err := models.New(be, cfg.Model, cfg.ModelConfig)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := data.Open(cfg.Dataset, cfg.DataDir, "train", data.ForInput(m.Input))
	if err != nil {
		t.Fatal(err)
	}
	tw, err := train.NewWorker(cfg, m, data.NewLoader(ds, data.LoaderOptions{Seed: uint64(cfg.Seed), NoAugment: !cfg.Augment}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := clustertest.Replay(ctx, commitLog(t, c), shards, m, tw, shape.Workers); err != nil {
		t.Fatal(err)
	}
	for k, s := range shards {
		store, err := paramserver.NewFileStore(filepath.Join(c.L.Dir, fmt.Sprintf("ps-%d", k)), 3)
		if err != nil {
			t.Fatal(err)
		}
		saved, ok, err := store.LoadStep(k, steps)
		if err != nil || !ok {
			t.Fatalf("shard %d's state at step %d: %v %v", k, steps, ok, err)
		}
		got := s.Checkpoint()
		if got.Version != steps {
			t.Fatalf("replayed shard %d is at version %d, want %d", k, got.Version, steps)
		}
		for _, v := range []struct {
			what       string
			got, saved []float32
		}{{"parameters", got.Params, saved.Params}, {"buffers", got.Buffers, saved.Buffers}} {
			if len(v.got) != len(v.saved) {
				t.Fatalf("shard %d %s: %d replayed values, %d saved", k, v.what, len(v.got), len(v.saved))
			}
			for i := range v.got {
				if math.Float32bits(v.got[i]) != math.Float32bits(v.saved[i]) {
					t.Fatalf("shard %d %s differ from the replay of the commit log at %d: %v vs %v", k, v.what, i, v.saved[i], v.got[i])
				}
			}
		}
		savedSlots := map[string][]float32{}
		for _, ns := range saved.Optim {
			savedSlots[ns.Name] = ns.Data
		}
		for _, ns := range got.Optim {
			sv, ok := savedSlots[ns.Name]
			if !ok || len(sv) != len(ns.Data) {
				t.Fatalf("shard %d optimizer slot %s: saved %d values, replayed %d", k, ns.Name, len(sv), len(ns.Data))
			}
			for j := range ns.Data {
				if math.Float32bits(ns.Data[j]) != math.Float32bits(sv[j]) {
					t.Fatalf("shard %d optimizer slot %s differs from the replay at %d", k, ns.Name, j)
				}
			}
		}
	}
}
