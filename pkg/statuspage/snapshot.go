// Package statuspage serves the coordinator's status page: one
// self-contained HTML page (inline CSS, inline SVG charts, a little inline
// JavaScript for the live refresh; no external assets, so it works offline
// and with JavaScript disabled) at "/", and the same data as JSON at
// "/status.json".
//
// Data enters through three small types: a Source returns a Snapshot (the
// run's state, the membership table, the step rate and the recent history),
// and a History — a bounded, concurrency-safe ring of per-step points —
// collects the loss terms and accuracies from the coordinator's report and
// commit hooks (ObserveReport, ObserveCommit). The package depends only on
// the standard library; pkg/node adapts the coordinator and its membership
// registry to a Source.
package statuspage

import (
	"encoding/json"
	"math"
	"time"
)

// Source produces the snapshot the page shows. Snapshot is called once per
// request, possibly from several goroutines at once.
type Source interface {
	Snapshot() Snapshot
}

// SourceFunc adapts a function to Source.
type SourceFunc func() Snapshot

// Snapshot calls f.
func (f SourceFunc) Snapshot() Snapshot { return f() }

// Phases of Run.Phase.
const (
	// PhaseStarting: the coordinator is not running yet (waiting for the
	// shards, or recovering the global step).
	PhaseStarting = "starting"
	// PhaseRunning: steps are being committed.
	PhaseRunning = "running"
	// PhasePaused: the coordinator is paused (Run.Reason says why).
	PhasePaused = "paused"
	// PhaseDone: the run reached its step count.
	PhaseDone = "done"
)

// Snapshot is everything the page shows at one instant.
type Snapshot struct {
	// Time is when the snapshot was taken ("last seen" ages are relative
	// to it).
	Time time.Time `json:"time"`
	// Run is the coordinator's state.
	Run Run `json:"run"`
	// Members lists every worker slot (held or free) and every shard.
	Members []Member `json:"members"`
	// StepRate is the committed steps per second over RateWindow.
	StepRate float64 `json:"step_rate"`
	// RateWindow is the window StepRate is measured over.
	RateWindow Duration `json:"rate_window"`
	// History holds the recent committed steps, oldest first.
	History []Point `json:"history"`
	// Sentinel is the training sentinel's state (nil: the run has none).
	Sentinel *Sentinel `json:"sentinel,omitempty"`
}

// Sentinel is the training sentinel's state (pkg/sentinel; the cluster's
// coordinator runs it on its checkpoints).
type Sentinel struct {
	// Every is the steps between checks (0: off, the state a resumed run
	// carries).
	Every int64 `json:"every"`
	// LastGood is the step of the last accepted check (0: the run's
	// initial state), the step a trip rolls back to.
	LastGood int64 `json:"last_good"`
	// Best is the best multi-step accuracy of an accepted check, BestStep
	// its step.
	Best     float64 `json:"best"`
	BestStep int64   `json:"best_step"`
	// Rollbacks the sentinel's rollbacks so far, MaxRollbacks the most
	// allowed.
	Rollbacks    int `json:"rollbacks"`
	MaxRollbacks int `json:"max_rollbacks"`
	// LRScale multiplies the learning rate (1: no rollback lowered it).
	LRScale float64 `json:"lr_scale"`
	// Pending: a check tripped and its rollback is not done yet.
	Pending bool `json:"rollback_pending"`
	// Last is the last check (nil before the first).
	Last *SentinelCheck `json:"last,omitempty"`
}

// SentinelCheck is one check's measurement.
type SentinelCheck struct {
	Step       int64   `json:"step"`
	Clean      float64 `json:"clean"`
	SingleStep float64 `json:"single_step"`
	MultiStep  float64 `json:"multi_step"`
	// Gap is SingleStep − MultiStep.
	Gap float64 `json:"gap"`
}

