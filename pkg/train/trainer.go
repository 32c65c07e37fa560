package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/eval"
	"github.com/logitpair/logitpair/pkg/history"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/progress"
	"github.com/logitpair/logitpair/pkg/sentinel"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// Trainer runs single-process training: Worker.Gradient, then the optimizer
// on the flat parameter vector, checkpoints, validation.
type Trainer struct {
	Cfg    Config
	W      *Worker
	Opt    optim.Optimizer
	Sched  optim.Schedule
	EMA    *optim.EMA
	Step   int64 // steps done
	params []float32
	grad   []float32
	decay  optim.WeightDecay
	val    data.Source
	// Progress receives one line per log interval (and a final one): the
	// step out of the run's, the rate of the recent steps, the mean loss
	// terms, the elapsed time and the ETA (pkg/progress).
	Progress io.Writer
	// Terminal also draws a live progress bar below the lines, redrawn
	// after every step (for an interactive terminal).
	Terminal bool
	prog     *progress.Progress // Run's, while it runs
	// OnStep, when set, is called after every step with its terms.
	OnStep func(step int64, t objective.Terms)
	// Record, when set, receives the run's history (pkg/history) on Run's
	// goroutine: a start record when Run begins, a train record per log
	// interval, and every validation, sentinel check and rollback.
	Record func(history.Record)
	// OnSave, when set, is called with the step of every checkpoint written.
	OnSave   func(step int64)
	bestAcc  float64
	lastGood string
	// measure, when set, replaces the robust validation's measurement
	// (tests drive the best-keeping with chosen accuracies).
	measure func() (validation, error)
	acct    accounting

	// The sentinel (Config.Sentinel; pkg/sentinel): its settings, the
	// run's state (in checkpoint metadata), whether the checkpoint resumed
	// from is a check not yet judged, and whether checkpoints carry the
	// state (the sentinel is on, or the resumed run had one).
	sentCfg  sentinel.Config
	sent     sentinel.State
	recheck  bool
	sentMeta bool
	// SentinelMetrics, when set, records every check (sentinel.Collector;
	// set its gauges from a resumed run's state with SetState(Sentinel())).
	SentinelMetrics *sentinel.Collector
	// sentinelMeasure, when set, replaces the sentinel's measurement (tests
	// drive the rollbacks with chosen accuracies).
	sentinelMeasure func() (sentinel.Result, error)
}

// accounting is the trainer's compute accounting (checkpoint.Compute):
// what the run had spent at step `since` (restored on --resume), and what
// this start has spent after it.
type accounting struct {
	base       checkpoint.Compute
	since      int64
	unknown    bool   // resumed from a checkpoint without accounting: none is recorded
	perExample Passes // StepPasses of the configuration
	dataset    int    // training-set size; 0 when the batches are not a data.Loader
	wall       time.Duration
	runStart   time.Time // zero outside Run
	now        func() time.Time
}

// NewTrainer builds a trainer: the model is initialized from cfg.Seed (or
// --init-from), and with --resume restored from the newest checkpoint in
// cfg.Out. val, when non-nil, is the held-out data for robust validation.
func NewTrainer(be tensor.Backend, cfg Config, batches Batcher, val data.Source) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SentinelEvery > 0 && val == nil {
		return nil, fmt.Errorf("--sentinel-every needs validation data (the test split) and none was given")
	}
	m, err := models.New(be, cfg.Model, cfg.ModelConfig)
	if err != nil {
		return nil, err
	}
	w, err := NewWorker(cfg, m, batches)
	if err != nil {
		return nil, err
	}
	sched, err := optim.ParseSchedule(cfg.LRSchedule, cfg.LR)
	if err != nil {
		return nil, err
	}
	t := &Trainer{Cfg: cfg, W: w, Sched: sched, val: val, bestAcc: -1,
		params: make([]float32, w.layout.Total), grad: make([]float32, w.layout.Total), decay: optim.WeightDecay{WD: cfg.WeightDecay, Mask: DecayMask(w.layout)},
		sentCfg: cfg.Sentinel(), sent: sentinel.NewState(), sentMeta: cfg.SentinelEvery > 0}
	if err := t.initialize(); err != nil {
		return nil, err
	}
	if t.acct.perExample, err = StepPasses(cfg); err != nil {
		return nil, err
	}
	t.acct.now = time.Now
	if l, ok := batches.(*data.Loader); ok {
		t.acct.dataset = l.Source.Info().Len
	}
	if cfg.Resuming() {
		c := t.checkpoint()
		step, err := checkpoint.Restore(cfg.Out, cfg.ResumeFrom, c)
		if err != nil {
			return nil, err
		}
		t.Step = step
		prev, err := checkpoint.ReadCompute(c.Restored)
		if err != nil {
			return nil, fmt.Errorf("resume: %w", err)
		}
		if prev != nil {
			t.acct.base = *prev
		}
		t.acct.since, t.acct.unknown = step, prev == nil && step > 0
		nn.Gather(be, m.Trainable(), t.params, false)
		t.lastGood = filepath.Join(cfg.Out, checkpoint.ModelFileName(step))
		if b, ok := checkpoint.ReadBest(cfg.Out); ok {
			t.bestAcc = b.RobustAccuracy
		}
		s, ok, err := sentinel.ReadState(c.Restored)
		if err != nil {
			return nil, fmt.Errorf("resume: %w", err)
		}
		if ok {
			// The run's state goes on, its learning rate scale included
			// (also with the sentinel now off: the run's rate stays
			// lowered). The checkpoint of a check was saved before it was
			// judged: judge it again (Run), as the run would have.
			t.sent, t.sentMeta = s, true
			t.recheck = t.sentCfg.On() && step > 0 && step%t.sentCfg.Every == 0 && s.LastGood < step
		} else {
			// A checkpoint written without the sentinel: the one resumed
			// from is the last good one.
			t.sent.LastGood = step
		}
	}
	return t, nil
}

