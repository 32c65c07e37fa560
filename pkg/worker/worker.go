// Package worker is a cluster worker's loop: learn the global step from the
// coordinator, pull that version of every shard in parallel, compute the
// step's gradient with the same code as `logitpair train` (train.Worker:
// batch → attack → objective → backward), push each shard its slice, report,
// and wait for the step to be decided. Shards and the coordinator are
// reached through interfaces (gRPC or in memory).
//
// The batch and the attack's randomness are functions of (seed, step, worker
// slot), so a worker that restarts in its slot, or a replay of the commit
// log, recomputes exactly the same gradient.
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/train"
)

// Shard is one parameter-server shard as a worker sees it.
type Shard interface {
	// Pull returns the shard's parameters and buffers at version step,
	// waiting until the shard reaches it.
	Pull(ctx context.Context, step int64) (params, buffers []float32, err error)
	// Push sends this worker's gradient and buffer slices for step.
	Push(ctx context.Context, step int64, worker int, grad, buffers []float32) error
}

// StepState is the coordinator's answer about the global step.
type StepState struct {
	Step       int64
	Generation int64
	Done       bool
	Paused     bool
	Reason     string
}

// Coordinator is the coordinator as a worker sees it.
type Coordinator interface {
	// Report says this slot pushed step's gradient to every shard.
	Report(ctx context.Context, step int64, slot int, terms objective.Terms, timing Timing) (accepted bool, st StepState, err error)
	// WaitStep blocks while the global step is step in generation gen
	// (pass −1 to learn the current state at once).
	WaitStep(ctx context.Context, step, gen int64) (StepState, error)
}

// Range is a shard's part of the flat parameter and buffer vectors.
type Range struct{ Lo, Hi, BufLo, BufHi int }

// ErrFatal marks an error from a Shard or the Coordinator after which this
// worker must stop instead of retrying (e.g. its slot now belongs to another
// worker).
var ErrFatal = errors.New("worker must stop")

// Timing splits a step's wall time, for metrics: Attack crafts the
// adversarial batch (PGD), Compute is the rest of the gradient (objective,
// forward, backward), Comm pushes the gradient and reports.
type Timing struct {
	Attack, Compute, Comm time.Duration
}

// Config configures a worker.
type Config struct {
	Slot, Workers int
	Steps         int64
	// PullTimeout bounds one pull round; on timeout the worker asks the
	// coordinator for the current step again (a rollback may have happened).
	PullTimeout time.Duration
}

// Worker runs the loop.
type Worker struct {
	cfg    Config
	tw     *train.Worker
	shards []Shard
	ranges []Range
	coord  Coordinator
	logger *zap.Logger
	params []float32
	bufs   []float32
	grad   []float32
	bufLay nn.Layout
	// OnStep, when set, sees every computed step (tests, metrics).
	OnStep func(step int64, terms objective.Terms, accepted bool)
}

