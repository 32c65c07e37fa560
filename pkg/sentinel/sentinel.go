// Package sentinel guards adversarial training against catastrophic
// overfitting and gradient masking (issue 14): every Every steps a check
// measures, on the validation examples, the accuracy under a single-step
// attack and under a multi-step one; when the multi-step (robust) accuracy
// collapses, or the single-step accuracy runs away from it, the run goes
// back to its last good checkpoint and continues with a lower learning
// rate.
//
// Single-step training (FGSM without a random start, Kurakin et al.'s
// single-step objective, or a large step size) can learn to defeat the one
// attack it trains on by bending the loss surface so that the first-order
// step points nowhere (Tramèr et al. 2018: gradient masking; Wong et al.
// 2020: "catastrophic overfitting"). Within a few hundred steps the
// accuracy under FGSM climbs toward the clean accuracy while the accuracy
// under PGD falls to zero. Both symptoms are what the check measures.
//
// The package is plain Go: the measurement (Measure), the rule (State.Observe)
// and its Prometheus series (Collector). It has no training loop: pkg/train
// runs it in a single process, the cluster's coordinator on its consistent
// checkpoints (pkg/node/sentinel.go: the checks run beside training, a trip
// is coordinator.RequestRollback, the state is the coordinator's
// sentinel.json).
//
// # The rule
//
// A check of the model of step t measures, on the last Examples examples of
// the validation split (data.Tail, as train.Validate), the clean accuracy,
// the accuracy f under FGSM at ε (one step of ε, no random start: the
// attack that masking defeats) and the accuracy a under PGD-Steps at ε
// (α = 2.5·ε/Steps, a random start, the true label). With B the best a of
// an accepted check so far (0 before the first) it trips when
//
//	collapse:  B ≥ MinBest  and  a < Collapse · B
//	gap:       f − a > MaxGap
//
// (each comparison with a tolerance of 1e-9, so that a value equal to its
// threshold up to the rounding of k/n does not trip: ties do not trip).
// A check that does not trip is accepted: t becomes the last good step,
// and B = max(B, a) (on a tie the earlier step stays BestStep). A check
// that trips is not: the run goes back to the last good step L and
// continues from there with the learning rate's scale s multiplied by
// LRFactor,
//
//	s ← s · LRFactor,   rollbacks ← rollbacks + 1,
//
// the learning rate of every later step being the schedule's times s. A
// trip when rollbacks = MaxRollbacks already is an error wrapping
// ErrTooManyRollbacks: training stops, saying what to change. The State
// is left as it was then, so a resume trips again in the same way rather
// than going on silently.
//
// # Decisions
//
// The floor, MinBest = 0.1, is chance on ten classes: an untrained model's
// robust accuracy (0 to 0.1) must not count as a best that a later check
// could fall below by half. The collapse rule starts once some accepted
// check has reached it; the gap rule holds from the first check (an
// untrained model has f ≈ a).
//
// Before any check is accepted, the last good step is 0: the run's initial
// state (the seed's initialization, or --init-from's weights, with a fresh
// optimizer), which every trainer can rebuild without a checkpoint file
// (in a cluster, every shard holds it as version 0). A
// first check that trips (only the gap rule can) therefore restarts the run
// from its beginning at the lower learning rate. The alternative, refusing
// to roll back, would stop the runs most in need of the lower rate.
//
// A Result whose accuracies are not finite numbers in [0, 1] is an error,
// not a trip: it is a broken measurement, not a collapsed model, and
// rolling back would hide it. A Result of a step before the last good one
// is an error too (the judgment of a checkpoint the run has gone past);
// judging the last good step again is allowed.
//
// When both rules trip, the Verdict's Rule is "collapse" (Reason names
// both): a rollback counts once.
//
// MaxGap's default is 0.4: on MNIST at ε = 0.2 a model trained with FGSM
// keeps a gap of 0.25–0.35 long before it collapses, and a lower learning
// rate does not close it, so 0.3 stops such runs after MaxRollbacks; 0.4
// lets them run and still trips at the first sign of the collapse
// (docs/TRAINING.md has the numbers). A multi-step-trained model's gap is a
// few points.
//
// # Checkpoints
//
// The checked model is a checkpoint's: the trainer saves the checkpoint of
// step t, then checks it, so the State in that checkpoint's metadata
// (MetaKey) is the state before t was judged (LastGood < t). A run resumed
// from it judges it again (the measurement is a function of the model and
// the seed, so the verdict is the same). After a rollback the last good
// checkpoint is written again with the new State, and the checkpoints
// after it (the abandoned trajectory) are deleted. Pruning must never
// delete the last good checkpoint (checkpoint.PruneKeeping).
package sentinel

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/eval"
	"github.com/logitpair/logitpair/pkg/models"
)

