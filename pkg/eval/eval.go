// Package eval measures a model's accuracy on clean inputs, under white-box
// attacks crafted on the model itself, and under black-box transfer attacks
// crafted on other models (the paper's "black box" columns).
//
// Accuracy under a targeted attack is the fraction still classified as the
// true label (the paper's ImageNet tables); top-5 counts the true label among
// the five largest logits.
package eval

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// Options selects the examples and attacks.
type Options struct {
	// Examples: the first N examples of the source (0: all).
	Examples int
	Batch    int
	Seed     int64
	Attacks  []attack.Config
	// Sources are models on which transfer attacks are crafted (each with
	// every attack in Attacks); SourceNames label them in the report.
	Sources     []*models.Model
	SourceNames []string
	// Checkpoint: the model's file, named in Report.Warning's suggested
	// command.
	Checkpoint string
	// Progress, when set, is called after each batch with the examples
	// evaluated so far (every attack run on them) and their total.
	Progress func(done, total int)
}

// The standard suite's rule for an attack too weak to trust: a white-box
// attack with fewer than MinTrustedRestarts starts or fewer than
// MinTrustedSteps steps. One start of PGD finds the worst case of a smooth
// model but stalls on the plateaus and kinks that gradient masking makes,
// and a few dozen steps of a fixed step size have not converged on
// adversarially trained models (Croce & Hein 2020 lowered many published
// PGD numbers so); the accuracy such an attack reports is only an upper
// bound. The strong suite (pkg/strong) is the evaluation to trust.
const (
	MinTrustedRestarts = 2
	MinTrustedSteps    = 50
)

// WeakAttackWarning returns the warning for the attacks of attacks that fall
// under the rule above (MinTrustedRestarts, MinTrustedSteps), naming the
// strong-suite command for checkpoint; "" when every attack passes or there
// is none.
func WeakAttackWarning(attacks []attack.Config, checkpoint string) string {
	var weak []string
	for _, a := range attacks {
		if a.Restarts < MinTrustedRestarts || a.Steps < MinTrustedSteps {
			weak = append(weak, a.String())
		}
	}
	if len(weak) == 0 {
		return ""
	}
	run := "run the strong suite: logitpair eval --suite strong with this model's --checkpoint"
	if checkpoint != "" {
		run = "run: logitpair eval --checkpoint " + checkpoint + " --suite strong"
	}
	return fmt.Sprintf("the attack is too weak to trust: %s; an attack with fewer than %d starts or %d steps only bounds robust accuracy from above "+
		"and misses gradient masking. For a number to trust, %s",
		strings.Join(weak, "; "), MinTrustedRestarts, MinTrustedSteps, run)
}

// AttackResult is one attack's outcome.
type AttackResult struct {
	Attack   string  `json:"attack"`
	Eps      float64 `json:"eps"`
	StepSize float64 `json:"step_size"`
	Steps    int     `json:"steps"`
	Restarts int     `json:"restarts"`
	Target   string  `json:"target"`
	Source   string  `json:"source,omitempty"`
	Top1     float64 `json:"accuracy"`
	Top5     float64 `json:"top5_accuracy"`
}

// Report is an evaluation's outcome; JSON names are the CLI's.
type Report struct {
	Model            string         `json:"model"`
	Dataset          string         `json:"dataset"`
	Examples         int            `json:"examples"`
	CleanAccuracy    float64        `json:"clean_accuracy"`
	CleanTop5        float64        `json:"clean_top5_accuracy"`
	WhiteboxAccuracy *float64       `json:"whitebox_accuracy,omitempty"`
	TransferAccuracy *float64       `json:"transfer_accuracy,omitempty"`
	Whitebox         []AttackResult `json:"whitebox,omitempty"`
	Transfer         []AttackResult `json:"transfer,omitempty"`
	// Warning: WeakAttackWarning of the attacks, when they are too weak to
	// trust.
	Warning string `json:"warning,omitempty"`
	// Compute is the training compute recorded in the evaluated checkpoint's
	// metadata (checkpoint.Compute), when it has one; Run leaves it nil.
	Compute *checkpoint.Compute `json:"compute,omitempty"`
}

