// Package coordinator is the cluster's control plane: it owns the global
// step, decides which workers' gradients make each step, writes that
// decision durably to the commit log before any shard applies it, and drives
// checkpoints, recovery and rollback. It knows nothing of gRPC or memberlist:
// shards are reached through ShardClient, liveness arrives through SetLive.
//
// One step t (../shared/DESIGN.md): every worker pulls version t from every
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
// gradients has the same expectation and more variance). A shard that cannot
// apply (unreachable, or restarted without the step's gradients) pauses the
// cluster; once every shard answers, the coordinator either re-sends the
// logged Apply (idempotent) or rolls every shard back to the last consistent
// checkpoint, truncating the log to it, so each step appears once in the
// final log. A restarted coordinator recovers the same way from its log.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/paramserver"
)

// ErrRecovering is returned by Report before the coordinator has recovered
// the global step.
var ErrRecovering = errors.New("coordinator: recovering the global step; retry")

// ShardClient is how the coordinator reaches one parameter-server shard.
type ShardClient interface {
	// Apply applies step with the gradients of exactly workers (idempotent
	// for a step the shard already applied).
	Apply(ctx context.Context, step int64, workers []int) error
	// Version is the next step the shard will apply.
	Version(ctx context.Context) (int64, error)
	// Checkpoint persists the shard's state; the shard must be at version
	// step.
	Checkpoint(ctx context.Context, step int64) error
	// Restore loads the state the shard persisted at step (step 0 with no
	// checkpoint: the initial parameters).
	Restore(ctx context.Context, step int64) error
}

// Config configures a Coordinator.
type Config struct {
	// Workers is W, backups included; Backups is b; N = W − b gradients
	// make a step.
	Workers, Backups int
	// Elastic lowers N to the number of live workers when fewer than W − b
	// are alive, and raises it again as they return.
	Elastic bool
	// Steps is the run's length: the coordinator is done at version Steps.
	Steps int64
	// CheckpointEvery: a consistent checkpoint every this many steps (and
	// at the end); 0 only at the end.
	CheckpointEvery int64
	// RetryEvery is the pause between attempts to reach a failing shard.
	RetryEvery time.Duration
	// CallTimeout bounds each call to a shard.
	CallTimeout time.Duration
	// InitialGeneration starts the generation counter (bumped by every
	// rollback). A restarted coordinator must start above every generation
	// its predecessor handed out, so that workers waiting on a step they
	// reported to the dead coordinator stop waiting and report again: the
	// processes use a persisted incarnation count shifted left by 32.
	InitialGeneration int64
}

// DefaultConfig is the paper's ImageNet layout: 53 workers, 3 backups.
func DefaultConfig() Config {
	return Config{Workers: 53, Backups: 3, Steps: 1000, CheckpointEvery: 100, RetryEvery: 500 * time.Millisecond, CallTimeout: 30 * time.Second}
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
	}
	return nil
}

// Hooks let the wiring act at checkpoints and report progress.
type Hooks struct {
	// Checkpointed runs after every shard persisted its state at step (e.g.
	// to write the model file); an error leaves the previous checkpoint as
	// the consistent one.
	Checkpointed func(ctx context.Context, step int64) error
	// Committed runs after step was applied by every shard.
	Committed func(step int64, workers []int)
}

// CheckpointStore remembers the newest consistent checkpoint step durably.
type CheckpointStore interface {
	LastCheckpoint() (step int64, ok bool, err error)
	SetLastCheckpoint(step int64) error
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
	live       map[int]bool
	// Two independent causes of a pause: too few live workers, and shards
	// that cannot apply or need recovery. Empty means no such trouble.
	shortReason string
	shardReason string
	lastCkpt    int64
	dropped     int64
	stale       int64
	changed     chan struct{} // closed and replaced on every state change
	commit      chan struct{} // wakes the committer
	stopped     bool
	onCommit    func(step int64)
	ready       chan struct{}
}

