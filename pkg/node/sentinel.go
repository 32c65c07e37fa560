package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/atomicfile"
	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/safetensors"
	"github.com/logitpair/logitpair/pkg/sentinel"
	"github.com/logitpair/logitpair/pkg/statuspage"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
)

// The cluster's training sentinel (pkg/sentinel; issue 14) runs in the
// coordinator, on its checkpoints:
//
//   - Checks: at every consistent checkpoint of a step s that is a multiple
//     of --sentinel-every and before --steps (the cluster requires
//     --sentinel-every to be a multiple of --checkpoint-every, so every
//     check step has a checkpoint), once the model file is written, the
//     sentinel loads it and measures it (sentinel.Measure) on the test
//     split of --data-dir, which the coordinator opens at start (it fails
//     there, naming the directory, when it cannot).
//   - Beside training: a check runs on its own goroutine while the
//     workers go on. One check at a time: the checkpoint of the next check
//     step waits for the running check to end, and the last check before
//     --steps is waited for at once, so that the run does not end before
//     its verdict (the workers are told the run is done at --steps, and a
//     done run cannot roll back). The final checkpoint, at --steps, is not
//     judged: evaluate it with logitpair eval.
//   - Abandoned checks: a check whose step a rollback has abandoned (the
//     coordinator's generation changed while it ran: a requested rollback
//     or a shard's recovery) is dropped, as is the check of a checkpoint
//     reached while a tripped check's rollback is pending.
//   - Verdicts: State.Observe. Accepted: the step is the last good one,
//     which the coordinator keeps (KeepCheckpoint: neither the shards nor
//     the model writer prune it). Tripped: RequestRollback(LastGood, the
//     lowered scale, the reason); the coordinator logs it ("rolled back on
//     request"), counts it (Status.Rollbacks), and once every shard is
//     back the sentinel adopts the tripped state, the rollback counts in
//     logitpair_sentinel_rollbacks_total, and the coordinator's model
//     files go back too (the target's checkpoint is written again, the
//     later ones deleted), as local training's.
//   - Step 0: before an accepted check the last good step is 0, the run's
//     initial state. The cluster holds it without a checkpoint file: every
//     shard saves its initial state as version 0 (paramserver.NewLocal)
//     and the coordinator can always return to step 0; the sentinel keeps
//     version 0 from pruning (KeepCheckpoint(0)) from the coordinator's
//     start until a check is accepted. So a first check that trips rolls
//     the run back to its start at the lower rate, as local training does.
//   - Too many rollbacks, or a broken measurement (an unreadable model
//     file, an accuracy outside [0, 1]): the coordinator stops with the
//     error (a non-zero exit), as local training stops. The state file is
//     left as it was, so a restart trips again in the same way until the
//     configuration changes.
//   - State: DIR/sentinel.json (SentinelFile), written atomically after
//     every accepted check and every rollback. A restarted coordinator
//     continues with it, its learning-rate scale included
//     (coordinator.Config.LRScale: the state is written once the
//     rollback truncated the log, before any step at the new scale is
//     logged, so the state's scale and the log's last entry's agree, and
//     the state also covers a coordinator that died between the rollback
//     and its next step). The state also travels in every checkpoint's
//     metadata (sentinel.MetaKey), so `logitpair train --resume --out DIR`
//     continues a cluster run with it.

// SentinelFile is the name, in the coordinator's --dir, of the cluster
// sentinel's state (sentinel.State as JSON).
const SentinelFile = "sentinel.json"

// checkClusterSentinel checks the sentinel's settings for the cluster: every check
// step must be a checkpoint step.
func checkClusterSentinel(cfg train.Config) error {
	sc := cfg.Sentinel()
	if !sc.On() {
		return nil
	}
	if cfg.CheckpointEvery <= 0 || sc.Every%cfg.CheckpointEvery != 0 {
		return fmt.Errorf("--sentinel-every %d: in a cluster the coordinator checks its checkpoints, so --sentinel-every must be a positive multiple of --checkpoint-every (%d)",
			sc.Every, cfg.CheckpointEvery)
	}
	return nil
}

// sentinelCoordinator is what the sentinel needs of the coordinator.
type sentinelCoordinator interface {
	RequestRollback(to int64, lrScale float64, reason string) error
	KeepCheckpoint(steps ...int64)
	Status() coordinator.Status
}

// measureFunc measures the model of step (its model file loaded into m).
type measureFunc func(step int64, m *models.Model) (sentinel.Result, error)

// clusterSentinel is the coordinator's sentinel (the comment above).
type clusterSentinel struct {
	cfg     sentinel.Config
	steps   int64
	dir     string
	model   *models.Model // the checks' copy of the model, loaded per check
	measure measureFunc
	coll    *sentinel.Collector
	log     *zap.Logger
	// record, when set, records every check judged (the run's history).
	record func(sentinel.Result, sentinel.Verdict)
	errs   chan error // a check's fatal error (capacity 1)

	mu      sync.Mutex
	coord   sentinelCoordinator
	state   sentinel.State
	pending *trip         // a tripped check whose rollback the coordinator has not carried out
	running chan struct{} // closed when the running check ends; nil: none
}