// initialize sets the model, the optimizer and the EMA to the run's
// initial state, step 0: the seed's initialization or --init-from's
// weights, a fresh optimizer and EMA (NewTrainer, and the sentinel's
// rollback to a run's start).
func (t *Trainer) initialize() error {
	cfg, m := t.Cfg, t.W.Model
	m.Init(cfg.Seed)
	if cfg.InitFrom != "" {
		f, err := checkpoint.ReadModelFile(cfg.InitFrom)
		if err != nil {
			return fmt.Errorf("--init-from: %w", err)
		}
		if err := m.LoadStateDict(f, cfg.InitFrom); err != nil {
			return fmt.Errorf("--init-from: %w", err)
		}
	}
	oc, _ := cfg.OptimConfig()
	opt, err := optim.New(oc, t.W.layout.Total)
	if err != nil {
		return err
	}
	t.Opt, t.EMA, t.Step = opt, nil, 0
	nn.Gather(m.Backend, m.Trainable(), t.params, false)
	if cfg.EMA > 0 {
		ec := optim.DefaultEMA()
		ec.Decay = cfg.EMA
		if t.EMA, err = optim.NewEMA(ec, t.params); err != nil {
			return err
		}
	}
	return nil
}

func (t *Trainer) checkpoint() *checkpoint.Checkpoint {
	meta := map[string]string{"dataset": t.Cfg.Dataset, "objective": t.Cfg.Objective, models.MetaTrainConfig: t.Cfg.JSON()}
	if c, ok := t.Compute(); ok {
		meta[checkpoint.MetaCompute] = c.JSON()
	}
	if t.sentMeta {
		meta[sentinel.MetaKey] = t.sent.JSON()
	}
	return &checkpoint.Checkpoint{Step: t.Step, Model: t.W.Model, Opt: t.Opt, EMA: t.EMA, Meta: meta}
}

// Compute is the run's compute accounting at the current step: the resumed
// checkpoint's, plus this start's steps (each of Batch examples on one
// worker, StepPasses per example) and its time in Run. ok is false for a
// run resumed from a checkpoint written without accounting, whose earlier
// compute is unknown: its checkpoints record none.
func (t *Trainer) Compute() (c checkpoint.Compute, ok bool) {
	a := &t.acct
	if a.unknown {
		return c, false
	}
	c = a.base
	steps := t.Step - a.since
	examples := steps * int64(t.Cfg.Batch)
	p := a.perExample.Scale(examples)
	c.Steps += steps
	c.ExamplesSeen += examples
	c.ForwardPasses += p.Forward
	c.BackwardPasses += p.Backward
	wall := a.wall
	if !a.runStart.IsZero() {
		wall += a.now().Sub(a.runStart)
	}
	c.WallSeconds += wall.Seconds()
	return c.WithDataset(a.dataset), true
}

