// Package cluster wires the coordinator, parameter-server shards and workers
// together: the run's initial state and shard layout from a training config,
// in-memory adapters (a shard or the coordinator called directly, for tests
// and single-machine runs), and an in-process cluster of goroutines.
package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// Layout is a run's parameter layout and its shards.
type Layout struct {
	Params  nn.Layout
	Buffers nn.Layout
	Shards  []paramserver.ShardRange
	// Init is the initial flat parameter vector (model.Init(seed), or
	// --init-from), InitBuffers the initial buffers.
	Init, InitBuffers []float32
}

// NewLayout builds the model of cfg on be, initializes it exactly as local
// training does, and cuts its flat parameter vector into shards.
func NewLayout(be tensor.Backend, cfg train.Config, shards int) (*Layout, *models.Model, error) {
	m, err := models.New(be, cfg.Model, cfg.ModelConfig)
	if err != nil {
		return nil, nil, err
	}
	m.Init(cfg.Seed)
	if cfg.InitFrom != "" {
		return nil, nil, fmt.Errorf("cluster: --init-from is not implemented for the cluster yet; train locally or start from a seed")
	}
	l := &Layout{Params: m.FlatLayout(), Buffers: nn.NewLayout(nn.Buffers(m.Params()))}
	if l.Shards, err = paramserver.Partition(l.Params, shards); err != nil {
		return nil, nil, err
	}
	l.Init = make([]float32, l.Params.Total)
	nn.Gather(be, m.Trainable(), l.Init, false)
	l.InitBuffers = make([]float32, l.Buffers.Total)
	nn.Gather(be, nn.Buffers(m.Params()), l.InitBuffers, false)
	return l, m, nil
}

// ShardConfig returns shard k's configuration for a run of cfg with W
// workers: the optimizer, schedule, weight decay (added by the shard, after
// averaging) and EMA of local training.
func (l *Layout) ShardConfig(cfg train.Config, k, workers int) (paramserver.ShardConfig, []float32, error) {
	oc, err := cfg.OptimConfig()
	if err != nil {
		return paramserver.ShardConfig{}, nil, err
	}
	base := paramserver.ShardConfig{Workers: workers, Optim: oc, Schedule: cfg.LRSchedule, LR: cfg.LR,
		WeightDecay: cfg.WeightDecay, Decay: train.DecayMask(l.Params)}
	if cfg.EMA > 0 {
		ec := optim.DefaultEMA()
		ec.Decay = cfg.EMA
		base.EMA = &ec
	}
	sc := paramserver.ConfigFor(base, l.Shards[k], l.Buffers.Total)
	sc.InitBuffers = append([]float32(nil), l.InitBuffers[sc.BufLo:sc.BufHi]...)
	return sc, append([]float32(nil), l.Init[sc.Lo:sc.Hi]...), nil
}

// Ranges returns the shards' ranges as workers need them.
func (l *Layout) Ranges() []worker.Range {
	out := make([]worker.Range, len(l.Shards))
	for k, r := range l.Shards {
		blo, bhi := paramserver.BufferRange(k, l.Buffers.Total)
		out[k] = worker.Range{Lo: r.Lo, Hi: r.Hi, BufLo: blo, BufHi: bhi}
	}
	return out
}

// LocalShard is a shard called directly: it implements both
// coordinator.ShardClient and worker.Shard. Its StepStore holds the
// checkpoints (version 0 is saved at creation, so a rollback before the first
// checkpoint returns to the initial parameters).
type LocalShard struct {
	S     *paramserver.Shard
	Store paramserver.StepStore
	// BeforePush, when set, runs before every Push (fault injection).
	BeforePush func(ctx context.Context, step int64, worker int) error
}

// NewLocalShard creates a shard and saves its initial state.
func NewLocalShard(cfg paramserver.ShardConfig, init []float32, store paramserver.StepStore) (*LocalShard, error) {
	s, err := paramserver.NewShard(cfg, init, store)
	if err != nil {
		return nil, err
	}
	// A shard with no intact saved state saves the one it starts from (the
	// initial parameters), so that every shard of a new run holds version 0.
	if held, err := store.Held(cfg.Index); err != nil {
		return nil, err
	} else if len(held) == 0 {
		if err := s.Save(); err != nil {
			return nil, err
		}
	}
	return &LocalShard{S: s, Store: store}, nil
}