// New builds a coordinator over the commit log, checkpoint store and shards.
// It does not contact the shards: Run first recovers the global step from the
// log and the shards (Recover), and until then WaitStep waits and Report
// refuses.
func New(ctx context.Context, cfg Config, log paramserver.CommitLog, ckpts CheckpointStore, shards []ShardClient, hooks Hooks, logger *zap.Logger) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(shards) == 0 {
		return nil, errors.New("coordinator: no shards")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	c := &Coordinator{cfg: cfg, log: log, ckpts: ckpts, shards: shards, hooks: hooks, logger: logger,
		live: map[int]bool{}, changed: make(chan struct{}), commit: make(chan struct{}, 1)}
	for w := 0; w < cfg.Workers; w++ {
		c.live[w] = true
	}
	c.ready = make(chan struct{})
	c.generation = cfg.InitialGeneration
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
	if c.cfg.Elastic {
		live := 0
		for _, ok := range c.live {
			if ok {
				live++
			}
		}
		n = max(min(n, live), 1)
	}
	return n
}

func (c *Coordinator) liveLocked() int {
	n := 0
	for _, ok := range c.live {
		if ok {
			n++
		}
	}
	return n
}

// Status returns a snapshot.
func (c *Coordinator) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Status{Step: c.step, Generation: c.generation, Required: c.requiredLocked(), LiveWorkers: c.liveLocked(),
		Paused: c.shortReason != "" || c.shardReason != "", Reason: c.reasonLocked(), LastCheckpoint: c.lastCkpt, DroppedBackup: c.dropped,
		StaleReports: c.stale, Done: c.step >= c.cfg.Steps}
}

// SetLive records a worker slot's liveness (from membership). Fewer live
// workers than N pauses the cluster with a reason; with Elastic, N follows.
func (c *Coordinator) SetLive(slot int, alive bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if slot < 0 || slot >= c.cfg.Workers || c.live[slot] == alive {
		return
	}
	c.live[slot] = alive
	c.logger.Info("worker liveness", zap.Int("slot", slot), zap.Bool("alive", alive), zap.Int("live", c.liveLocked()), zap.Int("required", c.requiredLocked()))
	c.updatePauseLocked()
	if len(c.reports) >= c.requiredLocked() {
		c.kickLocked()
	}
	c.notifyLocked()
}

