package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/safetensors"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// StateFetcher is a shard that can hand over its optimizer state
// (paramserver.Local in process, rpc.PSClient over gRPC).
type StateFetcher interface {
	FetchState(ctx context.Context, step int64) (kind string, slots []optim.NamedState, err error)
}

// ModelWriter writes the cluster's consistent checkpoints in local
// training's format (checkpoint.Save): the model file (PyTorch names and
// layouts), the EMA model file, the state file with the optimizer slots over
// the whole flat vector, and latest.json — so `logitpair train --resume
// --out DIR` continues a cluster run and `logitpair eval` reads its models.
// It pulls every shard's parameters, buffers and optimizer state at the
// checkpoint's version.
type ModelWriter struct {
	Dir    string
	Model  *models.Model
	Shards []worker.Shard
	States []StateFetcher
	Ranges []worker.Range
	Cfg    train.Config
	// Keep, when set, names checkpoints that pruning to the Cfg.Keep
	// newest must spare: the coordinator's rollback target
	// (coordinator.Coordinator.Kept), which the shards spare too.
	Keep func() []int64
	// Meta, when set, adds metadata to every model file (the cluster
	// sentinel's state under sentinel.MetaKey, as local training writes
	// it).
	Meta func() map[string]string
	acct *clusterCompute
}

// clusterCompute is a ModelWriter's compute accounting (StartCompute).
type clusterCompute struct {
	base     checkpoint.Compute // the run's compute at step since
	since    int64
	perStep  train.Passes // passes of one step over every worker's batch
	examples int64        // examples of one step: batch × workers
	dataset  int
	start    time.Time
	now      func() time.Time
}

// StartCompute makes every checkpoint Write writes record the run's compute
// (checkpoint.Compute, as local training does): steps of Cfg.Batch examples
// on each of workers workers (the workers a step averages: a backup's
// discarded gradient is not counted), train.StepPasses per example, and wall
// time from this call on, added to what the newest checkpoint in Dir
// recorded (the one the coordinator resumes from; time an earlier
// coordinator spent after its last checkpoint is lost with it). dataset is
// the training set's size, 0 when unknown (the per-example counts are then
// left out). A run whose newest checkpoint has no accounting records none.
func (w *ModelWriter) StartCompute(workers, dataset int, now func() time.Time) error {
	per, err := train.StepPasses(w.Cfg)
	if err != nil {
		return err
	}
	a := &clusterCompute{examples: int64(w.Cfg.Batch) * int64(workers), dataset: dataset, now: now}
	a.perStep = per.Scale(a.examples)
	p, err := checkpoint.ReadPointer(w.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist): // a new run
	case err != nil:
		return fmt.Errorf("compute accounting: %w", err)
	default:
		f, err := safetensors.ReadFile(filepath.Join(w.Dir, p.Model))
		if err != nil {
			return fmt.Errorf("compute accounting: %w", err)
		}
		prev, err := checkpoint.ReadCompute(f.Metadata)
		if err != nil {
			return fmt.Errorf("compute accounting: %s: %w", p.Model, err)
		}
		if prev == nil {
			return nil // written without accounting: the run's compute is unknown
		}
		a.base, a.since = *prev, p.Step
	}
	a.start = now()
	w.acct = a
	return nil
}

// Compute is the accounting the checkpoint of step records: ok is false
// without StartCompute, or when the run's earlier compute is unknown.
func (w *ModelWriter) Compute(step int64) (c checkpoint.Compute, ok bool) {
	a := w.acct
	if a == nil {
		return c, false
	}
	c = a.base
	steps := step - a.since
	p := a.perStep.Scale(steps)
	c.Steps += steps
	c.ExamplesSeen += steps * a.examples
	c.ForwardPasses += p.Forward
	c.BackwardPasses += p.Backward
	c.WallSeconds += a.now().Sub(a.start).Seconds()
	return c.WithDataset(a.dataset), true
}

