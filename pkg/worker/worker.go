// Package worker is a cluster worker's loop: learn the global step from the
// coordinator, pull that version of every shard in parallel, compute the
// step's gradient with the same code as `logitpair train` (train.Worker:
// batch → attack → objective → backward), push each shard its slice, report,
// and wait for the step to be decided. Shards and the coordinator are
// reached through interfaces (gRPC or in memory).
//
// The phases overlap (overlap.go): each shard's push starts as soon as the
// backward pass has finished its slice, the next step's pulls start right
// after the pushes, beside the report and the wait for the coordinator, and
// the coordinator's confirmation of the step is awaited only before the
// pushes — without giving up the invariant that every shard applies the
// mean of the same logged set of gradients, all computed from one state of
// the parameters.
//
// The batch and the attack's randomness are functions of (seed, step, worker
// slot), so a worker that restarts in its slot, or a replay of the commit
// log, recomputes exactly the same gradient.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/retry"
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
// forward, backward), Comm is the pushing left after the computation: from
// its end until every shard took its push (pushes that ran during the
// backward pass are not counted).
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
	// RetryBase and RetryMax bound the pause after a failed pull, push,
	// report or wait (retry.Backoff: doubling from RetryBase, capped at
	// RetryMax, with jitter); zero means 100 ms and 5 s.
	RetryBase, RetryMax time.Duration
	// LogEvery is the least time between two log lines about failures
	// (the lines in between are counted, not written); zero means 10 s.
	LogEvery time.Duration
}

// Worker runs the loop.
type Worker struct {
	cfg    Config
	comp   Computer
	shards []Shard
	ranges []Range
	// order lists the shards by descending range: the order in which the
	// backward pass, running from the output layer down, finishes them.
	order  []int
	coord  Coordinator
	logger *zap.Logger
	params []float32
	bufs   []float32 // the buffers as pulled
	out    []float32 // the buffers after the step's forward passes, pushed
	grad   []float32
	// pulled[k] is the (step, generation) whose slice of shard k is in
	// params and bufs, so a retry after another shard failed does not fetch
	// the healthy shards again.
	pulled []version
	// pushed[k] is the (step, generation) whose gradient shard k has taken.
	pushed []version
	// computed is the version whose gradient is in grad and out; it was
	// confirmed before its first push (overlap.go).
	computed computed
	backoff  *retry.Backoff
	logLim   *retry.Limiter
	// Sleep pauses between retries (tests count the pauses); nil means
	// retry.Sleep.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnStep, when set, sees every computed step (tests, metrics).
	OnStep func(step int64, terms objective.Terms, accepted bool)
}

// New wires a worker computing its gradients with comp (Train for a
// training step).
func New(cfg Config, comp Computer, shards []Shard, ranges []Range, coord Coordinator, logger *zap.Logger) (*Worker, error) {
	if len(shards) != len(ranges) || len(shards) == 0 {
		return nil, fmt.Errorf("worker: %d shards, %d ranges", len(shards), len(ranges))
	}
	if cfg.Slot < 0 || cfg.Slot >= cfg.Workers {
		return nil, fmt.Errorf("worker: slot %d outside [0, %d)", cfg.Slot, cfg.Workers)
	}
	if cfg.PullTimeout <= 0 {
		cfg.PullTimeout = time.Minute
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 100 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Second
	}
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = 10 * time.Second
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	np, nb := comp.Sizes()
	for k, r := range ranges {
		if r.Lo < 0 || r.Hi > np || r.Lo > r.Hi || r.BufLo < 0 || r.BufHi > nb || r.BufLo > r.BufHi {
			return nil, fmt.Errorf("worker: shard %d range %+v outside %d parameters / %d buffers", k, r, np, nb)
		}
	}
	order := make([]int, len(ranges))
	for k := range order {
		order[k] = k
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(ranges[b].Lo, ranges[a].Lo), cmp.Compare(ranges[b].Hi, ranges[a].Hi))
	})
	return &Worker{cfg: cfg, comp: comp, shards: shards, ranges: ranges, order: order, coord: coord, logger: logger,
		params: make([]float32, np), grad: make([]float32, np), bufs: make([]float32, nb), out: make([]float32, nb),
		pulled: make([]version, len(shards)), pushed: make([]version, len(shards)), backoff: retry.New(cfg.RetryBase, cfg.RetryMax), logLim: retry.NewLimiter(cfg.LogEvery)}, nil
}

