// Package train is single-process adversarial training: the training step
// that every cluster worker runs too (batch → attack → objective → gradient),
// the optimizer loop, when to checkpoint and resume (the files themselves
// are pkg/checkpoint's), and robust validation.
//
// Everything random in a step — the batch, its augmentation, the attack's
// random start and targets, the objective's noise — is a pure function of
// (seed, step, worker slot), so a run is replayable and --resume continues it
// bit for bit.
package train

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/sentinel"
	"github.com/logitpair/logitpair/pkg/wire"
)

// Config is every setting of a training run. The JSON names are the
// configuration file's keys and the CLI's flag names; the cluster's
// coordinator hands the same Config to its workers. Every key is classified
// as one replay depends on or not (configdiff.go): a new field must be
// added there too.
type Config struct {
	Dataset     string        `json:"dataset"`
	DataDir     string        `json:"data-dir"`
	Augment     bool          `json:"augment"`
	Model       string        `json:"model"`
	ModelConfig models.Config `json:"model-config,omitempty"`

	Objective  string  `json:"objective"`
	PairWeight float64 `json:"pair-weight"`
	Smoothing  float64 `json:"label-smoothing"`
	NoiseStd   float64 `json:"noise-std"`
	MixupAlpha float64 `json:"mixup-alpha"`

	// SingleStep (fgsm or stepll) and RandomEps (ε per example from Kurakin
	// et al.'s truncated normal on [0, Eps]) make the single-step and
	// ensemble-adv objectives' adversarial batch; StaticModels are
	// ensemble-adv's fixed source model files, loaded by every worker, and
	// SourceSchedule (round-robin or random) picks each step's source.
	SingleStep     string   `json:"single-step"`
	RandomEps      bool     `json:"random-eps"`
	StaticModels   []string `json:"static-models,omitempty"`
	SourceSchedule string   `json:"source-schedule"`

	// Attack is a released-code attack string (pgd_76.5_2.55_40); when empty
	// the attack is Eps/StepSize/AttackSteps/Restarts/AttackTarget.
	Attack       string  `json:"attack"`
	Eps          float64 `json:"eps"`
	StepSize     float64 `json:"step-size"`
	AttackSteps  int     `json:"attack-steps"`
	Restarts     int     `json:"restarts"`
	AttackTarget string  `json:"attack-target"`

	Batch          int     `json:"batch"`
	Steps          int64   `json:"steps"`
	Optimizer      string  `json:"optimizer"`
	LR             float64 `json:"lr"`
	LRSchedule     string  `json:"lr-schedule"`
	WeightDecay    float64 `json:"weight-decay"`
	EMA            float64 `json:"ema"`
	Seed           int64   `json:"seed"`
	Threads        int     `json:"threads"`
	LogEvery       int64   `json:"log-every"`
	RMSPropEpsilon float64 `json:"rmsprop-epsilon"`
	// WireFormat is the precision of the gradient a step produces, as a
	// cluster's pushes carry it (wire.ParseFormat): "float32" (default), or
	// "bf16", every gradient value rounded to bfloat16 (wire.BF16Bits), half
	// the bytes of a push. Local training rounds the same way, so a
	// one-worker cluster and `logitpair train` still compute the same steps.
	WireFormat string `json:"wire-format"`

	Out              string `json:"out"`
	Resume           bool   `json:"resume"`
	ResumeFrom       int64  `json:"resume-from"` // > 0: resume from this step's checkpoint, not the newest
	InitFrom         string `json:"init-from"`
	CheckpointEvery  int64  `json:"checkpoint-every"`
	Keep             int    `json:"keep"`
	ValidateEvery    int64  `json:"validate-every"`
	ValidateExamples int    `json:"validate-examples"`

	// The sentinel against catastrophic overfitting and gradient masking
	// (pkg/sentinel; Sentinel): every SentinelEvery steps (0: off) a check
	// of FGSM and PGD-SentinelSteps at --eps on the last SentinelExamples
	// validation examples; a trip rolls the run back to its last good
	// checkpoint and multiplies the learning rate by SentinelLRFactor.
	SentinelEvery        int64   `json:"sentinel-every"`
	SentinelExamples     int     `json:"sentinel-examples"`
	SentinelSteps        int     `json:"sentinel-steps"`
	SentinelCollapse     float64 `json:"sentinel-collapse"`
	SentinelMaxGap       float64 `json:"sentinel-max-gap"`
	SentinelLRFactor     float64 `json:"sentinel-lr-factor"`
	SentinelMaxRollbacks int     `json:"sentinel-max-rollbacks"`
}