// Gradient computes the current step's gradient into Grad(): the
// objective's (train.Worker) plus weight decay (optim.WeightDecay over
// DecayMask), whose term is in the returned loss; a non-finite loss is a
// NonFiniteError.
func (t *Trainer) Gradient() (objective.Terms, error) {
	terms, err := t.W.Gradient(t.Step, 0, 1, t.grad)
	if err != nil {
		return terms, err
	}
	l2, err := t.decay.Loss(t.params)
	if err != nil {
		return terms, err
	}
	terms.Loss += l2
	if math.IsNaN(terms.Loss) || math.IsInf(terms.Loss, 0) {
		return terms, &NonFiniteError{Step: t.Step, Terms: terms}
	}
	return terms, t.decay.Apply(t.grad, t.params)
}

// Grad is the gradient of the last Gradient (live).
func (t *Trainer) Grad() []float32 { return t.grad }

// TrainStep runs one step: gradient, optimizer update, EMA.
func (t *Trainer) TrainStep() (objective.Terms, error) {
	terms, err := t.Gradient()
	if err != nil {
		return terms, err
	}
	if err := t.Opt.Step(t.params, t.grad, t.LR(t.Step), t.Step); err != nil {
		if errors.Is(err, optim.ErrNonFinite) {
			return terms, &NonFiniteError{Step: t.Step, Terms: terms}
		}
		return terms, err
	}
	nn.Scatter(t.W.be, t.W.Model.Trainable(), t.params)
	if t.EMA != nil {
		if err := t.EMA.Update(t.params, t.Step); err != nil {
			return terms, err
		}
	}
	t.Step++
	return terms, nil
}

// Params returns the flat trainable parameters (live).
func (t *Trainer) Params() []float32 { return t.params }

// LR is the learning rate of step: the schedule's, times the sentinel's
// scale (1 until a rollback lowers it).
func (t *Trainer) LR(step int64) float64 { return t.Sched.LR(step) * t.sent.Scale() }

// Sentinel is the sentinel's state: its rollbacks, learning rate scale,
// best and last good step, and its last check's result (Last).
func (t *Trainer) Sentinel() sentinel.State { return t.sent }

// SentinelSummary is one line about the sentinel for the end of a run
// ("" when it neither ran nor left a state).
func (t *Trainer) SentinelSummary() string {
	if !t.sentMeta {
		return ""
	}
	s := t.sent
	line := fmt.Sprintf("sentinel: %d rollbacks, learning rate scale %.4g", s.Rollbacks, s.Scale())
	if s.Last != nil {
		line += fmt.Sprintf(", last check at step %d: %s; best multi-step accuracy %.2f%% at step %d", s.Last.Step, s.Last, 100*s.Best, s.BestStep)
	}
	return line
}