// MetaKey is the checkpoint metadata key that holds the State as JSON
// (State.JSON, ReadState).
const MetaKey = "sentinel"

// MinBest is the floor of the collapse rule: collapse trips only once the
// best accepted robust accuracy has reached it (chance on ten classes).
const MinBest = 0.1

// tol is the tolerance of the rule's comparisons (accuracies are k/n).
const tol = 1e-9

// Rules, the values of Verdict.Rule and of the rollback counter's reason
// label.
const (
	RuleCollapse = "collapse"
	RuleGap      = "gap"
)

// ErrTooManyRollbacks is wrapped by Observe's error for a trip beyond
// Config.MaxRollbacks.
var ErrTooManyRollbacks = errors.New("sentinel: too many rollbacks")

// Config is the sentinel's settings. The flag names in the messages are
// the training flags (train.Config's sentinel-* keys).
type Config struct {
	// Every is the steps between checks; 0 turns the sentinel off.
	Every int64 `json:"every"`
	// Examples: the last Examples examples of the validation split.
	Examples int `json:"examples"`
	// Steps of the multi-step check's PGD (α = 2.5·ε/Steps, random start,
	// true label).
	Steps int `json:"steps"`
	// Collapse trips when the multi-step accuracy falls below Collapse × the
	// best so far (once the best reached MinBest); 0 turns the rule off.
	Collapse float64 `json:"collapse"`
	// MaxGap trips when single-step accuracy − multi-step accuracy exceeds
	// it; 1 turns the rule off.
	MaxGap float64 `json:"max_gap"`
	// LRFactor multiplies the learning rate's scale at each trip.
	LRFactor float64 `json:"lr_factor"`
	// MaxRollbacks: a trip beyond this many rollbacks stops training.
	MaxRollbacks int `json:"max_rollbacks"`
}

// DefaultConfig is off (Every 0) with the settings a check uses once Every
// is set: 500 examples, PGD-10, collapse below half the best, a gap above
// 0.3, the learning rate halved at each trip, at most 3 rollbacks.
func DefaultConfig() Config {
	return Config{Every: 0, Examples: 500, Steps: 10, Collapse: 0.5, MaxGap: 0.4, LRFactor: 0.5, MaxRollbacks: 3}
}

// On reports whether the sentinel runs (Every > 0).
func (c Config) On() bool { return c.Every > 0 }

// Validate checks every field (whether or not the sentinel is on), naming
// the training flag.
func (c Config) Validate() error {
	in := func(v, lo, hi float64) bool { return v >= lo && v <= hi } // false for NaN
	switch {
	case c.Every < 0:
		return fmt.Errorf("--sentinel-every must be ≥ 0 (0: off), got %d", c.Every)
	case c.Examples < 1:
		return fmt.Errorf("--sentinel-examples must be at least 1, got %d", c.Examples)
	case c.Steps < 2:
		return fmt.Errorf("--sentinel-steps must be at least 2 (the check compares a multi-step attack with the single-step one), got %d", c.Steps)
	case !in(c.Collapse, 0, 1):
		return fmt.Errorf("--sentinel-collapse must be in [0, 1] (0: no collapse rule), got %v", c.Collapse)
	case !in(c.MaxGap, 0, 1):
		return fmt.Errorf("--sentinel-max-gap must be in [0, 1] (1: no gap rule), got %v", c.MaxGap)
	case !(c.LRFactor > 0 && c.LRFactor <= 1):
		return fmt.Errorf("--sentinel-lr-factor must be in (0, 1] (1: roll back without lowering the learning rate), got %v", c.LRFactor)
	case c.MaxRollbacks < 0:
		return fmt.Errorf("--sentinel-max-rollbacks must be ≥ 0 (0: stop at the first trip), got %d", c.MaxRollbacks)
	}
	return nil
}

