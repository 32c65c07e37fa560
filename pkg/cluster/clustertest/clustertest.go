// Package clustertest is test support: a whole cluster in one process, its
// shards, coordinator and workers as goroutines calling each other directly
// (no sockets), built from a training config exactly as the processes build
// theirs (cluster.NewLayout, paramserver.NewLocal, coordinator.New,
// worker.New). Tests use it to check the protocol end to end — that one
// worker reproduces local training bit for bit, that backups drop
// stragglers, that a commit log replays — and to inject faults
// (Shard.BeforePush). No production code imports it.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// InProcess is a whole cluster of goroutines in one process: shards called
// directly, the coordinator, and W workers each with its own model copy.
type InProcess struct {
	Cfg    train.Config
	Layout *cluster.Layout
	Shards []*Shard
	Coord  *coordinator.Coordinator
	Log    paramserver.CommitLog
	Work   []*worker.Worker
}

// Shard is one shard of an InProcess: the coordinator calls the embedded
// *paramserver.Local, the workers Pull and Push through BeforePush.
type Shard struct {
	*paramserver.Local
	// BeforePush, when set, runs before every Push (fault injection: a
	// straggler, a slow worker). Set it before Run.
	BeforePush func(ctx context.Context, step int64, worker int) error
}

// Pull implements worker.Shard.
func (s *Shard) Pull(ctx context.Context, step int64) ([]float32, []float32, error) {
	return s.S.Pull(ctx, step)
}

// Push implements worker.Shard.
func (s *Shard) Push(ctx context.Context, step int64, w int, grad, bufs []float32) error {
	if s.BeforePush != nil {
		if err := s.BeforePush(ctx, step, w); err != nil {
			return err
		}
	}
	return s.S.Push(step, w, grad, bufs)
}

// Options configures NewInProcess.
type Options struct {
	Workers, Backups, Shards int
	Elastic                  bool
	// Backend returns the compute backend of worker w (and of the layout
	// model for w = −1).
	Backend func(w int) tensor.Backend
	// Data is each worker's batch source.
	Data   train.Batcher
	Logger *zap.Logger
	// CheckpointDir, when set, receives the consistent checkpoints in local
	// training's format (cluster.ModelWriter).
	CheckpointDir string
	// Log is the coordinator's commit log; nil means a fresh in-memory one
	// (paramserver.OpenFileLog records it durably, as the coordinator
	// process does).
	Log paramserver.CommitLog
}

// NewInProcess builds (but does not start) an in-process cluster for cfg.
func NewInProcess(ctx context.Context, cfg train.Config, o Options) (*InProcess, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l, model, err := cluster.NewLayout(o.Backend(-1), cfg, o.Shards)
	if err != nil {
		return nil, err
	}
	clog := o.Log
	if clog == nil {
		clog = paramserver.NewMemLog()
	}
	c := &InProcess{Cfg: cfg, Layout: l, Log: clog}
	clients := make([]coordinator.ShardClient, o.Shards)
	wshards := make([]worker.Shard, o.Shards)
	states := make([]cluster.StateFetcher, o.Shards)
	for k := 0; k < o.Shards; k++ {
		sc, init, err := l.ShardConfig(cfg, k, o.Workers)
		if err != nil {
			return nil, err
		}
		local, err := paramserver.NewLocal(sc, init, paramserver.NewMemStepStore())
		if err != nil {
			return nil, err
		}
		s := &Shard{Local: local}
		c.Shards = append(c.Shards, s)
		clients[k], wshards[k], states[k] = s, s, s
	}
	cc := DefaultCoordinatorConfig(cfg, o.Workers, o.Backups)
	cc.Elastic = o.Elastic
	var hooks coordinator.Hooks
	if o.CheckpointDir != "" {
		mw := &cluster.ModelWriter{Dir: o.CheckpointDir, Model: model, Shards: wshards, States: states, Ranges: l.Ranges(), Cfg: cfg}
		dataset := 0
		if ld, ok := o.Data.(*data.Loader); ok {
			dataset = ld.Source.Info().Len
		}
		if err := mw.StartCompute(o.Workers, dataset, time.Now); err != nil {
			return nil, err
		}
		mw.Keep = func() []int64 { return c.Coord.Kept() }
		hooks.Checkpointed = mw.Write
	}
	if c.Coord, err = coordinator.New(ctx, cc, c.Log, &checkpoint.MemRecord{}, clients, hooks, o.Logger); err != nil {
		return nil, err
	}
	for w := range o.Workers {
		c.Coord.SetLive(w, true) // the in-process workers are members from the start
	}
	for w := 0; w < o.Workers; w++ {
		m, err := models.New(o.Backend(w), cfg.Model, cfg.ModelConfig)
		if err != nil {
			return nil, err
		}
		tw, err := train.NewWorker(cfg, m, o.Data)
		if err != nil {
			return nil, err
		}
		wk, err := worker.New(worker.Config{Slot: w, Workers: o.Workers, Steps: cfg.Steps}, worker.Train(tw), wshards, l.Ranges(), Coordinator{C: c.Coord}, o.Logger)
		if err != nil {
			return nil, err
		}
		c.Work = append(c.Work, wk)
	}
	return c, nil
}

// Run runs the coordinator and every worker until the run is done.
func (c *InProcess) Run(ctx context.Context) error { return RunAll(ctx, c.Coord, c.Work) }

// RunAll runs a coordinator and workers as goroutines until the run is done;
// the first error stops them all.
func RunAll(ctx context.Context, coord *coordinator.Coordinator, work []*worker.Worker) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(work)+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if errs[0] = coord.Run(ctx); errs[0] != nil {
			cancel()
		}
	}()
	for i, w := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs[i+1] = fmt.Errorf("worker %d: %w", i, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Params pulls the final parameters of every shard into one flat vector.
func (c *InProcess) Params(ctx context.Context) ([]float32, error) {
	out := make([]float32, c.Layout.Params.Total)
	for _, s := range c.Shards {
		cfg := s.S.Config()
		p, _, err := s.S.Pull(ctx, s.S.Version())
		if err != nil {
			return nil, err
		}
		copy(out[cfg.Lo:cfg.Hi], p)
	}
	return out, nil
}

// Coordinator is a *coordinator.Coordinator called directly, as a worker
// reaches it (worker.Coordinator).
type Coordinator struct{ C *coordinator.Coordinator }

// Report implements worker.Coordinator.
func (l Coordinator) Report(_ context.Context, step int64, slot int, _ objective.Terms, _ worker.Timing) (bool, worker.StepState, error) {
	ok, cur, gen, err := l.C.Report(step, slot)
	return ok, worker.StepState{Step: cur, Generation: gen}, err
}

// WaitStep implements worker.Coordinator.
func (l Coordinator) WaitStep(ctx context.Context, step, gen int64) (worker.StepState, error) {
	st, err := l.C.WaitStep(ctx, step, gen)
	return worker.StepState{Step: st.Step, Generation: st.Generation, Done: st.Done, Paused: st.Paused, Reason: st.Reason}, err
}

// DefaultCoordinatorConfig is the coordinator's config for an in-process
// run: its retries and calls are in memory, so they may be short.
func DefaultCoordinatorConfig(cfg train.Config, workers, backups int) coordinator.Config {
	c := coordinator.DefaultConfig()
	c.Workers, c.Backups, c.Steps, c.CheckpointEvery = workers, backups, cfg.Steps, cfg.CheckpointEvery
	c.RetryEvery, c.CallTimeout = 50*time.Millisecond, 30*time.Second
	return c
}