// Run trains until cfg.Steps or ctx is done, checkpointing every
// CheckpointEvery steps and at the end (or on cancellation); its time counts
// toward the run's wall time (Compute). A non-finite
// loss stops training with an error naming the last good checkpoint, which is
// left as it was.
func (t *Trainer) Run(ctx context.Context) error {
	t.acct.runStart = t.acct.now()
	defer func() {
		t.acct.wall += t.acct.now().Sub(t.acct.runStart)
		t.acct.runStart = time.Time{}
	}()
	startStep := t.Step
	if t.Progress != nil {
		t.prog = progress.New(progress.Options{Out: t.Progress, Unit: "steps", Total: t.Cfg.Steps, Start: t.Step,
			Terminal: t.Terminal, Now: t.acct.now})
		defer func() { t.prog.Close(); t.prog = nil }()
	}
	var sum objective.Terms
	var count int
	t.record(history.Record{Kind: history.KindStart, Step: t.Step, Steps: t.Cfg.Steps, Source: "train"})
	if t.recheck {
		// The checkpoint resumed from is a check's, saved before the check
		// judged it.
		t.recheck = false
		if _, err := t.sentinelCheck(false); err != nil {
			return err
		}
	}
	for t.Step < t.Cfg.Steps {
		if err := ctx.Err(); err != nil {
			_, serr := t.Save()
			return errors.Join(err, serr)
		}
		terms, err := t.TrainStep()
		if err != nil {
			var nf *NonFiniteError
			if errors.As(err, &nf) {
				last := t.lastGood
				if last == "" {
					last = "none (no checkpoint was written yet)"
				}
				return fmt.Errorf("%w; training stopped, last good checkpoint: %s", err, last)
			}
			return err
		}
		if t.OnStep != nil {
			t.OnStep(t.Step-1, terms)
		}
		accumulate(&sum, terms)
		count++
		logLine := t.Cfg.LogEvery > 0 && (t.Step%t.Cfg.LogEvery == 0 || t.Step == t.Cfg.Steps)
		if logLine {
			t.recordInterval(sum, count, t.acct.now().Sub(t.acct.runStart), max(t.Step-startStep, 0))
		}
		if t.prog != nil && (logLine || t.prog.Terminal()) {
			st := t.prog.Observe(t.Step)
			line := fmt.Sprintf("step %d/%d  %.2f steps/s  %.0f samples/s%s  lr %.3g  %s",
				t.Step, t.Cfg.Steps, st.Rate, st.Rate*float64(t.Cfg.Batch), termsLine(sum, count), t.LR(t.Step-1), st.TimeString())
			t.prog.Draw(t.Step, line)
			if logLine {
				t.prog.Println(line)
			}
		}
		if logLine {
			sum, count = objective.Terms{}, 0
		}
		if t.sentCfg.On() && t.Step%t.sentCfg.Every == 0 {
			// The check saves the checkpoint it judges; after a rollback the
			// step's validation is moot (the run is back at an earlier step).
			rolled, err := t.sentinelCheck(true)
			if err != nil {
				return err
			}
			if rolled {
				continue
			}
		} else if t.Cfg.CheckpointEvery > 0 && t.Step%t.Cfg.CheckpointEvery == 0 && t.Step < t.Cfg.Steps {
			if _, err := t.Save(); err != nil {
				return err
			}
		}
		if t.Cfg.ValidateEvery > 0 && t.val != nil && (t.Step%t.Cfg.ValidateEvery == 0 || t.Step == t.Cfg.Steps) {
			if err := t.Validate(); err != nil {
				return err
			}
		}
	}
	if _, err := t.Save(); err != nil {
		return err
	}
	if t.prog != nil && t.Step > startStep {
		el := t.acct.now().Sub(t.acct.runStart)
		rate := float64(t.Step-startStep) / max(el.Seconds(), 1e-9)
		t.prog.Close()
		t.printf("trained steps %d to %d in %s: %.2f steps/s, %.0f samples/s", startStep, t.Step, progress.FormatDuration(el), rate, rate*float64(t.Cfg.Batch))
	}
	return nil
}

// printf prints a line to Progress (above the live bar while Run draws
// one).
func (t *Trainer) printf(format string, a ...any) {
	switch {
	case t.prog != nil:
		t.prog.Println(fmt.Sprintf(format, a...))
	case t.Progress != nil:
		fmt.Fprintf(t.Progress, format+"\n", a...)
	}
}

// termsLine formats the mean of the accumulated terms, leaving out those the
// objective does not have.
func termsLine(s objective.Terms, n int) string {
	if n == 0 {
		return ""
	}
	var b strings.Builder
	// Accuracies in percent, as in every human-readable output.
	for _, f := range []struct {
		name  string
		v     float64
		prec  string
		scale float64
	}{{"loss", s.Loss, "%.4f", 1}, {"clean CE", s.CleanCE, "%.4f", 1}, {"adv CE", s.AdvCE, "%.4f", 1}, {"pair", s.Pair, "%.4f", 1},
		{"clean acc", s.CleanAcc, "%.2f%%", 100}, {"adv acc", s.AdvAcc, "%.2f%%", 100}} {
		if !math.IsNaN(f.v) {
			fmt.Fprintf(&b, "  %s "+f.prec, f.name, f.scale*f.v/float64(n))
		}
	}
	return b.String()
}

func accumulate(s *objective.Terms, t objective.Terms) {
	add := func(a *float64, b float64) {
		if !math.IsNaN(b) {
			*a += b
		} else {
			*a = math.NaN()
		}
	}
	add(&s.Loss, t.Loss)
	add(&s.CleanCE, t.CleanCE)
	add(&s.AdvCE, t.AdvCE)
	add(&s.Pair, t.Pair)
	add(&s.CleanAcc, t.CleanAcc)
	add(&s.AdvAcc, t.AdvAcc)
	add(&s.LogitNorm, t.LogitNorm)
}

// Save writes a checkpoint of the current step and prunes old ones (never
// the sentinel's last good checkpoint, which a rollback restores).
func (t *Trainer) Save() (checkpoint.Pointer, error) {
	p, err := t.save()
	if err != nil {
		return p, err
	}
	return p, t.prune()
}