// computed is a gradient already computed, with its loss terms and timing.
type computed struct {
	v      version
	terms  objective.Terms
	timing Timing
}

// version names one state of the parameters: a step within a rollback
// generation (after a rollback, step t may be recomputed differently).
type version struct {
	step, gen int64
	ok        bool
}

// Run works until the coordinator says the run is done or ctx ends.
//
// A failed pull, push, report or wait is followed by asking the
// coordinator for the current state and trying again after a pause that
// grows with each consecutive failure (Config.RetryBase … RetryMax, with
// jitter) and is reset by a completed step; failures are logged at most
// once per Config.LogEvery with the count of those in between. So a dead
// shard costs a waiting worker a few cheap calls per RetryMax, however long
// it stays dead.
func (w *Worker) Run(ctx context.Context) error {
	st, err := w.coord.WaitStep(ctx, -1, -1)
	if err != nil {
		return err
	}
	for !st.Done && st.Step < w.cfg.Steps {
		t, gen := st.Step, st.Generation
		cur := version{step: t, gen: gen, ok: true}
		if err := w.pull(ctx, t, gen); err != nil {
			if st, err = w.retry(ctx, "pull", t, err); err != nil {
				return err
			}
			continue
		}
		var perr error
		t1 := time.Now()
		if w.computed.v == cur {
			// A retry of the same (step, generation) — its push or report
			// failed — reuses the gradient: it is a function of that
			// version, and it was confirmed.
			round := w.pushes(ctx, cur, nil)
			round.ready(0)
			perr = round.wait()
		} else {
			// Every slice is here: the confirmation is asked for now, and
			// awaited before the first push (overlap.go).
			conf := w.confirm(ctx, t, gen)
			round := w.pushes(ctx, cur, conf)
			terms, timing, err := w.comp.Gradient(t, w.cfg.Slot, w.cfg.Workers, w.grad, w.out, round.ready)
			t1 = time.Now()
			if err == nil {
				round.ready(0) // the whole gradient is final: push whatever the Computer did not hand out
			}
			perr = round.wait()
			conf.stop()
			if err != nil {
				return fmt.Errorf("worker %d: %w", w.cfg.Slot, err)
			}
			if !round.confirmed {
				// The cluster is not at (t, gen): nothing was pushed; the
				// gradient and every slice are dropped.
				w.forget()
				if round.cerr != nil {
					if st, err = w.retry(ctx, "wait", t, round.cerr); err != nil {
						return err
					}
					continue
				}
				w.logger.Debug("the step moved on before the push", zap.Int64("step", t), zap.Int64("now", round.cst.Step),
					zap.Int64("generation", gen), zap.Int64("now_generation", round.cst.Generation))
				st = round.cst
				continue
			}
			w.computed = computed{v: cur, terms: terms, timing: timing}
		}
		terms, timing := w.computed.terms, w.computed.timing
		if perr != nil {
			if errors.Is(perr, paramserver.ErrStale) && !errors.Is(perr, ErrFatal) && ctx.Err() == nil {
				// A backup: the step was decided without this gradient.
				// Not a failure: no pause.
				w.logger.Debug("late push: the step was decided without this worker", zap.Int64("step", t))
				if st, err = w.resync(ctx); err != nil {
					return err
				}
				continue
			}
			if st, err = w.retry(ctx, "push", t, perr); err != nil {
				return err
			}
			continue
		}
		// Pull step t+1 ahead, beside the report and the wait.
		var ahead *prefetch
		if t+1 < w.cfg.Steps {
			ahead = w.prefetch(ctx, t, gen)
		}
		accepted, rst, err := w.coord.Report(ctx, t, w.cfg.Slot, terms, Timing{Attack: timing.Attack, Compute: timing.Compute, Comm: time.Since(t1)})
		if err != nil {
			ahead.stop()
			if st, err = w.retry(ctx, "report", t, err); err != nil {
				return err
			}
			continue
		}
		w.recovered()
		if w.OnStep != nil {
			w.OnStep(t, terms, accepted)
		}
		if ahead != nil && rst.Generation == gen {
			st, err = ahead.next()
		} else {
			ahead.stop()
			st, err = w.coord.WaitStep(ctx, t, rst.Generation)
		}
		if err != nil {
			if st, err = w.retry(ctx, "wait", t, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// forget drops every pulled slice and the computed gradient (a
// confirmation said the cluster is elsewhere).
func (w *Worker) forget() {
	clear(w.pulled)
	w.computed = computed{}
}

// retry handles a failed operation of step t: it stops on ctx's end or a
// fatal error, else logs (rate-limited), pauses (backoff) and asks the
// coordinator for the current state.
func (w *Worker) retry(ctx context.Context, op string, t int64, cause error) (StepState, error) {
	if ctx.Err() != nil {
		return StepState{}, ctx.Err()
	}
	if errors.Is(cause, ErrFatal) {
		return StepState{}, fmt.Errorf("worker %d: %w", w.cfg.Slot, cause)
	}
	pause := w.backoff.Next()
	if ok, suppressed := w.logLim.Allow(); ok {
		w.logger.Info(op+" failed; retrying after a pause", zap.Int64("step", t), zap.Error(cause),
			zap.Int("consecutive_failures", w.backoff.Failures()), zap.Duration("pause", pause),
			zap.Int("failures_not_logged", suppressed))
	}
	if err := w.sleep(ctx, pause); err != nil {
		return StepState{}, err
	}
	return w.resync(ctx)
}

// recovered ends a run of failures (a step completed).
func (w *Worker) recovered() {
	if n := w.backoff.Failures(); n > 0 {
		w.logger.Info("working again", zap.Int("failures", n))
		w.backoff.Reset()
	}
}

func (w *Worker) sleep(ctx context.Context, d time.Duration) error {
	if w.Sleep != nil {
		return w.Sleep(ctx, d)
	}
	return retry.Sleep(ctx, d)
}

// resync asks the coordinator for the current state, retrying with the
// backoff until it answers or ctx ends.
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
		if errors.Is(err, ErrFatal) {
			return st, fmt.Errorf("worker %d: %w", w.cfg.Slot, err)
		}
		pause := w.backoff.Next()
		if ok, suppressed := w.logLim.Allow(); ok {
			w.logger.Info("the coordinator does not answer; retrying after a pause", zap.Error(err),
				zap.Int("consecutive_failures", w.backoff.Failures()), zap.Duration("pause", pause),
				zap.Int("failures_not_logged", suppressed))
		}
		if err := w.sleep(ctx, pause); err != nil {
			return st, err
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

// pull fetches version t (of generation gen) of every shard it does not
// hold yet and loads it into the model.
func (w *Worker) pull(ctx context.Context, t, gen int64) error {
	want := version{step: t, gen: gen, ok: true}
	for _, v := range w.pulled {
		if v != want {
			w.computed = computed{} // new parameters: a new gradient
			break
		}
	}
	if err := w.fetch(ctx, t, gen); err != nil {
		return err
	}
	w.comp.Load(w.params, w.bufs)
	return nil
}

// fetch pulls version t (of generation gen) of every shard it does not hold
// yet into params and bufs, in parallel, recording each arrival in pulled.
func (w *Worker) fetch(ctx context.Context, t, gen int64) error {
	want := version{step: t, gen: gen, ok: true}
	return w.parallel(ctx, func(ctx context.Context, k int) error {
		if w.pulled[k] == want {
			return nil
		}
		w.pulled[k] = version{}
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
		w.pulled[k] = want
		return nil
	})
}