// MultiAttack is the check's multi-step attack at eps: PGD-Steps with
// α = 2.5·ε/Steps (Madry et al. 2018), a random start, the true label.
func (c Config) MultiAttack(eps float32) attack.Config {
	return attack.PGD(eps, 2.5*eps/float32(c.Steps), c.Steps)
}

// SingleAttack is the check's single-step attack at eps: FGSM, one step of
// ε without a random start, the true label.
func SingleAttack(eps float32) attack.Config { return attack.FGSM(eps) }

// Result is one check's measurement.
type Result struct {
	// Step is the step of the checked model. Measure leaves it 0: the caller
	// sets it.
	Step       int64   `json:"step"`
	Clean      float64 `json:"clean"`
	SingleStep float64 `json:"single_step"`
	MultiStep  float64 `json:"multi_step"`
	Examples   int     `json:"examples"`
	// The attacks, as attack.Config.String.
	SingleAttack string `json:"single_attack"`
	MultiAttack  string `json:"multi_attack"`
}

// Gap is SingleStep − MultiStep.
func (r Result) Gap() float64 { return r.SingleStep - r.MultiStep }

func (r Result) String() string {
	return fmt.Sprintf("clean %.2f%%, single-step %.2f%%, multi-step %.2f%%, gap %.2f points (%d examples)", 100*r.Clean, 100*r.SingleStep, 100*r.MultiStep, 100*r.Gap(), r.Examples)
}

func (r Result) check() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"clean", r.Clean}, {"single-step", r.SingleStep}, {"multi-step", r.MultiStep}} {
		if !(f.v >= 0 && f.v <= 1) {
			return fmt.Errorf("sentinel: the check of step %d has a %s accuracy of %v, not in [0, 1]: a broken measurement", r.Step, f.name, f.v)
		}
	}
	return nil
}

// Measure runs the check on m: clean accuracy, FGSM at eps (SingleAttack)
// and PGD-Steps at eps (Config.MultiAttack), on the last cfg.Examples
// examples of val, with the attacks' random streams from seed (the same
// seed and model give the same Result). The Result's Step is left 0.
func Measure(m *models.Model, val data.Source, eps float32, cfg Config, seed int64) (Result, error) {
	if val == nil {
		return Result{}, fmt.Errorf("sentinel: no validation data")
	}
	single, multi := SingleAttack(eps), cfg.MultiAttack(eps)
	for _, a := range []attack.Config{single, multi} {
		if err := a.Validate(); err != nil {
			return Result{}, fmt.Errorf("sentinel: %w", err)
		}
	}
	rep, err := eval.Run(m, data.Tail(val, cfg.Examples), eval.Options{Batch: 100, Seed: seed, Attacks: []attack.Config{single, multi}})
	if err != nil {
		return Result{}, fmt.Errorf("sentinel: %w", err)
	}
	return Result{Clean: rep.CleanAccuracy, SingleStep: rep.Whitebox[0].Top1, MultiStep: rep.Whitebox[1].Top1, Examples: rep.Examples,
		SingleAttack: single.String(), MultiAttack: multi.String()}, nil
}

// State is what the sentinel remembers of a run; it travels in checkpoint
// metadata under MetaKey. The zero value is a fresh run (LRScale 0 reads
// as 1: Scale).
type State struct {
	// Best is the best multi-step accuracy of an accepted check, BestStep
	// its step.
	Best     float64 `json:"best"`
	BestStep int64   `json:"best_step"`
	// LastGood is the step of the last accepted check (0: the run's initial
	// state).
	LastGood int64 `json:"last_good"`
	// Rollbacks is the number of trips that rolled the run back.
	Rollbacks int `json:"rollbacks"`
	// LRScale multiplies the schedule's learning rate (0 reads as 1).
	LRScale float64 `json:"lr_scale"`
	// Last is the last check's result (nil before the first).
	Last *Result `json:"last,omitempty"`
}

// NewState is a fresh run's state.
func NewState() State { return State{LRScale: 1} }

// Scale is the learning rate's scale: LRScale, or 1 when it is 0.
func (s State) Scale() float64 {
	if s.LRScale == 0 {
		return 1
	}
	return s.LRScale
}