func (c *Coordinator) updatePauseLocked() {
	live, n := c.liveLocked(), c.requiredLocked()
	reason := ""
	if live < n {
		hint := "start more workers, or run with --elastic"
		if c.cfg.Elastic {
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
// and generation.
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

// Run commits steps until the run is done or ctx ends.
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
	for {
		c.mu.Lock()
		done := c.step >= c.cfg.Steps
		ready := !done && len(c.reports) >= c.requiredLocked()
		c.mu.Unlock()
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
	c.mu.Unlock()
	if err := c.log.Append(paramserver.Entry{Step: t, Workers: set}); err != nil {
		return fmt.Errorf("coordinator: commit log: %w", err)
	}
	if err := c.applyEverywhere(ctx, t, set); err != nil {
		return err
	}
	return nil
}

// applyEverywhere sends Apply(t, set) to every shard until all succeed; on a
// failure it pauses and calls recover, which may roll back instead.
func (c *Coordinator) applyEverywhere(ctx context.Context, t int64, set []int) error {
	c.mu.Lock()
	gen := c.generation
	c.mu.Unlock()
	for {
		err := c.forEachShard(ctx, func(ctx context.Context, k int, s ShardClient) error { return s.Apply(ctx, t, set) })
		if err == nil {
			c.mu.Lock()
			if c.step == t {
				c.dropped += int64(max(len(c.reports)-len(set), 0))
				c.step = t + 1
				c.reports = c.reports[:0]
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
			return c.maybeCheckpoint(ctx, t+1)
		}
		c.pause(fmt.Sprintf("shard apply of step %d failed: %v", t, err))
		select {
		case <-time.After(c.cfg.RetryEvery):
		case <-ctx.Done():
			return ctx.Err()
		}
		rolledBack, rerr := c.recoverShards(ctx)
		if rerr != nil {
			c.logger.Warn("recovery attempt failed", zap.Error(rerr))
			continue
		}
		c.mu.Lock()
		moved := c.step != t || c.generation != gen
		c.mu.Unlock()
		if rolledBack || moved {
			// A rollback (here or by a concurrent ShardRestarted) truncated
			// the log before t, or the re-sent Apply completed t: either way
			// this commit is over.
			return nil
		}
	}
}

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

func (c *Coordinator) forEachShard(ctx context.Context, fn func(ctx context.Context, k int, s ShardClient) error) error {
	errs := make([]error, len(c.shards))
	var wg sync.WaitGroup
	for k, s := range c.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
			defer cancel()
			if err := fn(cctx, k, s); err != nil {
				errs[k] = fmt.Errorf("shard %d: %w", k, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
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
// tries again; if one lost its state, recovery rolls back to the last
// consistent checkpoint and Run commits the remaining steps again.
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
	select {
	case <-time.After(c.cfg.RetryEvery):
	case <-ctx.Done():
		return false, ctx.Err()
	}
	if _, rerr := c.recoverShards(ctx); rerr != nil {
		c.logger.Warn("recovery attempt failed", zap.Error(rerr))
	}
	return false, nil
}

// Checkpoint has every shard persist its state at version v (which they
// must all be at), runs the Checkpointed hook, and then records v as the
// newest consistent checkpoint. A failure leaves the previous one in force
// and is returned.
func (c *Coordinator) Checkpoint(ctx context.Context, v int64) error {
	err := c.forEachShard(ctx, func(ctx context.Context, k int, s ShardClient) error { return s.Checkpoint(ctx, v) })
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
// logged step get its Apply again; anything else rolls back to the last
// consistent checkpoint. It retries until every shard answers or ctx ends.
func (c *Coordinator) Recover(ctx context.Context) error {
	if c.ckpts != nil {
		if s, ok, err := c.ckpts.LastCheckpoint(); err != nil {
			return fmt.Errorf("coordinator: %w", err)
		} else if ok {
			c.lastCkpt = s
		}
	}
	for {
		_, err := c.recoverShards(ctx)
		if err == nil {
			return nil
		}
		c.pause(fmt.Sprintf("recovery: %v", err))
		select {
		case <-time.After(c.cfg.RetryEvery):
		case <-ctx.Done():
			return fmt.Errorf("coordinator: recovery: %w", err)
		}
	}
}

// recoverShards reconciles the shards with the log; it reports whether it
// rolled back.
func (c *Coordinator) recoverShards(ctx context.Context) (rolledBack bool, err error) {
	entries, err := c.log.Entries()
	if err != nil {
		return false, err
	}
	versions := make([]int64, len(c.shards))
	if err := c.forEachShard(ctx, func(ctx context.Context, k int, s ShardClient) error {
		v, err := s.Version(ctx)
		versions[k] = v
		return err
	}); err != nil {
		return false, err
	}
	next := int64(0)
	if len(entries) > 0 {
		next = entries[len(entries)-1].Step + 1
	}
	if len(entries) == 0 {
		next = c.lastCkpt
	}
	consistent := true
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
		err := c.forEachShard(ctx, func(ctx context.Context, k int, s ShardClient) error {
			if versions[k] == last.Step {
				return s.Apply(ctx, last.Step, last.Workers)
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
	return true, c.rollback(ctx, versions)
}

// rollback restores every shard to the newest consistent checkpoint and
// truncates the log to it.
func (c *Coordinator) rollback(ctx context.Context, versions []int64) error {
	c.mu.Lock()
	to := c.lastCkpt
	c.mu.Unlock()
	c.logger.Warn("rolling back to the last consistent checkpoint", zap.Int64("checkpoint", to), zap.Int64s("shard_versions", versions))
	if err := c.forEachShard(ctx, func(ctx context.Context, k int, s ShardClient) error { return s.Restore(ctx, to) }); err != nil {
		return err
	}
	if err := c.log.TruncateAfter(to - 1); err != nil {
		return err
	}
	c.setStep(to, true)
	return nil
}

func (c *Coordinator) setStep(step int64, rollback bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.step != step || rollback {
		if rollback {
			c.generation++
		}
		c.step = step
		c.reports = c.reports[:0]
	}
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

// ShardRestarted tells the coordinator that a shard came back after losing
// its state: the cluster rolls back to the last consistent checkpoint.
func (c *Coordinator) ShardRestarted(ctx context.Context, k int) error {
	c.pause(fmt.Sprintf("shard %d restarted", k))
	for attempt := 0; ; attempt++ {
		_, err := c.recoverShards(ctx)
		if err == nil {
			return nil
		}
		if attempt%10 == 0 {
			c.logger.Warn("recovery after a shard restart: attempt failed; retrying", zap.Int("shard", k), zap.Error(err))
		}
		select {
		case <-time.After(c.cfg.RetryEvery):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
