// Package coordinator is the cluster's control plane: it owns the global
// step, decides which workers' gradients make each step, writes that
// decision durably to the commit log before any shard applies it, and drives
// checkpoints, recovery and rollback. It knows nothing of gRPC or memberlist:
// shards are reached through ShardClient, liveness arrives through SetLive.
//
// One step t (docs/architecture.md, "One synchronous cluster step"): every worker pulls version t from every
// shard, computes its gradient, pushes slice k to shard k and reports
// done(t, w). The first N = W − b reports fix S_t; (t, S_t) is appended to the
// commit log (fsync), then Apply(t, S_t) goes to every shard, which averages
// exactly those N workers' gradients. Later reports for t are backups: dropped
// and counted. The invariant, stronger than TensorFlow's SyncReplicasOptimizer
// (whose per-variable accumulators may average different workers' gradients on
// different variables): every shard applies the mean of the same N gradients,
// and the log says which, so a run can be replayed exactly.
//
// Failures: a dead worker is simply not in S_t; with fewer than N live
// workers the coordinator pauses and says why (or, with Elastic, lowers N to
// the live count — the learning rate is left as it is: the mean over fewer
// gradients has the same expectation and more variance). Gossip alone never
// drops a worker: one that gossip declares dead counts as gone only once it
// has also missed Config.MissedSteps steps (liveness.go), so a loaded machine
// whose probes time out while its pushes arrive keeps every worker.
//
// A shard that does not answer (found by the probe every Config.ProbeEvery
// while the coordinator waits for reports, or by a failed Apply) pauses the
// cluster with the shard and the error as the reason. Once every shard
// answers, the coordinator either re-sends the logged Apply (idempotent) or
// rolls every shard back to the newest step that every shard and the
// coordinator hold intact, truncating the log to it, so each step appears
// once in the final log; when no such step exists it stops with an error
// that lists what each holds. A restarted coordinator recovers the same way
// from its log. Every retry pauses with capped, jittered backoff
// (pkg/retry).
//
// All recovery runs on Run's goroutine: ShardRestarted, the probe and a
// failed Apply only ask for it, so two recoveries never race.
//
// The learning-rate scale: every logged step carries the factor its
// scheduled learning rate is multiplied by (paramserver.Entry.LRScale, 1
// unless changed), and the shards apply the step with the logged factor, so
// replaying the log reproduces a run whose scale changed. The scale changes
// only with a rollback asked for by RequestRollback (the cluster's
// training sentinel, pkg/node, asks when robust accuracy collapses): on
// Run's goroutine, like recovery, it restores every shard to the requested
// checkpoint, truncates the log after it, bumps the generation and commits
// every later step with the new scale. KeepCheckpoint names the
// checkpoints that such a rollback may target: every shard is told to
// keep them when it prunes old states (Checkpoint's keep).
//
// Membership (membership.go) is the coordinator's table of worker slots and
// shard addresses, a plain state machine with typed errors that pkg/rpc
// serves; Late (late.go) holds the Coordinator for what is built before it.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/retry"
)

// ErrRecovering is returned by Report before the coordinator has recovered
// the global step.
var ErrRecovering = errors.New("coordinator: recovering the global step; retry")

// ErrNoCommonStep is the kind of the error Run stops with when no step is
// held intact by every shard and the coordinator, so no rollback can give a
// consistent state. Its message lists what each holds.
var ErrNoCommonStep = errors.New("no step that every shard and the coordinator hold")

// ShardClient is how the coordinator reaches one parameter-server shard.
type ShardClient interface {
	// Apply applies step with the gradients of exactly workers and the
	// step's scheduled learning rate multiplied by lrScale (the logged
	// paramserver.Entry.LRScale: 0 stands for 1); idempotent for a step the
	// shard already applied.
	Apply(ctx context.Context, step int64, workers []int, lrScale float64) error
	// Version is the next step the shard will apply.
	Version(ctx context.Context) (int64, error)
	// Checkpoint persists the shard's state; the shard must be at version
	// step. When it prunes older states it keeps those of the versions in
	// keep (KeepCheckpoint).
	Checkpoint(ctx context.Context, step int64, keep []int64) error
	// Restore loads the state the shard persisted at step.
	Restore(ctx context.Context, step int64) error
	// Held lists the versions whose persisted state the shard holds intact,
	// newest first.
	Held(ctx context.Context) ([]int64, error)
}