// JSON is the state as MetaKey's value.
func (s State) JSON() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ReadState reads the State of checkpoint metadata meta; ok is false when
// meta has none (a checkpoint written without the sentinel).
func ReadState(meta map[string]string) (s State, ok bool, err error) {
	v, ok := meta[MetaKey]
	if !ok {
		return State{}, false, nil
	}
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return State{}, true, fmt.Errorf("sentinel: checkpoint metadata %q: %w", MetaKey, err)
	}
	if !(s.LRScale >= 0 && s.LRScale <= 1) || s.Rollbacks < 0 || s.LastGood < 0 || !(s.Best >= 0 && s.Best <= 1) {
		return State{}, true, fmt.Errorf("sentinel: checkpoint metadata %q holds an impossible state %s", MetaKey, v)
	}
	return s, true, nil
}

// Verdict is Observe's judgment of one check.
type Verdict struct {
	// Trip: roll back to RollbackTo and continue at LRScale.
	Trip bool
	// Rule is the rule that tripped (RuleCollapse, RuleGap; "" when none).
	Rule string
	// Reason is a sentence with the numbers ("" when not tripped).
	Reason string
	// RollbackTo is the last good step (0: the initial state); meaningful
	// when Trip.
	RollbackTo int64
	// LRScale is the learning rate's scale from now on.
	LRScale float64
}

// Observe judges r, the check of the model of step r.Step, by the rule
// (package doc) and updates s: accepted, r.Step becomes LastGood and Best
// is updated; tripped, Rollbacks and LRScale change and the Verdict names
// the step to roll back to. Beyond cfg.MaxRollbacks it returns the
// Verdict and an error wrapping ErrTooManyRollbacks, leaving s unchanged.
// A broken or stale r is an error, s unchanged.
func (s *State) Observe(cfg Config, r Result) (Verdict, error) {
	if err := r.check(); err != nil {
		return Verdict{}, err
	}
	if r.Step < s.LastGood {
		return Verdict{}, fmt.Errorf("sentinel: a check of step %d, before the last good step %d", r.Step, s.LastGood)
	}
	scale := s.Scale()
	collapse := s.Best >= MinBest && r.MultiStep < cfg.Collapse*s.Best-tol
	gap := r.Gap() > cfg.MaxGap+tol
	if !collapse && !gap {
		s.LastGood, s.LRScale, s.Last = r.Step, scale, &r
		if r.MultiStep > s.Best {
			s.Best, s.BestStep = r.MultiStep, r.Step
		}
		return Verdict{LRScale: scale}, nil
	}
	var why []string
	rule := RuleGap
	if collapse {
		rule = RuleCollapse
		why = append(why, fmt.Sprintf("multi-step accuracy %.2f%% is below %.2g × the best %.2f%% (step %d)", 100*r.MultiStep, cfg.Collapse, 100*s.Best, s.BestStep))
	}
	if gap {
		why = append(why, fmt.Sprintf("single-step accuracy %.2f%% exceeds multi-step accuracy %.2f%% by %.2f points > %.4g", 100*r.SingleStep, 100*r.MultiStep, 100*r.Gap(), 100*cfg.MaxGap))
	}
	to := "the initial state (step 0)"
	if s.LastGood > 0 {
		to = fmt.Sprintf("step %d", s.LastGood)
	}
	v := Verdict{Trip: true, Rule: rule, RollbackTo: s.LastGood, LRScale: scale * cfg.LRFactor,
		Reason: fmt.Sprintf("the check at step %d tripped (%s): %s; rolling back to %s, learning rate scale %.4g → %.4g",
			r.Step, rule, strings.Join(why, ", and "), to, scale, scale*cfg.LRFactor)}
	if s.Rollbacks >= cfg.MaxRollbacks {
		v.LRScale = scale
		return v, fmt.Errorf("%w: the check at step %d tripped (%s) after %d rollbacks (--sentinel-max-rollbacks %d): %s. "+
			"The training is unstable at this setting even with the learning rate scaled by %.4g: lower --lr, "+
			"train with a random start or a multi-step attack (e.g. --objective pgd with --attack-steps ≥ 2 instead of single-step FGSM), "+
			"or allow more rollbacks with --sentinel-max-rollbacks; the last good checkpoint is %s",
			ErrTooManyRollbacks, r.Step, rule, s.Rollbacks, cfg.MaxRollbacks, strings.Join(why, ", and "), scale, to)
	}
	s.Rollbacks++
	s.LRScale, s.Last = v.LRScale, &r
	return v, nil
}
