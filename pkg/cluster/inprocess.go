package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// InProcess is a whole cluster of goroutines in one process: shards called
// directly, the coordinator, and W workers each with its own model copy.
type InProcess struct {
	Cfg    train.Config
	Layout *Layout
	Shards []*LocalShard
	Coord  *coordinator.Coordinator
	Log    paramserver.CommitLog
	Work   []*worker.Worker
}

// InProcessOptions configures NewInProcess.
type InProcessOptions struct {
	Workers, Backups, Shards int
	Elastic                  bool
	// Backend returns the compute backend of worker w (and of the layout
	// model for w = −1).
	Backend func(w int) tensor.Backend
	// Data is each worker's batch source.
	Data   train.Batcher
	Logger *zap.Logger
	// CheckpointDir, when set, receives the consistent checkpoints in local
	// training's format (ModelWriter).
	CheckpointDir string
	// Log is the coordinator's commit log; nil means a fresh in-memory one
	// (paramserver.OpenFileLog records it durably, as cmd/coordinator does).
	Log paramserver.CommitLog
}

// NewInProcess builds (but does not start) an in-process cluster for cfg.
func NewInProcess(ctx context.Context, cfg train.Config, o InProcessOptions) (*InProcess, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l, model, err := NewLayout(o.Backend(-1), cfg, o.Shards)
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
	for k := 0; k < o.Shards; k++ {
		sc, init, err := l.ShardConfig(cfg, k, o.Workers)
		if err != nil {
			return nil, err
		}
		s, err := NewLocalShard(sc, init, paramserver.NewMemStepStore())
		if err != nil {
			return nil, err
		}
		c.Shards = append(c.Shards, s)
		clients[k], wshards[k] = s, s
	}
	cc := DefaultCoordinatorConfig(cfg, o.Workers, o.Backups)
	cc.Elastic = o.Elastic
	var hooks coordinator.Hooks
	if o.CheckpointDir != "" {
		states := make([]StateFetcher, len(c.Shards))
		for k, s := range c.Shards {
			states[k] = s
		}
		mw := &ModelWriter{Dir: o.CheckpointDir, Model: model, Shards: wshards, States: states, Ranges: l.Ranges(), Cfg: cfg}
		hooks.Checkpointed = mw.Write
	}
	if c.Coord, err = coordinator.New(ctx, cc, c.Log, &checkpoint.MemRecord{}, clients, hooks, o.Logger); err != nil {
		return nil, err
	}
	wcfg := cfg
	for w := 0; w < o.Workers; w++ {
		m, err := models.New(o.Backend(w), cfg.Model, cfg.ModelConfig)
		if err != nil {
			return nil, err
		}
		tw, err := train.NewWorker(wcfg, m, o.Data)
		if err != nil {
			return nil, err
		}
		wk, err := worker.New(worker.Config{Slot: w, Workers: o.Workers, Steps: cfg.Steps}, tw, wshards, l.Ranges(), LocalCoordinator{C: c.Coord}, o.Logger)
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

// compile-time check that a data.Loader is a batch source.
var _ train.Batcher = (*data.Loader)(nil)