// trip is a tripped check: the result, the verdict and the state after it.
type trip struct {
	r     sentinel.Result
	v     sentinel.Verdict
	state sentinel.State
}

// readSentinelState reads DIR/sentinel.json; ok is false when there is
// none.
func readSentinelState(dir string) (s sentinel.State, ok bool, err error) {
	path := filepath.Join(dir, SentinelFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return sentinel.State{}, false, nil
	}
	if err != nil {
		return sentinel.State{}, false, err
	}
	s, _, err = sentinel.ReadState(map[string]string{sentinel.MetaKey: string(b)})
	if err != nil {
		return sentinel.State{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return s, true, nil
}

// newClusterSentinel builds the coordinator's sentinel for cfg with the
// state st (sentinel.NewState for a new run). With cfg's sentinel on it
// opens the test split of cfg.DataDir (measure nil: sentinel.Measure on
// it; tests pass their own).
func newClusterSentinel(cfg train.Config, dir string, st sentinel.State, measure measureFunc, coll *sentinel.Collector, log *zap.Logger) (*clusterSentinel, error) {
	s := &clusterSentinel{cfg: cfg.Sentinel(), steps: cfg.Steps, dir: dir, measure: measure, coll: coll, log: log,
		errs: make(chan error, 1), state: st}
	coll.SetState(st)
	if !s.cfg.On() {
		return s, nil
	}
	m, err := models.New(cpu.New(cpu.Options{}), cfg.Model, cfg.ModelConfig)
	if err != nil {
		return nil, err
	}
	s.model = m
	val, err := data.Open(cfg.Dataset, cfg.DataDir, "test", data.ForInput(m.Input).WithShared(func(msg string) { log.Info(msg) }))
	if err == nil {
		err = val.Info().Fits(cfg.Model, m.Input, m.Classes)
	}
	if err != nil {
		return nil, fmt.Errorf("--sentinel-every: the coordinator checks its checkpoints on the test split of %s in --data-dir %q and cannot open it "+
			"(on the coordinator's machine, fetch it with `logitpair data fetch %s --dir %s`, or point --data-dir at it): %w",
			cfg.Dataset, cfg.DataDir, cfg.Dataset, cfg.DataDir, err)
	}
	if s.measure == nil {
		eps, seed := float32(cfg.Eps), cfg.Seed
		s.measure = func(_ int64, m *models.Model) (sentinel.Result, error) {
			return sentinel.Measure(m, val, eps, s.cfg, seed)
		}
	}
	return s, nil
}

// State is the sentinel's state now.
func (s *clusterSentinel) State() sentinel.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Meta is the checkpoint metadata that carries the state (ModelWriter.Meta).
func (s *clusterSentinel) Meta() map[string]string {
	return map[string]string{sentinel.MetaKey: s.State().JSON()}
}

// bind attaches the coordinator, before its loop starts: it keeps the last
// good checkpoint (step 0 for a new run: the shards' initial state).
func (s *clusterSentinel) bind(c sentinelCoordinator) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.coord = c
	if s.cfg.On() {
		c.KeepCheckpoint(s.state.LastGood)
	}
}

// saveLocked writes the state to DIR/sentinel.json.
func (s *clusterSentinel) saveLocked() error {
	return atomicfile.Write(filepath.Join(s.dir, SentinelFile), []byte(s.state.JSON()+"\n"), 0o644)
}

// fail hands a fatal error to the coordinator's run group (the first one).
func (s *clusterSentinel) fail(err error) {
	s.log.Error("sentinel: training stopped", zap.Error(err))
	select {
	case s.errs <- err:
	default:
	}
}

// wait waits for the running check to end (or ctx).
func (s *clusterSentinel) wait(ctx context.Context) error {
	s.mu.Lock()
	ch := s.running
	s.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkpointed runs in the coordinator's Checkpointed hook, after the model
// file of step was written: at a check step it starts the check (after the
// running one ended), and waits for it when it is the run's last.
func (s *clusterSentinel) checkpointed(ctx context.Context, step int64) error {
	if !s.cfg.On() || step <= 0 || step%s.cfg.Every != 0 || step >= s.steps {
		return nil
	}
	if err := s.wait(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	if s.pending != nil {
		s.mu.Unlock()
		s.log.Info("sentinel: check dropped: a rollback is pending", zap.Int64("step", step), zap.Int64("rollback_to", s.pending.v.RollbackTo))
		return nil
	}
	if s.coord == nil {
		s.mu.Unlock()
		return nil
	}
	s.coord.KeepCheckpoint(s.state.LastGood, step)
	gen := s.coord.Status().Generation
	done := make(chan struct{})
	s.running = done
	s.mu.Unlock()
	go func() {
		defer close(done)
		s.check(step, gen)
	}()
	if step+s.cfg.Every >= s.steps {
		// The run's last check: its verdict must come before the run ends.
		return s.wait(ctx)
	}
	return nil
}

// check measures the checkpoint of step and acts on the verdict; gen is
// the coordinator's generation when the checkpoint was written.
func (s *clusterSentinel) check(step, gen int64) {
	path := filepath.Join(s.dir, checkpoint.ModelFileName(step))
	f, err := safetensors.ReadFile(path)
	if err == nil {
		err = s.model.LoadStateDict(f, path)
	}
	var r sentinel.Result
	if err == nil {
		r, err = s.measure(step, s.model)
	}
	if err != nil {
		s.fail(fmt.Errorf("sentinel check at step %d: %w", step, err))
		return
	}
	r.Step = step
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.coord.Status().Generation; g != gen {
		s.log.Info("sentinel: check dropped: the run rolled back while it ran", zap.Int64("step", step), zap.String("result", r.String()))
		return
	}
	next := s.state
	v, err := next.Observe(s.cfg, r)
	if err != nil {
		if errors.Is(err, sentinel.ErrTooManyRollbacks) && s.state.LastGood > 0 {
			err = fmt.Errorf("%w (%s)", err, filepath.Join(s.dir, checkpoint.ModelFileName(s.state.LastGood)))
		}
		s.fail(fmt.Errorf("training stopped: %w", err))
		return
	}
	if !v.Trip {
		s.recordCheck(r, v)
		s.state = next
		s.coll.Record(r, v, next)
		s.coord.KeepCheckpoint(next.LastGood)
		if err := s.saveLocked(); err != nil {
			s.fail(fmt.Errorf("sentinel: %w", err))
			return
		}
		s.log.Info("sentinel check good", zap.Int64("step", step), zap.String("result", r.String()),
			zap.Float64("best_multi_step", next.Best), zap.Int64("best_step", next.BestStep), zap.Float64("lr_scale", next.Scale()))
		return
	}
	s.log.Warn("sentinel tripped: rolling back", zap.Int64("step", step), zap.String("rule", v.Rule), zap.Int64("rollback_to", v.RollbackTo),
		zap.Int("rollback", next.Rollbacks), zap.Int("max_rollbacks", s.cfg.MaxRollbacks), zap.String("reason", v.Reason))
	if err := s.coord.RequestRollback(v.RollbackTo, v.LRScale, v.Reason); err != nil {
		// The run is done or past the target: nothing to roll back.
		s.log.Error("sentinel: the coordinator refused the rollback; the run goes on as it was", zap.Int64("step", step), zap.Error(err))
		return
	}
	s.recordCheck(r, v)
	s.pending = &trip{r: r, v: v, state: next}
}

func (s *clusterSentinel) recordCheck(r sentinel.Result, v sentinel.Verdict) {
	if s.record != nil {
		s.record(r, v)
	}
}

// rolledBack runs in the coordinator's RolledBack hook: the tripped check's
// state becomes the sentinel's (its last good step at most to: the
// coordinator rolls back further when to is not held everywhere), counted
// and written.
func (s *clusterSentinel) rolledBack(to int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending
	if p == nil {
		return
	}
	s.pending = nil
	st := p.state
	if to < st.LastGood {
		st.LastGood = to
	}
	s.state = st
	s.coll.Record(p.r, p.v, st)
	if s.coord != nil {
		s.coord.KeepCheckpoint(st.LastGood)
	}
	if err := s.saveLocked(); err != nil {
		s.fail(fmt.Errorf("sentinel: %w", err))
	}
}

// run waits for a fatal error (the run group's actor: the coordinator
// stops with it) or ctx.
func (s *clusterSentinel) run(ctx context.Context) error {
	select {
	case err := <-s.errs:
		return err
	case <-ctx.Done():
		return nil
	}
}

// status is the sentinel on the status page (nil when it is off and never
// ran).
func (s *clusterSentinel) status() *statuspage.Sentinel {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cfg.On() && s.state.Last == nil && s.state.Rollbacks == 0 {
		return nil
	}
	out := &statuspage.Sentinel{Every: s.cfg.Every, LastGood: s.state.LastGood, Best: s.state.Best, BestStep: s.state.BestStep,
		Rollbacks: s.state.Rollbacks, MaxRollbacks: s.cfg.MaxRollbacks, LRScale: s.state.Scale(), Pending: s.pending != nil}
	if l := s.state.Last; l != nil {
		out.Last = &statuspage.SentinelCheck{Step: l.Step, Clean: l.Clean, SingleStep: l.SingleStep, MultiStep: l.MultiStep, Gap: l.Gap()}
	}
	return out
}