// Held implements coordinator.ShardClient: the versions whose saved state
// reads back intact, newest first.
func (l *LocalShard) Held(context.Context) ([]int64, error) {
	return l.Store.Held(l.S.Config().Index)
}

// Apply implements coordinator.ShardClient.
func (l *LocalShard) Apply(_ context.Context, step int64, workers []int) error {
	return l.S.Apply(step, workers)
}

// Version implements coordinator.ShardClient.
func (l *LocalShard) Version(context.Context) (int64, error) { return l.S.Version(), nil }

// Checkpoint implements coordinator.ShardClient: it saves the shard's state,
// which must be at version step (an *paramserver.Error of kind ErrStale or
// ErrFuture otherwise, so that a checkpoint taken on every shard is
// consistent).
func (l *LocalShard) Checkpoint(_ context.Context, step int64) error {
	if v := l.S.Version(); v != step {
		kind := paramserver.ErrStale
		if step > v {
			kind = paramserver.ErrFuture
		}
		return &paramserver.Error{Op: "checkpoint", Kind: kind, Shard: l.S.Config().Index, Step: step, Version: v, Worker: -1,
			Detail: "a checkpoint is taken at the shard's current version"}
	}
	if err := l.S.Save(); err != nil {
		return fmt.Errorf("paramserver: shard %d: checkpoint of step %d: %w", l.S.Config().Index, step, err)
	}
	return nil
}

// Restore implements coordinator.ShardClient: it loads the state saved at
// step (an *paramserver.Error of kind ErrRestore when there is none or it
// does not fit).
func (l *LocalShard) Restore(_ context.Context, step int64) error {
	idx := l.S.Config().Index
	st, ok, err := l.Store.LoadStep(idx, step)
	if err != nil {
		return &paramserver.Error{Op: "restore", Kind: paramserver.ErrRestore, Shard: idx, Step: step, Version: l.S.Version(), Worker: -1,
			Detail: fmt.Sprintf("the saved state does not read back: %v", err)}
	}
	if !ok {
		return &paramserver.Error{Op: "restore", Kind: paramserver.ErrRestore, Shard: idx, Step: step, Version: l.S.Version(), Worker: -1,
			Detail: "no saved state at this step"}
	}
	return l.S.Restore(st)
}

// Pull implements worker.Shard.
func (l *LocalShard) Pull(ctx context.Context, step int64) ([]float32, []float32, error) {
	return l.S.Pull(ctx, step)
}

// Push implements worker.Shard.
func (l *LocalShard) Push(ctx context.Context, step int64, w int, grad, bufs []float32) error {
	if l.BeforePush != nil {
		if err := l.BeforePush(ctx, step, w); err != nil {
			return err
		}
	}
	return l.S.Push(step, w, grad, bufs)
}

// LocalCoordinator adapts a *coordinator.Coordinator to worker.Coordinator.
type LocalCoordinator struct {
	C *coordinator.Coordinator
	// OnReport, when set, sees every report (metrics, tests).
	OnReport func(step int64, slot int, terms objective.Terms, t worker.Timing)
}

// Report implements worker.Coordinator.
func (l LocalCoordinator) Report(_ context.Context, step int64, slot int, terms objective.Terms, t worker.Timing) (bool, worker.StepState, error) {
	if l.OnReport != nil {
		l.OnReport(step, slot, terms, t)
	}
	ok, cur, gen, err := l.C.Report(step, slot)
	return ok, worker.StepState{Step: cur, Generation: gen}, err
}

// WaitStep implements worker.Coordinator.
func (l LocalCoordinator) WaitStep(ctx context.Context, step, gen int64) (worker.StepState, error) {
	st, err := l.C.WaitStep(ctx, step, gen)
	return StepState(st), err
}

// StepState converts a coordinator status into a worker's view.
func StepState(st coordinator.Status) worker.StepState {
	return worker.StepState{Step: st.Step, Generation: st.Generation, Done: st.Done, Paused: st.Paused, Reason: st.Reason}
}

// DefaultCoordinatorConfig is the coordinator's config for a run.
func DefaultCoordinatorConfig(cfg train.Config, workers, backups int) coordinator.Config {
	c := coordinator.DefaultConfig()
	c.Workers, c.Backups, c.Steps, c.CheckpointEvery = workers, backups, cfg.Steps, cfg.CheckpointEvery
	c.RetryEvery, c.CallTimeout = 50*time.Millisecond, 30*time.Second
	return c
}
