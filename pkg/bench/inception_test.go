package bench

import (
	"testing"

	"github.com/logitpair/logitpair/pkg/models"
)

// TestStepInceptionV3 is the `logitpair bench step --model inception-v3`
// smoke run at a tiny config (width 1/32, 75×75, batch 2): a full training
// step and an input-gradient-only step both run and report.
func TestStepInceptionV3(t *testing.T) {
	c := DefaultStepConfig()
	c.Model = "inception-v3"
	c.Config = models.Config{"width_div": 32, "image_size": 75, "classes": 10}
	c.Batch, c.Warmup, c.Steps, c.Threads = 2, 1, 2, 1
	for _, igo := range []bool{false, true} {
		c.InputGradOnly = igo
		r, err := Step(c)
		if err != nil {
			t.Fatal(err)
		}
		if r.Model != "inception-v3" || r.Batch != 2 || r.Steps != 2 || r.MsPerStep <= 0 || r.InputGradOnly != igo {
			t.Fatalf("unexpected result %+v", r)
		}
	}
}

// TestTrainStepInceptionV3 runs whole ALP training steps (PGD-2 attack in
// evaluation mode, the pairing objective's forward and backward in training
// mode, the optimizer) through train.Trainer on a tiny inception-v3, as
// `logitpair train --model inception-v3` would on 75×75 data.
func TestTrainStepInceptionV3(t *testing.T) {
	c := DefaultTrainStepConfig()
	c.Model = "inception-v3"
	c.Config = models.Config{"width_div": 32, "image_size": 75, "classes": 10}
	c.Batch, c.Warmup, c.Steps, c.Threads, c.AttackSteps = 2, 1, 1, 1, 2
	c.Eps, c.StepSize = 8.0/255, 2.0/255
	r, err := TrainStep(c)
	if err != nil {
		t.Fatal(err)
	}
	if r.Model != "inception-v3" || r.Objective != "alp" || r.AttackSteps != 2 || r.MsPerStep <= 0 {
		t.Fatalf("unexpected result %+v", r)
	}
}
