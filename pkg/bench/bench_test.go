package bench

import (
	"testing"

	"github.com/logitpair/logitpair/pkg/models"
)

func TestStepRunsAndReports(t *testing.T) {
	c := DefaultStepConfig()
	c.Config = models.Config{"conv1": 4, "conv2": 8, "hidden": 16}
	c.Batch, c.Warmup, c.Steps, c.Threads = 4, 1, 3, 1
	for _, igo := range []bool{false, true} {
		c.InputGradOnly = igo
		r, err := Step(c)
		if err != nil {
			t.Fatal(err)
		}
		if r.Model != "madry-mnist" || r.Batch != 4 || r.Threads != 1 || r.Steps != 3 || r.MsPerStep <= 0 || r.InputGradOnly != igo {
			t.Fatalf("unexpected result %+v", r)
		}
	}
}

func TestStepRejectsBadConfig(t *testing.T) {
	for _, mod := range []func(*StepConfig){
		func(c *StepConfig) { c.Batch = 0 },
		func(c *StepConfig) { c.Steps = 0 },
		func(c *StepConfig) { c.Threads = -1 },
		func(c *StepConfig) { c.Gemm = "mkl" },
		func(c *StepConfig) { c.Model = "lenet" },
	} {
		c := DefaultStepConfig()
		mod(&c)
		if _, err := Step(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

// BenchmarkMadryMNISTStep is the engine benchmark (go test -bench):
// madry-mnist, batch 50, full forward+backward.
func BenchmarkMadryMNISTStep(b *testing.B) {
	c := DefaultStepConfig()
	c.Warmup, c.Steps = 2, b.N
	r, err := Step(c)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(r.MsPerStep, "ms/step")
	b.ReportMetric(r.AllocsPerStep, "allocs/step")
}