// DefaultConfig is Madry et al.'s MNIST setting trained with ALP: ε = 0.3,
// 40 steps of 0.01 from a random start on the true label, Adam 1e-4,
// batch 50; λ = 0.5.
func DefaultConfig() Config {
	sc := sentinel.DefaultConfig()
	return Config{
		Dataset: "mnist", DataDir: "data/mnist", Augment: true, Model: "madry-mnist",
		Objective: "alp", PairWeight: 0.5, NoiseStd: 0.5, MixupAlpha: 1,
		SingleStep: objective.SingleStepLL, SourceSchedule: string(objective.RoundRobin),
		Eps: 0.3, StepSize: 0.01, AttackSteps: 40, Restarts: 1, AttackTarget: "true",
		Batch: 50, Steps: 100000, Optimizer: "adam", LR: 1e-4, LRSchedule: "constant",
		Seed: 1, LogEvery: 100, RMSPropEpsilon: 1.0, WireFormat: wire.Float32.String(),
		Out: "runs/mnist-alp", CheckpointEvery: 1000, Keep: 3,
		ValidateEvery: 0, ValidateExamples: 1000,
		SentinelEvery: sc.Every, SentinelExamples: sc.Examples, SentinelSteps: sc.Steps, SentinelCollapse: sc.Collapse,
		SentinelMaxGap: sc.MaxGap, SentinelLRFactor: sc.LRFactor, SentinelMaxRollbacks: sc.MaxRollbacks,
	}
}

// Sentinel returns the sentinel's settings (the sentinel-* keys).
func (c Config) Sentinel() sentinel.Config {
	return sentinel.Config{Every: c.SentinelEvery, Examples: c.SentinelExamples, Steps: c.SentinelSteps, Collapse: c.SentinelCollapse,
		MaxGap: c.SentinelMaxGap, LRFactor: c.SentinelLRFactor, MaxRollbacks: c.SentinelMaxRollbacks}
}

// Load reads a YAML or JSON configuration file over c (keys it does not set
// keep their value). Unknown keys and keys given twice are errors. On an
// error c is unchanged.
func (c *Config) Load(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	j, err := configToJSON(b)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	dec := json.NewDecoder(strings.NewReader(string(j)))
	dec.DisallowUnknownFields()
	// Decode into a copy (the decoder writes fields as it goes, and into
	// the map and the slice's array in place), so that a bad key at the
	// end of the file leaves nothing half-applied.
	next := *c
	next.ModelConfig = maps.Clone(c.ModelConfig)
	next.StaticModels = slices.Clone(c.StaticModels)
	if err := dec.Decode(&next); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	*c = next
	return nil
}

// Resuming reports whether this start continues the run in Out (--resume
// or --resume-from).
func (c Config) Resuming() bool { return c.Resume || c.ResumeFrom > 0 }

// JSON returns the configuration as JSON (stored in checkpoints).
func (c Config) JSON() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// AttackConfig returns the training attack.
func (c Config) AttackConfig() (attack.Config, error) {
	if c.Attack != "" {
		return attack.Parse(c.Attack)
	}
	target, err := attack.ParseTarget(c.AttackTarget)
	if err != nil {
		return attack.Config{}, err
	}
	a := attack.Config{Eps: float32(c.Eps), Step: float32(c.StepSize), Steps: c.AttackSteps,
		Restarts: max(c.Restarts, 1), RandomStart: true, Target: target}
	return a, a.Validate()
}

// TrainAttackConfig returns the attack that makes the training batch's
// adversarial examples. For single-step and ensemble-adv it is one step of
// --eps without random start: --single-step fgsm on the --attack-target label
// (attack.FGSM; "predicted" avoids Kurakin et al.'s label leaking) or stepll
// toward the least-likely class (attack.StepLL); their --attack, --step-size,
// --attack-steps and --restarts only set the validation attack
// (AttackConfig). Every other objective trains with AttackConfig.
func (c Config) TrainAttackConfig() (attack.Config, error) {
	if c.Objective != "single-step" && c.Objective != "ensemble-adv" {
		return c.AttackConfig()
	}
	var a attack.Config
	switch c.SingleStep {
	case objective.SingleStepFGSM:
		target, err := attack.ParseTarget(c.AttackTarget)
		if err != nil {
			return a, err
		}
		a = attack.FGSM(float32(c.Eps))
		a.Target = target
	case objective.SingleStepLL, "":
		a = attack.StepLL(float32(c.Eps))
	default:
		return a, fmt.Errorf("--single-step %q: want fgsm or stepll", c.SingleStep)
	}
	if err := a.Validate(); err != nil {
		return a, fmt.Errorf("--objective %s: %w", c.Objective, err)
	}
	return a, nil
}