// Config configures a Coordinator.
type Config struct {
	// Workers is W, backups included; Backups is b; N = W − b gradients
	// make a step.
	Workers, Backups int
	// Elastic lowers N to the number of live workers when fewer than W − b
	// are alive, and raises it again as they return. It does so once W − b
	// workers have been live together: until then (a new run, a restarted
	// coordinator) it waits for them, as without Elastic.
	Elastic bool
	// Steps is the run's length: the coordinator is done at version Steps.
	Steps int64
	// CheckpointEvery: a consistent checkpoint every this many steps (and
	// at the end); 0 only at the end.
	CheckpointEvery int64
	// RetryEvery is the first pause after a failed attempt to reach or
	// recover the shards; the pauses double up to RetryMax, with jitter
	// (pkg/retry). RetryMax 0 means 10 s (or RetryEvery, if larger).
	RetryEvery, RetryMax time.Duration
	// CallTimeout bounds each call to a shard.
	CallTimeout time.Duration
	// ProbeEvery: while it waits for reports, the coordinator checks this
	// often that every shard answers (Version, bounded by ProbeTimeout); one
	// that does not pauses the cluster with its error as the reason. 0
	// means 2 s and 10 s.
	ProbeEvery, ProbeTimeout time.Duration
	// MissedSteps: a worker that gossip declares dead is counted as gone
	// (and Hooks.Release frees its slot) only once it has also missed this
	// many steps: steps committed since its last report, plus, while the
	// current step waits, the step times that passed (the mean recent step
	// time, at least MinStepTime). 0 means 3 and 5 s.
	MissedSteps int
	MinStepTime time.Duration
	// InitialGeneration starts the generation counter (bumped by every
	// rollback). A restarted coordinator must start above every generation
	// its predecessor handed out, so that workers waiting on a step they
	// reported to the dead coordinator stop waiting and report again: the
	// processes use a persisted incarnation count shifted left by 32
	// (IncarnationGeneration; SplitGeneration reads it back).
	InitialGeneration int64
	// LRScale is the learning-rate scale of the steps committed from the
	// start (0: the scale of the log's last entry, or 1 for an empty log).
	// A restarted coordinator whose last requested rollback changed the
	// scale and then died before it logged a step is given the scale by its
	// wiring (pkg/node keeps it in the sentinel's state file).
	LRScale float64
	// Now is the clock of the liveness rule (nil: time.Now).
	Now func() time.Time
}

// DefaultConfig is the paper's ImageNet layout: 53 workers, 3 backups.
func DefaultConfig() Config {
	return Config{Workers: 53, Backups: 3, Steps: 1000, CheckpointEvery: 100, RetryEvery: 500 * time.Millisecond,
		RetryMax: 10 * time.Second, CallTimeout: 30 * time.Second, ProbeEvery: 2 * time.Second, ProbeTimeout: 10 * time.Second,
		MissedSteps: 3, MinStepTime: 5 * time.Second}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Workers < 1:
		return fmt.Errorf("coordinator: --workers must be at least 1, got %d", c.Workers)
	case c.Backups < 0 || c.Backups >= c.Workers:
		return fmt.Errorf("coordinator: --backups must be in [0, workers) = [0, %d), got %d", c.Workers, c.Backups)
	case c.Steps < 1:
		return fmt.Errorf("coordinator: --steps must be at least 1, got %d", c.Steps)
	case c.CheckpointEvery < 0:
		return fmt.Errorf("coordinator: --checkpoint-every must be ≥ 0")
	case c.RetryEvery <= 0 || c.CallTimeout <= 0:
		return fmt.Errorf("coordinator: retry interval and call timeout must be positive")
	case c.MissedSteps < 0:
		return fmt.Errorf("coordinator: --missed-steps must be at least 1, got %d", c.MissedSteps)
	case c.RetryMax < 0 || c.ProbeEvery < 0 || c.ProbeTimeout < 0 || c.MinStepTime < 0:
		return fmt.Errorf("coordinator: RetryMax, ProbeEvery, ProbeTimeout and MinStepTime must not be negative")
	case c.LRScale < 0 || math.IsNaN(c.LRScale) || math.IsInf(c.LRScale, 0):
		return fmt.Errorf("coordinator: LRScale must be positive and finite (0: from the log), got %v", c.LRScale)
	}
	return nil
}

