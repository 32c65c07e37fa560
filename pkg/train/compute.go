package train

import (
	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// Passes counts model passes. A pass is one forward or one backward of a
// model on one example: a forward of a batch of n rows is n forward passes,
// and an attack's gradient with respect to the input (a backward through the
// whole network, without the parameter gradients) is a backward pass like
// the training backward. Passes of ensemble-adv's static source models count
// as the trained model's do.
type Passes struct {
	Forward, Backward int64
}

// Add returns p + q.
func (p Passes) Add(q Passes) Passes {
	return Passes{Forward: p.Forward + q.Forward, Backward: p.Backward + q.Backward}
}

// Scale returns p × n.
func (p Passes) Scale(n int64) Passes {
	return Passes{Forward: p.Forward * n, Backward: p.Backward * n}
}

// StepPasses is the one rule of how many passes a training step of cfg
// spends per example of its batch (a step of b examples on w workers spends
// StepPasses × b × w). With the training attack's K steps and R restarts:
//
//	training         F = B = ForwardBatch/m: 1 (plain, label-smoothing, pgd,
//	                 clp, logit-squeeze, mixup) or 2 on concat(x, x̃) (mpgd,
//	                 alp, vat-kl, trades, single-step, ensemble-adv)
//	PGD attack       + K·R forward, + K·R backward (the input gradients)
//	                 + R forward when R > 1 (scoring each restart's result)
//	                 + 1 forward for a target other than the true label
//	                 (predicted, least-likely, random: the clean logits)
//	trades           the attack ascends the KL to the clean prediction:
//	                 + 1 forward (the clean logits), no label target
//	single-step,     the attack is one step (K = R = 1, no random start;
//	ensemble-adv     --random-eps draws ε without a pass): + 1 forward
//	                 + 1 backward, + 1 forward for stepll (least-likely
//	                 target) or fgsm on the predicted label
//
// so, e.g., ALP with PGD-40 on the true label is 42 forward and 42 backward
// passes per example, Madry et al.'s pgd 41 and 41, plain 1 and 1, and
// single-step stepll 4 forward and 3 backward. A random start costs no pass.
// Worker counts the passes it runs (Worker.Passes); the tests check that
// count against this rule.
func StepPasses(cfg Config) (Passes, error) {
	o, err := objective.New(nil, cfg.ObjectiveConfig())
	if err != nil {
		return Passes{}, err
	}
	n := int64(o.ForwardBatch(1))
	p := Passes{Forward: n, Backward: n}
	if !o.NeedsAdversarial() {
		return p, nil
	}
	ac, err := cfg.TrainAttackConfig()
	if err != nil {
		return Passes{}, err
	}
	kr := int64(ac.Steps) * int64(ac.Restarts)
	p = p.Add(Passes{Forward: kr, Backward: kr})
	if ac.Restarts > 1 {
		p.Forward += int64(ac.Restarts)
	}
	switch {
	case o.Name == "trades":
		p.Forward++ // the clean logits the KL attack ascends from
	case ac.Target != attack.TrueLabel:
		p.Forward++ // the clean logits that pick the target
	}
	return p, nil
}

// countingModel is an attack.Model that adds the rows of every forward and
// input gradient to a Passes count.
type countingModel struct {
	attack.Model
	n *Passes
}

// Logits counts x's rows as forward passes.
func (c countingModel) Logits(x *tensor.Tensor) *tensor.Tensor {
	c.n.Forward += int64(x.Dim(0))
	return c.Model.Logits(x)
}

// InputGrad counts dlogits's rows as backward passes.
func (c countingModel) InputGrad(dlogits *tensor.Tensor) *tensor.Tensor {
	c.n.Backward += int64(dlogits.Dim(0))
	return c.Model.InputGrad(dlogits)
}

// rewind moves the accounting's origin back to step to, after the
// sentinel rolled the run back from step from: the steps in between were
// computed and count (Compute.Steps then exceeds the step number), though
// the run goes over them again.
func (a *accounting) rewind(from, to int64, batch int) {
	steps := from - a.since
	examples := steps * int64(batch)
	p := a.perExample.Scale(examples)
	a.base.Steps += steps
	a.base.ExamplesSeen += examples
	a.base.ForwardPasses += p.Forward
	a.base.BackwardPasses += p.Backward
	a.since = to
}