// New wires a worker. tw must be built with the cluster's training config
// and weight decay 0 (the shards add it after averaging).
func New(cfg Config, tw *train.Worker, shards []Shard, ranges []Range, coord Coordinator, logger *zap.Logger) (*Worker, error) {
	if tw.Cfg.WeightDecay != 0 {
		return nil, errors.New("worker: the training step must run without weight decay: the shards add it after averaging")
	}
	if len(shards) != len(ranges) || len(shards) == 0 {
		return nil, fmt.Errorf("worker: %d shards, %d ranges", len(shards), len(ranges))
	}
	if cfg.Slot < 0 || cfg.Slot >= cfg.Workers {
		return nil, fmt.Errorf("worker: slot %d outside [0, %d)", cfg.Slot, cfg.Workers)
	}
	if cfg.PullTimeout <= 0 {
		cfg.PullTimeout = time.Minute
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	lay := tw.Layout()
	bl := nn.NewLayout(nn.Buffers(tw.Model.Params()))
	for k, r := range ranges {
		if r.Lo < 0 || r.Hi > lay.Total || r.Lo > r.Hi || r.BufLo < 0 || r.BufHi > bl.Total || r.BufLo > r.BufHi {
			return nil, fmt.Errorf("worker: shard %d range %+v outside %d parameters / %d buffers", k, r, lay.Total, bl.Total)
		}
	}
	return &Worker{cfg: cfg, tw: tw, shards: shards, ranges: ranges, coord: coord, logger: logger,
		params: make([]float32, lay.Total), grad: make([]float32, lay.Total), bufs: make([]float32, bl.Total), bufLay: bl}, nil
}

// TW returns the training step the worker runs.
func (w *Worker) TW() *train.Worker { return w.tw }

// Run works until the coordinator says the run is done or ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	st, err := w.coord.WaitStep(ctx, -1, -1)
	if err != nil {
		return err
	}
	for !st.Done && st.Step < w.cfg.Steps {
		t := st.Step
		if err := w.pull(ctx, t); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, ErrFatal) {
				return fmt.Errorf("worker %d: %w", w.cfg.Slot, err)
			}
			w.logger.Info("pull failed; asking the coordinator again", zap.Int64("step", t), zap.Error(err))
			if st, err = w.resync(ctx); err != nil {
				return err
			}
			continue
		}
		t0 := time.Now()
		terms, err := w.tw.Gradient(t, w.cfg.Slot, w.cfg.Workers, w.grad)
		if err != nil {
			return fmt.Errorf("worker %d: %w", w.cfg.Slot, err)
		}
		attackTime := w.tw.AttackTime
		compute := time.Since(t0) - attackTime
		nn.Gather(w.tw.Model.Backend, nn.Buffers(w.tw.Model.Params()), w.bufs, false)
		t1 := time.Now()
		if err := w.push(ctx, t); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, ErrFatal) {
				return fmt.Errorf("worker %d: %w", w.cfg.Slot, err)
			}
			if errors.Is(err, paramserver.ErrStale) {
				// A backup: the step was decided without this gradient.
				w.logger.Debug("late push: the step was decided without this worker", zap.Int64("step", t))
			} else {
				w.logger.Info("push failed; asking the coordinator again", zap.Int64("step", t), zap.Error(err))
			}
			if st, err = w.resync(ctx); err != nil {
				return err
			}
			continue
		}
		accepted, rst, err := w.coord.Report(ctx, t, w.cfg.Slot, terms, Timing{Attack: attackTime, Compute: compute, Comm: time.Since(t1)})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.logger.Info("report failed; asking the coordinator again", zap.Error(err))
			if st, err = w.resync(ctx); err != nil {
				return err
			}
			continue
		}
		if w.OnStep != nil {
			w.OnStep(t, terms, accepted)
		}
		if st, err = w.coord.WaitStep(ctx, t, rst.Generation); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if st, err = w.resync(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// resync asks the coordinator for the current state, retrying with a pause
// until it answers or ctx ends.
func (w *Worker) resync(ctx context.Context) (StepState, error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, w.cfg.PullTimeout)
		st, err := w.coord.WaitStep(cctx, -1, -1)
		cancel()
		if err == nil {
			return st, nil
		}
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

func (w *Worker) parallel(ctx context.Context, fn func(ctx context.Context, k int) error) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.PullTimeout)
	defer cancel()
	errs := make([]error, len(w.shards))
	var wg sync.WaitGroup
	for k := range w.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx, k); err != nil {
				errs[k] = fmt.Errorf("shard %d: %w", k, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pull fetches version t of every shard and loads it into the model.
func (w *Worker) pull(ctx context.Context, t int64) error {
	err := w.parallel(ctx, func(ctx context.Context, k int) error {
		p, b, err := w.shards[k].Pull(ctx, t)
		if err != nil {
			return err
		}
		r := w.ranges[k]
		if len(p) != r.Hi-r.Lo || len(b) != r.BufHi-r.BufLo {
			return fmt.Errorf("pulled %d parameters and %d buffers, want %d and %d", len(p), len(b), r.Hi-r.Lo, r.BufHi-r.BufLo)
		}
		copy(w.params[r.Lo:r.Hi], p)
		copy(w.bufs[r.BufLo:r.BufHi], b)
		return nil
	})
	if err != nil {
		return err
	}
	be := w.tw.Model.Backend
	nn.Scatter(be, w.tw.Model.Trainable(), w.params)
	nn.Scatter(be, nn.Buffers(w.tw.Model.Params()), w.bufs)
	return nil
}

// push sends every shard its slice of the gradient and buffers.
func (w *Worker) push(ctx context.Context, t int64) error {
	return w.parallel(ctx, func(ctx context.Context, k int) error {
		r := w.ranges[k]
		return w.shards[k].Push(ctx, t, w.cfg.Slot, w.grad[r.Lo:r.Hi], w.bufs[r.BufLo:r.BufHi])
	})
}