// Write writes the checkpoint of version step.
func (w *ModelWriter) Write(ctx context.Context, step int64) error {
	total := nn.NewLayout(w.Model.Trainable()).Total
	params := make([]float32, total)
	bufs := make([]float32, nn.NewLayout(nn.Buffers(w.Model.Params())).Total)
	for k, s := range w.Shards {
		p, b, err := s.Pull(ctx, step)
		if err != nil {
			return fmt.Errorf("checkpoint: shard %d: %w", k, err)
		}
		r := w.Ranges[k]
		if len(p) != r.Hi-r.Lo || len(b) != r.BufHi-r.BufLo {
			return fmt.Errorf("checkpoint: shard %d returned %d parameters and %d buffers for range %+v", k, len(p), len(b), r)
		}
		copy(params[r.Lo:r.Hi], p)
		copy(bufs[r.BufLo:r.BufHi], b)
	}
	be := w.Model.Backend
	nn.Scatter(be, w.Model.Trainable(), params)
	nn.Scatter(be, nn.Buffers(w.Model.Params()), bufs)
	oc, err := w.Cfg.OptimConfig()
	if err != nil {
		return err
	}
	opt, err := optim.New(oc, total)
	if err != nil {
		return err
	}
	flat := map[string][]float32{}
	for k, sf := range w.States {
		kind, slots, err := sf.FetchState(ctx, step)
		if err != nil {
			return fmt.Errorf("checkpoint: shard %d state: %w", k, err)
		}
		if kind != opt.Name() {
			return fmt.Errorf("checkpoint: shard %d runs %s, the run %s", k, kind, opt.Name())
		}
		r := w.Ranges[k]
		for _, ns := range slots {
			if len(ns.Data) != r.Hi-r.Lo {
				return fmt.Errorf("checkpoint: shard %d slot %s has %d values for range [%d,%d)", k, ns.Name, len(ns.Data), r.Lo, r.Hi)
			}
			if flat[ns.Name] == nil {
				flat[ns.Name] = make([]float32, total)
			}
			copy(flat[ns.Name][r.Lo:r.Hi], ns.Data)
		}
	}
	var named []optim.NamedState
	for _, s := range opt.State() {
		named = append(named, optim.NamedState{Name: s.Name, Data: flat[s.Name]})
	}
	if err := opt.SetState(named); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	var ema *optim.EMA
	if w.Cfg.EMA > 0 {
		if flat["ema"] == nil {
			return fmt.Errorf("checkpoint: the run keeps an EMA but the shards sent none")
		}
		ec := optim.DefaultEMA()
		ec.Decay = w.Cfg.EMA
		if ema, err = optim.NewEMA(ec, flat["ema"]); err != nil {
			return err
		}
	}
	meta := map[string]string{"dataset": w.Cfg.Dataset, "objective": w.Cfg.Objective, models.MetaTrainConfig: w.Cfg.JSON(), "cluster": "true"}
	if c, ok := w.Compute(step); ok {
		meta[checkpoint.MetaCompute] = c.JSON()
	}
	if w.Meta != nil {
		for k, v := range w.Meta() {
			meta[k] = v
		}
	}
	_, err = checkpoint.Save(w.Dir, checkpoint.Checkpoint{Step: step, Model: w.Model, Opt: opt, EMA: ema, Meta: meta}, w.Cfg.Seed)
	if err != nil {
		return err
	}
	var spare []int64
	if w.Keep != nil {
		spare = w.Keep()
	}
	return checkpoint.PruneKeeping(w.Dir, max(w.Cfg.Keep, 1), spare...)
}

// RolledBack follows a rollback the coordinator made on request from step
// from to step to (the training sentinel's; every shard is at version to):
// the steps from to to from count in the compute accounting (they were
// computed), the checkpoint of to is written again from the shards
// (latest.json points at it, its metadata holds Meta's state now; step 0's
// is written too, the shards' initial state) and every checkpoint after
// it, the abandoned trajectory's, is deleted.
func (w *ModelWriter) RolledBack(ctx context.Context, from, to int64) error {
	if a := w.acct; a != nil && from > a.since {
		steps := from - a.since
		p := a.perStep.Scale(steps)
		a.base.Steps += steps
		a.base.ExamplesSeen += steps * a.examples
		a.base.ForwardPasses += p.Forward
		a.base.BackwardPasses += p.Backward
		a.since = to
	}
	if err := w.Write(ctx, to); err != nil {
		return err
	}
	_, err := checkpoint.RemoveAfter(w.Dir, to)
	return err
}
