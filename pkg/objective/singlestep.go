package objective

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Single-step adversarial training (Kurakin, Goodfellow, Bengio 2017a,
// "Adversarial Machine Learning at Scale") and ensemble adversarial training
// (Tramèr, Kurakin, Papernot, Goodfellow, Boneh, McDaniel 2018, "Ensemble
// Adversarial Training: Attacks and Defenses") are mpgd's mixed minibatch,
// (1/2m)[Σ CE(f(x_i), y_i) + Σ CE(f(x̃_i), y_i)], with x̃ made by one step of ε
// (SingleStepFGSM or SingleStepLL, optionally with ε drawn per example as in
// attack.RandomEps). single-step crafts x̃ on the model being trained;
// ensemble-adv crafts it, for each batch, on one source chosen among the
// model being trained and the fixed static models (Source).

// Single-step attacks of the single-step and ensemble-adv objectives.
const (
	// SingleStepFGSM is one step of ε on the training attack's label
	// (--attack-target: true, or predicted to avoid label leaking).
	SingleStepFGSM = "fgsm"
	// SingleStepLL is one step of ε toward the least-likely class
	// (attack.StepLL), Kurakin et al.'s step-LL.
	SingleStepLL = "stepll"
)

// Schedule is how ensemble-adv picks each batch's source.
type Schedule string

const (
	// RoundRobin: at step t the source is t mod (S+1), 0 being the model
	// being trained and s ≥ 1 the s-th static model — the alternation
	// Tramèr et al. (2018) describe.
	RoundRobin Schedule = "round-robin"
	// RandomSource: a source drawn uniformly from the S+1 at each step with
	// the run's seeded per-step stream, as the authors' released MNIST code
	// does (tf_utils.py draws np.random.randint(len(x_advs)) per batch).
	RandomSource Schedule = "random"
)

// ParseSchedule reads round-robin or random.
func ParseSchedule(s string) (Schedule, error) {
	switch Schedule(s) {
	case RoundRobin, RandomSource:
		return Schedule(s), nil
	}
	return "", fmt.Errorf("unknown source schedule %q (want %s or %s)", s, RoundRobin, RandomSource)
}

// SingleStep reports whether the objective is single-step or ensemble-adv:
// its adversarial batch comes from a single-step attack (Config.SingleStep).
func (o *Objective) SingleStep() bool { return singleStep(o.Name) }

func singleStep(name string) bool { return name == "single-step" || name == "ensemble-adv" }

// Source returns the source of step's adversarial batch: 0 for the model
// being trained, s ∈ [1, StaticModels] for the s-th static model. Only
// ensemble-adv has static models; every other objective answers 0. rng is
// used by the random schedule only: give every worker of a step the same
// stream (train.StepRNG of the step and a fixed slot) so that a synchronous
// step has one source, as one large batch would.
func (o *Objective) Source(step int64, rng *rand.Rand) int {
	if o.Name != "ensemble-adv" || o.StaticModels == 0 {
		return 0
	}
	n := o.StaticModels + 1
	if o.SourceSchedule == RandomSource {
		return rng.IntN(n)
	}
	return int(step % int64(n))
}

// validateSingleStep checks the single-step settings of single-step and
// ensemble-adv.
func (c Config) validateSingleStep() error {
	if !singleStep(c.Name) {
		return nil
	}
	switch c.SingleStep {
	case "", SingleStepFGSM, SingleStepLL: // "" is SingleStepLL
	default:
		return fmt.Errorf("objective %s: unknown single-step attack %q (--single-step: want %s)", c.Name, c.SingleStep,
			strings.Join([]string{SingleStepFGSM, SingleStepLL}, " or "))
	}
	if c.Name != "ensemble-adv" {
		return nil
	}
	if c.StaticModels < 1 {
		return fmt.Errorf("objective ensemble-adv needs at least one static model (--static-models F1,F2,...)")
	}
	if c.SourceSchedule == "" {
		return nil // RoundRobin
	}
	_, err := ParseSchedule(string(c.SourceSchedule))
	return err
}