func (t *Trainer) save() (checkpoint.Pointer, error) {
	c := t.checkpoint()
	p, err := checkpoint.Save(t.Cfg.Out, *c, t.Cfg.Seed)
	if err != nil {
		return p, fmt.Errorf("checkpoint at step %d: %w", t.Step, err)
	}
	t.lastGood = filepath.Join(t.Cfg.Out, p.Model)
	if t.OnSave != nil {
		t.OnSave(t.Step)
	}
	return p, nil
}

func (t *Trainer) prune() error {
	if t.sentCfg.On() {
		return checkpoint.PruneKeeping(t.Cfg.Out, t.Cfg.Keep, t.sent.LastGood)
	}
	return checkpoint.Prune(t.Cfg.Out, t.Cfg.Keep)
}

// sentinelCheck is the sentinel's check of the current step (pkg/sentinel):
// the checkpoint of the step is saved (when save; a resumed run's is
// there), the model measured, the result judged. Accepted, the checkpoint
// is the last good one. Tripped, the run rolls back to the last good
// checkpoint (rollback) with the lowered learning rate scale and rolled is
// true. Either way one line goes to Progress. A trip beyond
// --sentinel-max-rollbacks is an error that stops training.
func (t *Trainer) sentinelCheck(save bool) (rolled bool, err error) {
	if save {
		if _, err := t.Save(); err != nil {
			return false, err
		}
	}
	measure := t.sentinelMeasure
	if measure == nil {
		measure = func() (sentinel.Result, error) {
			return sentinel.Measure(t.W.Model, t.val, float32(t.Cfg.Eps), t.sentCfg, t.Cfg.Seed)
		}
	}
	r, err := measure()
	if err != nil {
		return false, fmt.Errorf("sentinel check at step %d: %w", t.Step, err)
	}
	r.Step = t.Step
	v, err := t.sent.Observe(t.sentCfg, r)
	if err != nil {
		if errors.Is(err, sentinel.ErrTooManyRollbacks) && t.sent.LastGood > 0 {
			err = fmt.Errorf("%w (%s: after changing the configuration, continue from it with --resume-from %d)",
				err, filepath.Join(t.Cfg.Out, checkpoint.ModelFileName(t.sent.LastGood)), t.sent.LastGood)
		}
		return false, fmt.Errorf("training stopped: %w", err)
	}
	t.SentinelMetrics.Record(r, v, t.sent)
	t.recordSentinel(r, v)
	if !v.Trip {
		t.printf("sentinel at step %d: %s; good (best multi-step %.2f%% at step %d, learning rate scale %.4g)",
			t.Step, r, 100*t.sent.Best, t.sent.BestStep, t.sent.Scale())
		return false, nil
	}
	t.printf("sentinel rollback %d of at most %d: %s", t.sent.Rollbacks, t.sentCfg.MaxRollbacks, v.Reason)
	from := t.Step
	if err := t.rollback(v.RollbackTo); err != nil {
		return true, err
	}
	t.record(history.Record{Kind: history.KindRollback, Step: t.Step, From: from, Reason: v.Reason, LRScale: history.Float(t.sent.Scale())})
	return true, nil
}

// rollback returns the run to the checkpoint of step to (0: the run's
// initial state): parameters, optimizer, EMA and step as they were there,
// the sentinel's state as it is now. The checkpoint of step to is written
// again (its metadata then holds the new state, and latest.json points at
// it), and every checkpoint after it, the abandoned trajectory's, is
// deleted. Every step is a function of (seed, step) and the state, so the
// run from here is as deterministic as any.
func (t *Trainer) rollback(to int64) error {
	from := t.Step
	if !t.acct.unknown {
		t.acct.rewind(from, to, t.Cfg.Batch)
	}
	if to == 0 {
		if err := t.initialize(); err != nil {
			return fmt.Errorf("sentinel: rolling back to the initial state: %w", err)
		}
	} else {
		step, err := checkpoint.Restore(t.Cfg.Out, to, t.checkpoint())
		if err != nil {
			return fmt.Errorf("sentinel: rolling back to step %d: %w", to, err)
		}
		t.Step = step
		nn.Gather(t.W.be, t.W.Model.Trainable(), t.params, false)
	}
	if _, err := t.save(); err != nil {
		return err
	}
	if _, err := checkpoint.RemoveAfter(t.Cfg.Out, to); err != nil {
		return fmt.Errorf("sentinel: deleting the checkpoints after step %d: %w", to, err)
	}
	return t.prune()
}