// withDefaults fills the zero values that mean "default".
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.RetryMax == 0 {
		c.RetryMax = max(d.RetryMax, c.RetryEvery)
	}
	if c.ProbeEvery == 0 {
		c.ProbeEvery = d.ProbeEvery
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = d.ProbeTimeout
	}
	if c.MissedSteps == 0 {
		c.MissedSteps = d.MissedSteps
	}
	if c.MinStepTime == 0 {
		c.MinStepTime = d.MinStepTime
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Hooks let the wiring act at checkpoints and report progress.
type Hooks struct {
	// Checkpointed runs after every shard persisted its state at step (e.g.
	// to write the model file); an error leaves the previous checkpoint as
	// the consistent one.
	Checkpointed func(ctx context.Context, step int64) error
	// Committed runs after step was applied by every shard.
	Committed func(step int64, workers []int)
	// Release runs when a worker is counted as gone (gossip declared it dead
	// and it missed Config.MissedSteps steps): the wiring frees its slot.
	// It runs without the coordinator's lock held.
	Release func(slot int)
	// ShardReachable runs when the probe finds that shard k stopped or
	// started answering (err nil: answering again).
	ShardReachable func(k int, err error)
	// RolledBack runs on Run's goroutine after a rollback RequestRollback
	// asked for: every shard is at step to, and later steps are applied
	// with lrScale.
	RolledBack func(to int64, lrScale float64, reason string)
}

// CheckpointStore remembers the consistent checkpoints durably.
type CheckpointStore interface {
	// LastCheckpoint is the newest consistent checkpoint recorded.
	LastCheckpoint() (step int64, ok bool, err error)
	// SetLastCheckpoint records step as the newest consistent checkpoint;
	// records of later steps (an abandoned history, after a rollback) are
	// dropped.
	SetLastCheckpoint(step int64) error
	// Held lists the recorded checkpoints whose files the coordinator holds
	// intact, newest first.
	Held() ([]int64, error)
}

// Status is a snapshot for the status RPC, logs and metrics.
type Status struct {
	Step           int64
	Generation     int64
	Required       int
	LiveWorkers    int
	Paused         bool
	Reason         string
	LastCheckpoint int64
	DroppedBackup  int64
	StaleReports   int64
	Done           bool
	// Unreachable lists the shards the last probe could not reach.
	Unreachable []int
	// LRScale multiplies the scheduled learning rate of the steps being
	// committed (1 unless a requested rollback lowered it).
	LRScale float64
	// Rollbacks counts the rollbacks done on request (RequestRollback)
	// since the coordinator started.
	Rollbacks int64
}

// Coordinator runs the global step.
type Coordinator struct {
	cfg    Config
	log    paramserver.CommitLog
	ckpts  CheckpointStore
	shards []ShardClient
	hooks  Hooks
	logger *zap.Logger

	mu         sync.Mutex
	step       int64 // next step to commit
	generation int64 // bumped by every rollback
	reports    []int // slots that reported c.step, in arrival order
	slots      []slotState
	filled     bool          // W − b workers have been live together (Elastic may lower N)
	opened     time.Time     // when c.step became the current step
	stepTime   time.Duration // mean recent step time (EWMA), 0 before the first
	// Two independent causes of a pause: too few live workers, and shards
	// that cannot apply or need recovery. Empty means no such trouble.
	shortReason string
	shardReason string
	unreachable []int // shards the last probe could not reach
	// needRecover asks Run's goroutine to reconcile the shards with the
	// log; forceRollback (a shard restarted and lost its buffered pushes)
	// makes it roll back even when the versions agree.
	needRecover   bool
	forceRollback bool
	lastCkpt      int64
	dropped       int64
	stale         int64
	changed       chan struct{} // closed and replaced on every state change
	commit        chan struct{} // wakes Run
	stopped       bool
	onCommit      func(step int64)
	ready         chan struct{}
	// lrScale multiplies the learning rate of the steps committed from now
	// on (logged with each); rollbackReq is a pending RequestRollback;
	// keep the checkpoints every shard keeps when it prunes.
	lrScale     float64
	rollbackReq *rollbackRequest
	rollbacks   int64
	keep        []int64
}

// rollbackRequest is what RequestRollback asks of Run's goroutine.
type rollbackRequest struct {
	to      int64
	lrScale float64
	reason  string
}

// New builds a coordinator over the commit log, checkpoint store and shards.
// It does not contact the shards: Run first recovers the global step from the
// log and the shards (Recover), and until then WaitStep waits and Report
// refuses.
func New(ctx context.Context, cfg Config, log paramserver.CommitLog, ckpts CheckpointStore, shards []ShardClient, hooks Hooks, logger *zap.Logger) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if len(shards) == 0 {
		return nil, errors.New("coordinator: no shards")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	c := &Coordinator{cfg: cfg, log: log, ckpts: ckpts, shards: shards, hooks: hooks, logger: logger,
		changed: make(chan struct{}), commit: make(chan struct{}, 1), opened: cfg.Now()}
	c.slots = make([]slotState, cfg.Workers) // none live until its worker joins
	c.updatePauseLocked()
	c.ready = make(chan struct{})
	c.generation = cfg.InitialGeneration
	c.lrScale = cfg.LRScale
	return c, nil
}

// Ready is closed once Run has recovered the global step.
func (c *Coordinator) Ready() <-chan struct{} { return c.ready }

func (c *Coordinator) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Coordinator) requiredLocked() int {
	n := c.cfg.Workers - c.cfg.Backups
	if c.cfg.Elastic && c.filled {
		n = max(min(n, c.liveLocked()), 1)
	}
	return n
}

// Status returns a snapshot.
func (c *Coordinator) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Status{Step: c.step, Generation: c.generation, Required: c.requiredLocked(), LiveWorkers: c.liveLocked(),
		Paused: c.shortReason != "" || c.shardReason != "", Reason: c.reasonLocked(), LastCheckpoint: c.lastCkpt, DroppedBackup: c.dropped,
		StaleReports: c.stale, Done: c.step >= c.cfg.Steps, Unreachable: slices.Clone(c.unreachable),
		LRScale: paramserver.LRScaleOf(c.lrScale), Rollbacks: c.rollbacks}
}

func (c *Coordinator) updatePauseLocked() {
	live, n := c.liveLocked(), c.requiredLocked()
	reason := ""
	if live < n {
		hint := "start more workers, or run with --elastic"
		switch {
		case !c.joinedLocked():
			hint = "no worker has joined yet: start the workers"
		case c.cfg.Elastic || live == 0:
			hint = "start more workers"
		}
		reason = fmt.Sprintf("%d live workers, %d needed per step (%s)", live, n, hint)
	}
	if reason != c.shortReason {
		if reason != "" {
			c.logger.Warn("paused", zap.String("reason", reason))
		} else {
			c.logger.Info("enough live workers again", zap.Int("live", live))
		}
		c.shortReason = reason
	}
}

func (c *Coordinator) reasonLocked() string {
	switch {
	case c.shortReason != "" && c.shardReason != "":
		return c.shortReason + "; " + c.shardReason
	case c.shortReason != "":
		return c.shortReason
	}
	return c.shardReason
}

// clearShardPauseLocked ends a shard-caused pause.
func (c *Coordinator) clearShardPauseLocked() {
	if c.shardReason != "" {
		c.logger.Info("shards healthy again; resuming")
		c.shardReason = ""
	}
}

func (c *Coordinator) kickLocked() {
	select {
	case c.commit <- struct{}{}:
	default:
	}
}

