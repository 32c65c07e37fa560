package bench

import (
	"math/rand"
	"runtime"
	"sort"
	"time"

	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/train"
)

// TrainStepConfig is a whole training step of an objective: the attack
// (AttackSteps input-gradient passes in evaluation mode), the objective's
// forward/backward in training mode, and the optimizer update.
type TrainStepConfig struct {
	StepConfig
	Objective   string
	Eps         float64
	StepSize    float64
	AttackSteps int
}

// DefaultTrainStepConfig is the ALP step: madry-mnist, batch 50,
// PGD-40 with ε = 0.3 and α = 0.01, Adam.
func DefaultTrainStepConfig() TrainStepConfig {
	s := DefaultStepConfig()
	s.Warmup, s.Steps = 1, 5
	return TrainStepConfig{StepConfig: s, Objective: "alp", Eps: 0.3, StepSize: 0.01, AttackSteps: 40}
}

// TrainStep times whole training steps on random data in [0, 1].
func TrainStep(c TrainStepConfig) (StepResult, error) {
	if err := c.Validate(); err != nil {
		return StepResult{}, err
	}
	be, restore, err := c.backend()
	if err != nil {
		return StepResult{}, err
	}
	defer restore()
	mc, err := models.Defaults(c.Model)
	if err != nil {
		return StepResult{}, err
	}
	for k, v := range c.Config {
		mc[k] = v
	}
	probe, err := models.New(be, c.Model, mc)
	if err != nil {
		return StepResult{}, err
	}
	in := probe.Input
	n := max(c.Batch*4, 256)
	rng := rand.New(rand.NewSource(c.Seed))
	ds := &data.Dataset{Name: "random", C: in[0], H: in[1], W: in[2], Classes: probe.Classes,
		Images: make([]float32, n*in[0]*in[1]*in[2]), Labels: make([]int32, n)}
	for i := range ds.Images {
		ds.Images[i] = rng.Float32()
	}
	for i := range ds.Labels {
		ds.Labels[i] = int32(rng.Intn(probe.Classes))
	}
	tc := train.DefaultConfig()
	tc.Dataset, tc.Model, tc.ModelConfig = "random", c.Model, c.Config
	tc.Objective, tc.Batch, tc.Seed = c.Objective, c.Batch, c.Seed
	tc.Eps, tc.StepSize, tc.AttackSteps = c.Eps, c.StepSize, c.AttackSteps
	tc.Steps, tc.Out, tc.LogEvery = int64(c.Warmup+c.Steps), "unused", 0
	tr, err := train.NewTrainer(be, tc, data.NewLoader(ds, data.LoaderOptions{Seed: 1}), nil)
	if err != nil {
		return StepResult{}, err
	}
	for i := 0; i < c.Warmup; i++ {
		if _, err := tr.TrainStep(); err != nil {
			return StepResult{}, err
		}
	}
	resetProfile(be)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	times := make([]float64, c.Steps)
	for i := range times {
		t0 := time.Now()
		if _, err := tr.TrainStep(); err != nil {
			return StepResult{}, err
		}
		syncDevice(be)
		times[i] = float64(time.Since(t0).Microseconds()) / 1000
	}
	runtime.ReadMemStats(&after)
	sorted := append([]float64(nil), times...)
	sort.Float64s(sorted)
	return StepResult{
		Model: c.Model, ModelConfig: probe.Config, Batch: c.Batch, Threads: c.Threads, MsPerStep: median(sorted),
		SamplesPerSec: samplesPerSec(c.Batch, median(sorted)),
		AllocsPerStep: float64(after.Mallocs-before.Mallocs) / float64(c.Steps),
		BytesPerStep:  float64(after.TotalAlloc-before.TotalAlloc) / float64(c.Steps),
		PeakRSSMB:     peakRSSMB(), Backend: be.Name(), Steps: c.Steps,
		MinMs: sorted[0], MaxMs: sorted[len(sorted)-1], Objective: c.Objective, AttackSteps: c.AttackSteps,
		DeviceProfile: profileReport(be),
	}, nil
}