// Run is the coordinator's state.
type Run struct {
	// Phase is one of PhaseStarting, PhaseRunning, PhasePaused, PhaseDone.
	Phase string `json:"phase"`
	// Step is the next step to commit (the number of committed steps);
	// Steps is the run's length.
	Step  int64 `json:"step"`
	Steps int64 `json:"steps"`
	// Generation is the coordinator's generation (bumped by every
	// rollback and coordinator restart), as workers see it; Restarts and
	// Rollbacks are what it counts (coordinator.SplitGeneration): the
	// coordinator's restarts and the rollbacks since its last start. The
	// page shows the two counts.
	Generation int64 `json:"generation"`
	Restarts   int64 `json:"restarts"`
	Rollbacks  int64 `json:"rollbacks"`
	// Paused and Reason: whether the coordinator is paused, and why.
	Paused bool   `json:"paused"`
	Reason string `json:"reason,omitempty"`
	// LastCheckpoint is the step of the newest consistent checkpoint
	// (0: none yet).
	LastCheckpoint int64 `json:"last_checkpoint"`
	// Required is N, the gradients a step averages; LiveWorkers how many
	// worker slots are alive; Workers is W (backups included) and Backups b.
	Required    int `json:"required"`
	LiveWorkers int `json:"live_workers"`
	Workers     int `json:"workers"`
	Backups     int `json:"backups"`
	// DroppedBackup counts the gradients reported after their step was
	// decided (backups); DroppedStale the reports for older steps.
	DroppedBackup int64 `json:"dropped_backup"`
	DroppedStale  int64 `json:"dropped_stale"`
}

// Roles of Member.Role.
const (
	RoleWorker = "worker"
	RoleShard  = "paramserver"
)

// Member is one worker slot or parameter-server shard.
type Member struct {
	// Role is RoleWorker or RoleShard; Slot is the worker slot or the
	// shard index.
	Role string `json:"role"`
	Slot int    `json:"slot"`
	// Name is the member's node name (empty for a free slot); Address the
	// address it serves on (shards).
	Name    string `json:"name"`
	Address string `json:"address,omitempty"`
	// Alive reports whether the slot is held by a live member.
	Alive bool `json:"alive"`
	// LastStep is a worker's last reported step (−1: none or not
	// applicable).
	LastStep int64 `json:"last_step"`
	// LastSeen is when the member was last heard from (zero: never).
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// Terms are one report's loss terms and batch accuracies. NaN marks a term
// the objective does not compute (e.g. no adversarial batch).
type Terms struct {
	// Loss is the objective's value; CleanCE and AdvCE the cross-entropies
	// on the clean and adversarial batches; Pair the pairing term before
	// its weight.
	Loss, CleanCE, AdvCE, Pair float64
	// CleanAcc and AdvAcc are the batch accuracies in [0, 1].
	CleanAcc, AdvAcc float64
}

// Point is one committed step.
type Point struct {
	// Step is the committed step; Time when it was committed.
	Step int64
	Time time.Time
	// Workers is the set of worker slots whose gradients made the step;
	// Reports how many of their reports the averages cover.
	Workers []int
	Reports int
	// Terms are averaged over the step's accepted reports, each term over
	// the reports where it is not NaN (NaN when none is).
	Terms
	// DroppedBackup and DroppedStale are the coordinator's cumulative
	// dropped-gradient counts when the step was committed.
	DroppedBackup, DroppedStale int64
}

// MarshalJSON writes a point with snake_case names and null for NaN terms.
func (p Point) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Step          int64     `json:"step"`
		Time          time.Time `json:"time"`
		Workers       []int     `json:"workers"`
		Reports       int       `json:"reports"`
		Loss          *float64  `json:"loss"`
		CleanCE       *float64  `json:"clean_ce"`
		AdvCE         *float64  `json:"adv_ce"`
		Pair          *float64  `json:"pair"`
		CleanAcc      *float64  `json:"clean_acc"`
		AdvAcc        *float64  `json:"adv_acc"`
		DroppedBackup int64     `json:"dropped_backup"`
		DroppedStale  int64     `json:"dropped_stale"`
	}{p.Step, p.Time, p.Workers, p.Reports, finite(p.Loss), finite(p.CleanCE), finite(p.AdvCE), finite(p.Pair),
		finite(p.CleanAcc), finite(p.AdvAcc), p.DroppedBackup, p.DroppedStale})
}

// finite is &v, or nil for NaN and ±Inf (which JSON cannot carry).
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// Duration is a time.Duration that marshals to JSON as seconds.
type Duration time.Duration

// MarshalJSON writes d in seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).Seconds())
}