// Report records that worker slot finished pushing step's gradient to every
// shard. It returns whether the report counts toward step (false for a
// stale step or a backup after the step was decided) and the current step
// and generation. Any report, counted or not, shows the worker is alive.
func (c *Coordinator) Report(step int64, slot int) (accepted bool, current, generation int64, err error) {
	select {
	case <-c.ready:
	default:
		return false, 0, 0, ErrRecovering
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if slot < 0 || slot >= c.cfg.Workers {
		return false, c.step, c.generation, fmt.Errorf("coordinator: unknown worker slot %d (workers are 0..%d)", slot, c.cfg.Workers-1)
	}
	c.heardLocked(slot, step)
	if step != c.step || len(c.reports) >= c.requiredLocked() {
		if step == c.step || step == c.step-1 {
			c.dropped++ // a backup's gradient: its step is (being) decided without it
		} else {
			c.stale++
		}
		return false, c.step, c.generation, nil
	}
	if slices.Contains(c.reports, slot) {
		return true, c.step, c.generation, nil
	}
	c.reports = append(c.reports, slot)
	if len(c.reports) >= c.requiredLocked() {
		c.kickLocked()
	}
	return true, c.step, c.generation, nil
}

// WaitStep blocks while the global step is `step` and the generation is
// `generation` (a worker that reported `step` waits for its commit or for a
// rollback), then returns the current state. ctx bounds the wait.
func (c *Coordinator) WaitStep(ctx context.Context, step, generation int64) (Status, error) {
	select {
	case <-c.ready:
	case <-ctx.Done():
		return c.Status(), ctx.Err()
	}
	for {
		c.mu.Lock()
		if c.step != step || c.generation != generation || c.step >= c.cfg.Steps || c.stopped {
			c.mu.Unlock()
			return c.Status(), nil
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return c.Status(), ctx.Err()
		}
	}
}

// Run commits steps until the run is done, ctx ends, or recovery finds no
// consistent state to go on from (ErrNoCommonStep).
func (c *Coordinator) Run(ctx context.Context) error {
	if err := c.Recover(ctx); err != nil {
		return err
	}
	close(c.ready)
	defer func() {
		c.mu.Lock()
		c.stopped = true
		c.notifyLocked()
		c.mu.Unlock()
	}()
	probe := time.NewTicker(c.cfg.ProbeEvery)
	defer probe.Stop()
	for {
		c.mu.Lock()
		req := c.rollbackReq
		recoverNow := c.needRecover
		done := c.step >= c.cfg.Steps
		ready := !done && len(c.reports) >= c.requiredLocked()
		c.mu.Unlock()
		if req != nil {
			if err := c.rollbackOnRequest(ctx, req); err != nil {
				return err
			}
			continue
		}
		if recoverNow {
			if err := c.recoverUntilDone(ctx); err != nil {
				return err
			}
			continue
		}
		if done {
			// The run is done only once the final checkpoint is written: a
			// shard lost while writing it rolls the run back instead.
			saved, err := c.finalCheckpoint(ctx)
			if err != nil {
				return err
			}
			if saved {
				return nil
			}
			continue
		}
		if !ready {
			select {
			case <-c.commit:
			case <-probe.C:
				c.probe(ctx)
				c.checkLiveness()
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if err := c.commitStep(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}

// commitStep fixes S_t, logs it durably, applies it on every shard (pausing
// and recovering until that succeeds), then advances the step.
func (c *Coordinator) commitStep(ctx context.Context) error {
	c.mu.Lock()
	t := c.step
	n := c.requiredLocked()
	set := slices.Clone(c.reports[:n])
	sort.Ints(set)
	scale := c.lrScale
	c.mu.Unlock()
	if err := c.log.Append(paramserver.Entry{Step: t, Workers: set, LRScale: scale}); err != nil {
		return fmt.Errorf("coordinator: commit log: %w", err)
	}
	return c.applyEverywhere(ctx, t, set, scale)
}

// applyEverywhere sends Apply(t, set) to every shard until all succeed; on a
// failure it pauses and recovers (re-sending the logged Apply, or rolling
// back), with backoff between attempts.
func (c *Coordinator) applyEverywhere(ctx context.Context, t int64, set []int, scale float64) error {
	c.mu.Lock()
	gen := c.generation
	c.mu.Unlock()
	bo := c.backoff()
	for {
		err := c.forEachShard(ctx, c.cfg.CallTimeout, func(ctx context.Context, k int, s ShardClient) error { return s.Apply(ctx, t, set, scale) })
		if err == nil {
			c.mu.Lock()
			if c.step == t {
				c.dropped += int64(max(len(c.reports)-len(set), 0))
				c.advanceLocked(t + 1)
				c.clearShardPauseLocked()
				c.notifyLocked()
			}
			c.mu.Unlock()
			if c.hooks.Committed != nil {
				c.hooks.Committed(t, set)
			}
			if h := c.committedHook(); h != nil {
				h(t)
			}
			c.checkLiveness()
			return c.maybeCheckpoint(ctx, t+1)
		}
		c.pause(fmt.Sprintf("shard apply of step %d failed: %v", t, err))
		if errors.Is(err, paramserver.ErrMissing) {
			// A shard lost the step's pushes (it restarted): the workers
			// must push again, which only a new generation tells them.
			c.mu.Lock()
			c.forceRollback = true
			c.mu.Unlock()
		}
		// Recover until every shard answers and agrees with the log; only
		// then is the Apply worth sending again.
		var rolledBack bool
		for {
			if err := bo.Wait(ctx); err != nil {
				return err
			}
			var rerr error
			if rolledBack, rerr = c.recoverShards(ctx); rerr == nil {
				break
			}
			if errors.Is(rerr, ErrNoCommonStep) {
				return rerr
			}
			c.logger.Warn("recovery attempt failed", zap.Error(rerr))
		}
		c.mu.Lock()
		moved := c.step != t || c.generation != gen
		c.mu.Unlock()
		if rolledBack || moved {
			// A rollback truncated the log before t, or the re-sent Apply
			// completed t: either way this commit is over.
			return nil
		}
	}
}

// advanceLocked makes step the current step after a commit.
func (c *Coordinator) advanceLocked(step int64) {
	now := c.cfg.Now()
	if d := now.Sub(c.opened); d > 0 {
		if c.stepTime == 0 {
			c.stepTime = d
		} else {
			c.stepTime = (3*c.stepTime + d) / 4
		}
	}
	c.step, c.opened = step, now
	c.reports = c.reports[:0]
}

func (c *Coordinator) backoff() *retry.Backoff { return retry.New(c.cfg.RetryEvery, c.cfg.RetryMax) }

// pause records a shard-caused pause (logged when the reason changes).
func (c *Coordinator) pause(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shardReason != reason {
		c.logger.Warn("paused", zap.String("reason", reason))
	}
	c.shardReason = reason
	c.notifyLocked()
}

// forEachShard calls fn on every shard in parallel, each bounded by
// timeout, and joins their errors.
func (c *Coordinator) forEachShard(ctx context.Context, timeout time.Duration, fn func(ctx context.Context, k int, s ShardClient) error) error {
	errs := make([]error, len(c.shards))
	var wg sync.WaitGroup
	for k, s := range c.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if err := fn(cctx, k, s); err != nil {
				errs[k] = fmt.Errorf("shard %d: %w", k, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// probe checks that every shard answers. A shard that does not pauses the
// cluster, named with its error; when every shard answers again, or a
// version differs from the current step (a shard restarted), Run recovers.
func (c *Coordinator) probe(ctx context.Context) {
	versions, before, err := c.reach(ctx)
	if err != nil || ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(before) > 0 {
		c.logger.Info("every shard answers again; reconciling them with the log")
		c.needRecover = true
		return
	}
	for _, v := range versions {
		if v != c.step {
			c.logger.Warn("a shard is at another version than the current step; reconciling", zap.Int64s("versions", versions), zap.Int64("step", c.step))
			c.needRecover = true
			return
		}
	}
}

// reach asks every shard for its version (each call bounded by
// ProbeTimeout) and records which do not answer: they are the pause's
// reason ("shard K unreachable: <error>"), Status.Unreachable, and what
// Hooks.ShardReachable hears. It returns the versions, the shards that were
// unreachable before, and an error naming the unreachable ones.
func (c *Coordinator) reach(ctx context.Context) (versions []int64, before []int, err error) {
	versions = make([]int64, len(c.shards))
	errs := make([]error, len(c.shards))
	_ = c.forEachShard(ctx, c.cfg.ProbeTimeout, func(ctx context.Context, k int, s ShardClient) error {
		versions[k], errs[k] = s.Version(ctx)
		return errs[k]
	})
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	var down []int
	var msgs []string
	for k, err := range errs {
		if err != nil {
			down = append(down, k)
			msgs = append(msgs, fmt.Sprintf("shard %d unreachable: %v", k, err))
		}
	}
	c.mu.Lock()
	before = c.unreachable
	c.unreachable = down
	changed := !slices.Equal(before, down)
	if len(down) > 0 {
		reason := strings.Join(msgs, "; ")
		if changed {
			c.logger.Warn("paused", zap.String("reason", reason), zap.Ints("shards", down))
		}
		c.shardReason = reason
		c.notifyLocked()
		err = errors.New(reason)
	}
	c.mu.Unlock()
	if changed && c.hooks.ShardReachable != nil {
		for k := range c.shards {
			if slices.Contains(before, k) != slices.Contains(down, k) {
				c.hooks.ShardReachable(k, errs[k])
			}
		}
	}
	return versions, before, err
}

// maybeCheckpoint writes the periodic checkpoints. A failed one is logged
// and skipped: the previous one stays the consistent one. The final
// checkpoint (v == Steps) is Run's, which retries it.
func (c *Coordinator) maybeCheckpoint(ctx context.Context, v int64) error {
	if v == c.cfg.Steps || c.cfg.CheckpointEvery == 0 || v%c.cfg.CheckpointEvery != 0 {
		return nil
	}
	if err := c.Checkpoint(ctx, v); err != nil {
		c.logger.Warn("checkpoint failed; the previous one stays the consistent one", zap.Int64("step", v), zap.Error(err))
	}
	return nil
}

// finalCheckpoint writes the checkpoint at version Steps once the last step
// is applied everywhere. On a failure it pauses and reconciles the shards:
// if they all still hold version Steps it reports saved=false so that Run
// tries again; if one lost its state, recovery rolls back and Run commits
// the remaining steps again.
func (c *Coordinator) finalCheckpoint(ctx context.Context) (saved bool, err error) {
	c.mu.Lock()
	v := c.step
	done := c.lastCkpt >= v
	c.mu.Unlock()
	if done {
		return true, nil
	}
	cerr := c.Checkpoint(ctx, v)
	if cerr == nil {
		return true, nil
	}
	c.pause(fmt.Sprintf("final checkpoint at step %d failed: %v", v, cerr))
	c.mu.Lock()
	c.needRecover = true
	c.mu.Unlock()
	return false, nil
}

// Checkpoint has every shard persist its state at version v (which they
// must all be at; each keeps the states of Kept() when it prunes), runs the
// Checkpointed hook, and then records v as the
// newest consistent checkpoint. A failure leaves the previous one in force
// and is returned.
func (c *Coordinator) Checkpoint(ctx context.Context, v int64) error {
	keep := c.Kept()
	err := c.forEachShard(ctx, c.cfg.CallTimeout, func(ctx context.Context, k int, s ShardClient) error { return s.Checkpoint(ctx, v, keep) })
	if err == nil && c.hooks.Checkpointed != nil {
		err = c.hooks.Checkpointed(ctx, v)
	}
	if err == nil && c.ckpts != nil {
		err = c.ckpts.SetLastCheckpoint(v)
	}
	if err != nil {
		return fmt.Errorf("checkpoint at step %d: %w", v, err)
	}
	c.mu.Lock()
	c.lastCkpt = v
	c.mu.Unlock()
	c.logger.Info("checkpoint", zap.Int64("step", v))
	return nil
}

// Recover sets the global step from the commit log and the shards' versions
// (at start-up, after a coordinator restart): shards one step behind the last
// logged step get its Apply again; anything else rolls back to the newest
// step every shard and the coordinator hold. It retries, with backoff, until
// every shard answers, ctx ends, or no common step exists.
func (c *Coordinator) Recover(ctx context.Context) error {
	if c.ckpts != nil {
		if s, ok, err := c.ckpts.LastCheckpoint(); err != nil {
			return fmt.Errorf("coordinator: %w", err)
		} else if ok {
			c.lastCkpt = s
		}
	}
	if c.lrScale == 0 {
		entries, err := c.log.Entries()
		if err != nil {
			return fmt.Errorf("coordinator: %w", err)
		}
		scale := 1.0
		if len(entries) > 0 {
			scale = paramserver.LRScaleOf(entries[len(entries)-1].LRScale)
		}
		c.mu.Lock()
		c.lrScale = scale
		c.mu.Unlock()
	}
	return c.recoverUntilDone(ctx)
}

// recoverUntilDone runs recoverShards until it succeeds, pausing with
// backoff between attempts and logging at most one line per attempt.
func (c *Coordinator) recoverUntilDone(ctx context.Context) error {
	bo := c.backoff()
	refused := 0 // consecutive rollbacks a shard refused (paramserver.ErrRestore)
	for {
		_, err := c.recoverShards(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, paramserver.ErrRestore) {
			refused++
		} else {
			refused = 0
		}
		if refused >= maxRefusedRestores {
			err = fmt.Errorf("coordinator: %w: a shard refused to restore the state it lists as held %d times in a row (%v); check that every shard runs with this run's --ps and training configuration, or start a new run in a new --dir", ErrNoCommonStep, refused, err)
		}
		if errors.Is(err, ErrNoCommonStep) {
			c.pause(err.Error())
			c.logger.Error("stopping: no consistent state to go on from", zap.Error(err))
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("coordinator: recovery: %w", ctx.Err())
		}
		c.pause(fmt.Sprintf("recovery: %v", err))
		if err := bo.Wait(ctx); err != nil {
			return fmt.Errorf("coordinator: recovery: %w", err)
		}
	}
}

// maxRefusedRestores is how many rollbacks in a row a shard may refuse
// (its state does not fit it, or vanished between Held and Restore) before
// the coordinator stops instead of trying again.
const maxRefusedRestores = 3

// recoverShards reconciles the shards with the log; it reports whether it
// rolled back.
func (c *Coordinator) recoverShards(ctx context.Context) (rolledBack bool, err error) {
	entries, err := c.log.Entries()
	if err != nil {
		return false, err
	}
	versions, _, err := c.reach(ctx)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	force := c.forceRollback
	c.mu.Unlock()
	next := int64(0)
	if len(entries) > 0 {
		next = entries[len(entries)-1].Step + 1
	}
	if len(entries) == 0 {
		next = c.lastCkpt
	}
	if force && len(versions) > 0 {
		// A shard lost its buffered pushes. When every shard is still at
		// the same version, either before the current step or before the
		// logged step nobody applied, the step is simply done again: a new
		// generation makes the workers pull and push it again.
		v := versions[0]
		same := true
		for _, u := range versions {
			same = same && u == v
		}
		if same && (v == next || (v == next-1 && len(entries) > 0)) {
			if err := c.log.TruncateAfter(v - 1); err != nil {
				return false, err
			}
			c.mu.Lock()
			c.forceRollback = false
			c.mu.Unlock()
			c.setStep(v, true)
			c.logger.Warn("a shard lost the step's pushes: the workers push it again", zap.Int64("step", v))
			return true, nil
		}
	}
	consistent := !force
	var behind bool
	for _, v := range versions {
		switch {
		case v == next:
		case v == next-1 && len(entries) > 0:
			behind = true
		default:
			consistent = false
		}
	}
	if consistent && behind {
		last := entries[len(entries)-1]
		err := c.forEachShard(ctx, c.cfg.CallTimeout, func(ctx context.Context, k int, s ShardClient) error {
			if versions[k] == last.Step {
				return s.Apply(ctx, last.Step, last.Workers, last.LRScale)
			}
			return nil
		})
		if err == nil {
			c.setStep(next, false)
			c.logger.Info("recovered: re-applied the last logged step", zap.Int64("step", last.Step))
			return false, nil
		}
		c.logger.Warn("re-applying the last logged step failed; rolling back", zap.Error(err))
		consistent = false
	}
	if consistent {
		c.setStep(next, false)
		return false, nil
	}
	return true, c.rollback(ctx, versions, entries)
}

// rollback restores every shard to the newest step that every shard and
// the coordinator hold intact and truncates the log to it. With no such
// step it returns an error of kind ErrNoCommonStep.
func (c *Coordinator) rollback(ctx context.Context, versions []int64, entries []paramserver.Entry) error {
	to, err := c.commonStep(ctx, entries, math.MaxInt64)
	if err != nil {
		return err
	}
	c.mu.Lock()
	last := c.lastCkpt
	c.mu.Unlock()
	if to < last {
		c.logger.Warn("the newest consistent checkpoint is not held intact everywhere: rolling back further",
			zap.Int64("newest_checkpoint", last), zap.Int64("rollback_to", to))
	}
	c.logger.Warn("rolling back", zap.Int64("to_step", to), zap.Int64s("shard_versions", versions))
	if err := c.forEachShard(ctx, c.cfg.CallTimeout, func(ctx context.Context, k int, s ShardClient) error { return s.Restore(ctx, to) }); err != nil {
		return err
	}
	if err := c.log.TruncateAfter(to - 1); err != nil {
		return err
	}
	if to != last && c.ckpts != nil && to > 0 {
		if err := c.ckpts.SetLastCheckpoint(to); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.lastCkpt = to
	c.forceRollback = false
	c.mu.Unlock()
	c.setStep(to, true)
	return nil
}

// commonStep is the newest step, at most atMost, that every shard holds
// intact, that the coordinator holds (step 0, or a recorded checkpoint
// whose files are intact), and that the log reaches.
func (c *Coordinator) commonStep(ctx context.Context, entries []paramserver.Entry, atMost int64) (int64, error) {
	held := make([][]int64, len(c.shards))
	if err := c.forEachShard(ctx, c.cfg.CallTimeout, func(ctx context.Context, k int, s ShardClient) error {
		var err error
		held[k], err = s.Held(ctx)
		return err
	}); err != nil {
		return 0, err
	}
	mine := []int64{0}
	if c.ckpts != nil {
		h, err := c.ckpts.Held()
		if err != nil {
			return 0, err
		}
		mine = append(mine, h...)
	}
	logNext := int64(0)
	if len(entries) > 0 {
		logNext = entries[len(entries)-1].Step + 1
	}
	best := int64(-1)
	for _, s := range mine {
		if s > logNext || s > atMost || s <= best {
			continue
		}
		all := true
		for _, h := range held {
			if !slices.Contains(h, s) {
				all = false
				break
			}
		}
		if all {
			best = s
		}
	}
	if best >= 0 {
		return best, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the coordinator holds steps %v (its log reaches step %d)", sortedDesc(mine), logNext)
	if atMost != math.MaxInt64 {
		fmt.Fprintf(&b, ", a step at most %d was asked for", atMost)
	}
	for k, h := range held {
		fmt.Fprintf(&b, "; shard %d holds %v", k, h)
	}
	return 0, fmt.Errorf("coordinator: %w: %s. Copy the missing shards' state files (shard-<index>-<step>.safetensors) back into their --dir from a backup, or start a new run in a new --dir", ErrNoCommonStep, b.String())
}

func sortedDesc(v []int64) []int64 {
	out := slices.Clone(v)
	slices.Sort(out)
	slices.Reverse(out)
	return slices.Compact(out)
}

func (c *Coordinator) setStep(step int64, rollback bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.step != step || rollback {
		if rollback {
			c.generation++
		}
		c.step = step
		c.opened = c.cfg.Now()
		c.reports = c.reports[:0]
	}
	c.needRecover = false
	c.unreachable = nil
	c.clearShardPauseLocked()
	c.updatePauseLocked()
	c.notifyLocked()
}

// SetCommittedHook installs a function called after each step is applied
// everywhere (benchmarks and metrics that attach after construction).
func (c *Coordinator) SetCommittedHook(fn func(step int64)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onCommit = fn
}

func (c *Coordinator) committedHook() func(int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.onCommit
}

// ShardRestarted tells the coordinator that shard k came back after losing
// its state (its buffered pushes at least): the cluster pauses, and Run
// rolls back to the newest step every shard and the coordinator hold. It
// returns at once; the rollback happens on Run's goroutine.
func (c *Coordinator) ShardRestarted(k int) {
	c.pause(fmt.Sprintf("shard %d restarted", k))
	c.mu.Lock()
	c.needRecover, c.forceRollback = true, true
	c.kickLocked()
	c.mu.Unlock()
}

// RequestRollback asks Run's goroutine to roll the run back to the
// consistent checkpoint at step to and to apply every later step with the
// learning rate scaled by lrScale (relative to the schedule, not to the
// current scale); reason says why, for the log. It returns at once (an
// error only for arguments it refuses: to negative or past the current
// step, the run done, lrScale not positive and finite). Run then, between two steps and
// before anything else, restores every shard to step to, truncates the
// commit log after it, records to as the newest consistent checkpoint
// (later ones are an abandoned history), bumps the generation (workers
// waiting on a step pull again) and goes on with the new scale. When a
// shard does not answer or fails to restore, the cluster pauses and Run
// retries with backoff. When a shard or the coordinator no longer holds
// step to, it rolls back to the newest step before it that all hold, with
// a warning; with none, it logs an error and drops the request (the run
// goes on as it was). KeepCheckpoint(to) beforehand keeps every shard from
// pruning the target. A later request replaces one not yet carried out.
func (c *Coordinator) RequestRollback(to int64, lrScale float64, reason string) error {
	if to < 0 {
		return fmt.Errorf("coordinator: rollback to step %d: the step must not be negative", to)
	}
	if !(lrScale > 0) || math.IsInf(lrScale, 1) {
		return fmt.Errorf("coordinator: rollback to step %d: learning-rate scale %v must be positive and finite", to, lrScale)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if to > c.step {
		return fmt.Errorf("coordinator: rollback to step %d: the run is only at step %d", to, c.step)
	}
	if c.step >= c.cfg.Steps {
		// The workers have been told the run is done and may be gone.
		return fmt.Errorf("coordinator: rollback to step %d: the run is done (step %d)", to, c.step)
	}
	c.rollbackReq = &rollbackRequest{to: to, lrScale: lrScale, reason: reason}
	c.logger.Warn("rollback requested", zap.Int64("to_step", to), zap.Int64("step", c.step),
		zap.Float64("lr_scale", lrScale), zap.String("reason", reason))
	c.kickLocked()
	return nil
}

// KeepCheckpoint names the checkpoints a rollback may target (the
// sentinel's last good one): from the next checkpoint on, every shard keeps
// their states when it prunes old ones. No steps: keep nothing beyond the
// shards' own rule.
func (c *Coordinator) KeepCheckpoint(steps ...int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keep = slices.Clone(steps)
}

// Kept returns the steps of KeepCheckpoint.
func (c *Coordinator) Kept() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.keep)
}

// rollbackOnRequest carries out req, retrying with backoff until it is done
// or dropped (no step at most req.to is held everywhere); it returns an
// error only when ctx ends.
func (c *Coordinator) rollbackOnRequest(ctx context.Context, req *rollbackRequest) error {
	bo := c.backoff()
	for {
		err := c.requestedRollback(ctx, req)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrNoCommonStep) {
			c.logger.Error("requested rollback dropped: no step to roll back to; the run goes on as it was",
				zap.Int64("to_step", req.to), zap.String("reason", req.reason), zap.Error(err))
			c.mu.Lock()
			if c.rollbackReq == req {
				c.rollbackReq = nil
			}
			c.needRecover = true // reconcile the shards with the log, ending the pause
			c.mu.Unlock()
			return nil
		}
		c.pause(fmt.Sprintf("rollback to step %d (%s): %v", req.to, req.reason, err))
		if err := bo.Wait(ctx); err != nil {
			return err
		}
	}
}

// requestedRollback is one attempt at req: every shard must answer, then
// each restores the target and the log is truncated.
func (c *Coordinator) requestedRollback(ctx context.Context, req *rollbackRequest) error {
	entries, err := c.log.Entries()
	if err != nil {
		return err
	}
	if _, _, err := c.reach(ctx); err != nil {
		return err
	}
	to, err := c.commonStep(ctx, entries, req.to)
	if err != nil {
		return err
	}
	c.mu.Lock()
	from := c.step
	c.mu.Unlock()
	if to != req.to {
		c.logger.Warn("the requested rollback target is not held by every shard and the coordinator: rolling back further",
			zap.Int64("requested", req.to), zap.Int64("rollback_to", to))
	}
	if err := c.forEachShard(ctx, c.cfg.CallTimeout, func(ctx context.Context, k int, s ShardClient) error { return s.Restore(ctx, to) }); err != nil {
		return err
	}
	if err := c.log.TruncateAfter(to - 1); err != nil {
		return err
	}
	if c.ckpts != nil {
		if err := c.ckpts.SetLastCheckpoint(to); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.lastCkpt = to
	c.forceRollback = false
	c.lrScale = req.lrScale
	c.rollbacks++
	if c.rollbackReq == req {
		c.rollbackReq = nil
	}
	c.mu.Unlock()
	c.logger.Warn("rolled back on request", zap.Int64("from_step", from), zap.Int64("to_step", to),
		zap.Float64("lr_scale", req.lrScale), zap.String("reason", req.reason))
	c.setStep(to, true)
	if c.hooks.RolledBack != nil {
		c.hooks.RolledBack(to, req.lrScale, req.reason)
	}
	return nil
}

// IncarnationGeneration is the first generation of a coordinator's
// incarnation-th start (1 for the first start of a run directory): the
// incarnation in the high 32 bits, so that each start's generations exceed
// every earlier start's, and the rollbacks since the start in the low 32.
func IncarnationGeneration(incarnation int64) int64 { return incarnation << 32 }

// SplitGeneration reads a generation of IncarnationGeneration's form back
// into the coordinator's restarts (incarnation − 1, at least 0) and the
// rollbacks since its last start, the counts an operator reads; the raw
// number (e.g. 4294967297) says neither.
func SplitGeneration(generation int64) (restarts, rollbacks int64) {
	return max(generation>>32-1, 0), generation & (1<<32 - 1)
}