// Validate measures robust accuracy (the training attack, or PGD at the
// configured ε if the objective has none) on the last ValidateExamples
// held-out examples (data.Tail: not the first ones, which `logitpair eval`
// and the reproduction scripts score, so the checkpoint is not selected on
// the examples it is reported on) and keeps the best model as
// best.safetensors. A robust
// accuracy that collapses while clean accuracy stays high is FGSM training's
// "catastrophic overfitting"; best.safetensors keeps the model from before.
func (t *Trainer) Validate() error {
	measure := t.measure
	if measure == nil {
		measure = t.measureRobust
	}
	v, err := measure()
	if err != nil {
		return fmt.Errorf("validation at step %d: %w", t.Step, err)
	}
	t.record(history.Record{Kind: history.KindValidation, Step: t.Step, Clean: history.Float(v.Clean), Robust: history.Float(v.Robust),
		Attack: v.Attack, Examples: v.Examples})
	t.printf("validation at step %d: clean %.2f%%, robust %.2f%% (%s, %d examples)", t.Step, 100*v.Clean, 100*v.Robust, v.Attack, v.Examples)
	return t.keepBest(v)
}

// validation is one robust validation's result.
type validation struct {
	Robust, Clean float64
	Attack        string
	Examples      int
}

// measureRobust is Validate's measurement: clean and white-box accuracy
// on the last ValidateExamples held-out examples.
func (t *Trainer) measureRobust() (validation, error) {
	ac, err := t.Cfg.AttackConfig()
	if err != nil {
		ac = attack.PGD(float32(t.Cfg.Eps), float32(t.Cfg.StepSize), max(t.Cfg.AttackSteps, 1))
	}
	ac.Restarts, ac.RandomStart = 1, true
	rep, err := eval.Run(t.W.Model, data.Tail(t.val, t.Cfg.ValidateExamples), eval.Options{Batch: 100, Seed: t.Cfg.Seed, Attacks: []attack.Config{ac}})
	if err != nil {
		return validation{}, err
	}
	return validation{Robust: *rep.WhiteboxAccuracy, Clean: rep.CleanAccuracy, Attack: ac.String(), Examples: rep.Examples}, nil
}

// keepBest writes the current model as best.safetensors (and best.json)
// when v's robust accuracy beats every earlier one of the run (resumed runs
// included: the best so far is read back from best.json); a tie or a worse
// accuracy leaves the best files as they are.
func (t *Trainer) keepBest(v validation) error {
	if !(v.Robust > t.bestAcc) {
		return nil
	}
	f := checkpoint.ModelFile(t.W.Model, t.Step, t.checkpoint().Meta)
	if err := checkpoint.WriteBest(t.Cfg.Out, f, checkpoint.Best{Step: t.Step, RobustAccuracy: v.Robust, CleanAccuracy: v.Clean, Attack: v.Attack}); err != nil {
		return err
	}
	t.bestAcc = v.Robust
	return nil
}

// record passes r to Record, when set.
func (t *Trainer) record(r history.Record) {
	if t.Record != nil {
		t.Record(r)
	}
}

// recordInterval records a log interval: the mean of the n steps' terms in
// sum, and the rate over the steps done in el since Run began.
func (t *Trainer) recordInterval(sum objective.Terms, n int, el time.Duration, done int64) {
	if t.Record == nil || n == 0 {
		return
	}
	m := func(v float64) *float64 { return history.Float(v / float64(n)) }
	r := history.Record{Kind: history.KindTrain, Step: t.Step, Interval: n, Loss: m(sum.Loss), CleanCE: m(sum.CleanCE), AdvCE: m(sum.AdvCE),
		Pair: m(sum.Pair), CleanAcc: m(sum.CleanAcc), AdvAcc: m(sum.AdvAcc), LR: history.Float(t.LR(t.Step - 1)), Elapsed: history.Float(el.Seconds())}
	if el > 0 {
		rate := float64(done) / el.Seconds()
		r.StepsPerSec, r.SamplesPerSec = history.Float(rate), history.Float(rate*float64(t.Cfg.Batch))
	}
	t.Record(r)
}

// recordSentinel records a check Observe judged.
func (t *Trainer) recordSentinel(r sentinel.Result, v sentinel.Verdict) {
	verdict := history.VerdictGood
	if v.Trip {
		verdict = history.VerdictRollback
	}
	t.record(history.Record{Kind: history.KindSentinel, Step: r.Step, Clean: history.Float(r.Clean), SingleStep: history.Float(r.SingleStep),
		MultiStep: history.Float(r.MultiStep), Examples: r.Examples, Attack: r.MultiAttack, Verdict: verdict, Rule: v.Rule})
}