// Run evaluates m on src. Each attack uses its own seeded stream per batch,
// so results are reproducible.
func Run(m *models.Model, src data.Source, o Options) (Report, error) {
	info := src.Info()
	n := info.Len
	if o.Examples > 0 && o.Examples < n {
		n = o.Examples
	}
	if n == 0 {
		return Report{}, fmt.Errorf("eval: no examples")
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if info.C != m.Input[0] || info.H != m.Input[1] || info.W != m.Input[2] {
		return Report{}, fmt.Errorf("eval: %s images are %d×%d×%d, model %s expects %d×%d×%d", info.Name, info.C, info.H, info.W, m.Name, m.Input[0], m.Input[1], m.Input[2])
	}
	if info.Classes > m.Classes {
		return Report{}, fmt.Errorf("eval: %s has %d classes, model %s only %d logits", info.Name, info.Classes, m.Name, m.Classes)
	}
	for i, s := range o.Sources {
		if s.Input != m.Input {
			return Report{}, fmt.Errorf("eval: transfer source %s expects %v inputs, target %v", o.SourceNames[i], s.Input, m.Input)
		}
	}
	be := m.Backend
	rep := Report{Model: m.Name, Dataset: info.Name, Examples: n, Warning: WeakAttackWarning(o.Attacks, o.Checkpoint)}
	type counter struct{ top1, top5 int }
	clean := counter{}
	white := make([]counter, len(o.Attacks))
	trans := make([]counter, len(o.Attacks)*len(o.Sources))
	attacks := make([]*attack.Attack, len(o.Attacks))
	for i, c := range o.Attacks {
		a, err := attack.New(be, c)
		if err != nil {
			return rep, err
		}
		attacks[i] = a
	}
	size := info.Size()
	hostX := make([]float32, o.Batch*size)
	labels := make([]int32, o.Batch)
	hostZ := make([]float32, o.Batch*m.Classes)
	x := map[int]*tensor.Tensor{}
	for lo := 0; lo < n; lo += o.Batch {
		b := min(o.Batch, n-lo)
		for j := 0; j < b; j++ {
			y, err := src.Example(lo+j, hostX[j*size:(j+1)*size])
			if err != nil {
				return rep, err
			}
			labels[j] = y
		}
		xt := x[b]
		if xt == nil {
			xt = be.New(b, info.C, info.H, info.W)
			x[b] = xt
		}
		be.Upload(xt, hostX[:b*size])
		view := models.EvalView{M: m}
		score := func(c *counter, in *tensor.Tensor) {
			z := view.Logits(in)
			be.Download(hostZ[:b*m.Classes], z)
			t1, t5 := topk(hostZ[:b*m.Classes], labels[:b], m.Classes)
			c.top1 += t1
			c.top5 += t5
		}
		score(&clean, xt)
		for i, a := range attacks {
			rng := rand.New(rand.NewPCG(uint64(o.Seed), uint64(lo)<<16|uint64(i)))
			adv, _ := a.Run(view, xt, labels[:b], rng)
			score(&white[i], adv)
			for s, src := range o.Sources {
				rng := rand.New(rand.NewPCG(uint64(o.Seed)+1, uint64(lo)<<16|uint64(i)<<8|uint64(s)))
				adv, _ := a.Run(models.EvalView{M: src}, xt, labels[:b], rng)
				score(&trans[s*len(attacks)+i], adv)
			}
		}
		if o.Progress != nil {
			o.Progress(lo+b, n)
		}
	}
	frac := func(k int) float64 { return float64(k) / float64(n) }
	rep.CleanAccuracy, rep.CleanTop5 = frac(clean.top1), frac(clean.top5)
	result := func(c attack.Config, cnt counter, source string) AttackResult {
		return AttackResult{Attack: c.String(), Eps: attack.AsWritten(c.Eps), StepSize: attack.AsWritten(c.Step), Steps: c.Steps,
			Restarts: c.Restarts, Target: c.Target.String(), Source: source, Top1: frac(cnt.top1), Top5: frac(cnt.top5)}
	}
	for i, c := range o.Attacks {
		rep.Whitebox = append(rep.Whitebox, result(c, white[i], ""))
		for s := range o.Sources {
			rep.Transfer = append(rep.Transfer, result(c, trans[s*len(attacks)+i], o.SourceNames[s]))
		}
	}
	if len(rep.Whitebox) > 0 {
		v := rep.Whitebox[0].Top1
		rep.WhiteboxAccuracy = &v
	}
	if len(rep.Transfer) > 0 {
		v := rep.Transfer[0].Top1
		for _, t := range rep.Transfer {
			v = min(v, t.Top1) // the strongest black-box attacker
		}
		rep.TransferAccuracy = &v
	}
	return rep, nil
}

// topk counts rows whose label is the arg-max, and among the five largest.
func topk(z []float32, labels []int32, k int) (top1, top5 int) {
	for i, y := range labels {
		row := z[i*k : (i+1)*k]
		above := 0
		for j, v := range row {
			if v > row[y] || (v == row[y] && j < int(y)) {
				above++
			}
		}
		if above == 0 {
			top1++
		}
		if above < 5 {
			top5++
		}
	}
	return top1, top5
}