// ObjectiveConfig returns the objective's settings.
func (c Config) ObjectiveConfig() objective.Config {
	return objective.Config{Name: c.Objective, PairWeight: c.PairWeight, Smoothing: c.Smoothing,
		NoiseStd: c.NoiseStd, MixupAlpha: c.MixupAlpha, SingleStep: c.SingleStep,
		StaticModels: len(c.StaticModels), SourceSchedule: objective.Schedule(c.SourceSchedule)}
}

// OptimConfig returns the optimizer's settings: TensorFlow 1's RMSProp with
// the released code's ρ = 0.9, μ = 0.9 and ε = RMSPropEpsilon (1.0), Adam with
// its defaults, or SGD with momentum 0.9.
func (c Config) OptimConfig() (optim.Config, error) {
	oc, err := optim.DefaultConfig(c.Optimizer)
	if err != nil {
		return oc, err
	}
	oc.RMSProp.Epsilon = c.RMSPropEpsilon
	if c.Optimizer == optim.KindSGD {
		oc.SGD.Momentum = 0.9
	}
	return oc, nil
}

// Validate checks every field and their combinations, naming the flag.
func (c Config) Validate() error {
	if _, err := c.Wire(); err != nil {
		return fmt.Errorf("--wire-format: %w", err)
	}
	if _, err := models.Defaults(c.Model); err != nil {
		return err
	}
	if err := c.ObjectiveConfig().Validate(); err != nil {
		return err
	}
	if o := c.ObjectiveConfig(); specsNeedAttack(o) {
		if _, err := c.TrainAttackConfig(); err != nil {
			return err
		}
	}
	singleStep := c.Objective == "single-step" || c.Objective == "ensemble-adv"
	switch {
	case len(c.StaticModels) > 0 && c.Objective != "ensemble-adv":
		return fmt.Errorf("--static-models applies to --objective ensemble-adv only, not %s", c.Objective)
	case c.RandomEps && !singleStep:
		return fmt.Errorf("--random-eps applies to --objective single-step or ensemble-adv only, not %s", c.Objective)
	}
	for i, p := range c.StaticModels {
		if strings.TrimSpace(p) == "" {
			return fmt.Errorf("--static-models: entry %d is empty", i+1)
		}
	}
	if _, err := c.OptimConfig(); err != nil {
		return err
	}
	if _, err := optim.ParseSchedule(c.LRSchedule, c.LR); err != nil {
		return err
	}
	switch {
	case c.Dataset == "":
		return fmt.Errorf("--dataset is required")
	case c.Batch < 1:
		return fmt.Errorf("--batch must be at least 1, got %d", c.Batch)
	case c.Steps < 1:
		return fmt.Errorf("--steps must be at least 1, got %d", c.Steps)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("--lr must be positive, got %v", c.LR)
	case c.WeightDecay < 0 || math.IsNaN(c.WeightDecay):
		return fmt.Errorf("--weight-decay must be ≥ 0, got %v", c.WeightDecay)
	case c.EMA < 0 || c.EMA >= 1 || math.IsNaN(c.EMA):
		return fmt.Errorf("--ema must be in [0, 1) (0 turns it off), got %v", c.EMA)
	case c.Out == "":
		return fmt.Errorf("--out is required")
	case c.CheckpointEvery < 0 || c.ValidateEvery < 0 || c.LogEvery < 0:
		return fmt.Errorf("--checkpoint-every, --validate-every and --log-every must be ≥ 0")
	case c.Keep < 1:
		return fmt.Errorf("--keep must be at least 1, got %d", c.Keep)
	case c.ValidateEvery > 0 && c.ValidateExamples < 1:
		return fmt.Errorf("--validate-examples must be at least 1 with --validate-every")
	case c.ResumeFrom < 0:
		return fmt.Errorf("--resume-from must be a checkpoint's step (≥ 1), got %d", c.ResumeFrom)
	case c.Resuming() && c.InitFrom != "":
		return fmt.Errorf("--resume and --init-from exclude each other: resume continues a run, init-from starts a new one from weights")
	case c.Threads < 0:
		return fmt.Errorf("--threads must be ≥ 0, got %d", c.Threads)
	}
	if err := c.Sentinel().Validate(); err != nil {
		return err
	}
	if c.SentinelEvery > 0 && !(c.Eps > 0 && c.Eps <= 1) {
		return fmt.Errorf("--sentinel-every: the sentinel attacks at --eps, which must be in (0, 1], got %v", c.Eps)
	}
	return nil
}

func specsNeedAttack(o objective.Config) bool {
	ob, err := objective.New(nil, o)
	return err == nil && ob.NeedsAdversarial()
}

// Wire returns the gradient's wire format (WireFormat; empty means
// float32, as in configurations written before the key existed).
func (c Config) Wire() (wire.Format, error) {
	if c.WireFormat == "" {
		return wire.Float32, nil
	}
	return wire.ParseFormat(c.WireFormat)
}
