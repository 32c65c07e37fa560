// Package bench measures the numeric engine: timed training steps of a model
// on a backend, with allocation and peak-memory counts, for `logitpair bench`
// and scripts/bench-vs-torch.sh.
package bench

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/logitpair/logitpair/pkg/device"
	"github.com/logitpair/logitpair/pkg/gemm"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
)

// StepConfig selects what one benchmarked step is.
type StepConfig struct {
	Model string
	// Config overrides the model's defaults (nil: defaults).
	Config models.Config
	Batch  int
	// Threads is the number of compute threads (and GOMAXPROCS); 0 means all cores.
	Threads int
	// Gemm is "openblas", "gonum" or "" (the default one).
	Gemm   string
	Warmup int
	Steps  int
	// InputGradOnly benchmarks what one PGD step needs: an eval-mode forward
	// and the input gradient, without weight gradients.
	InputGradOnly bool
	Seed          int64
	// Device is a --device value (pkg/device): "" or "cpu" is the CPU
	// backend with Gemm; auto and cuda may pick a CUDA GPU.
	Device string
}

// DefaultStepConfig is madry-mnist at batch 50, 5 warm-up and 30 timed steps.
func DefaultStepConfig() StepConfig {
	return StepConfig{Model: "madry-mnist", Batch: 50, Warmup: 5, Steps: 30, Seed: 1}
}

// Validate reports the first invalid field.
func (c StepConfig) Validate() error {
	switch {
	case c.Batch <= 0:
		return fmt.Errorf("batch must be positive, got %d", c.Batch)
	case c.Steps <= 0:
		return fmt.Errorf("steps must be positive, got %d", c.Steps)
	case c.Warmup < 0:
		return fmt.Errorf("warmup must be non-negative, got %d", c.Warmup)
	case c.Threads < 0:
		return fmt.Errorf("threads must be non-negative, got %d", c.Threads)
	}
	if c.Gemm != "" {
		if _, ok := gemm.ByName(c.Gemm); !ok {
			names := []string{}
			for _, g := range gemm.All() {
				names = append(names, g.Name())
			}
			return fmt.Errorf("gemm %q is not compiled into this binary (available: %s)", c.Gemm, strings.Join(names, ", "))
		}
	}
	return nil
}

// backend makes the backend of c: the CPU backend (Threads, all cores when
// 0; Gemm) unless Device picks a GPU; it sets GOMAXPROCS to the thread count
// until restore is called.
func (c *StepConfig) backend() (be tensor.Backend, restore func(), err error) {
	if c.Threads == 0 {
		c.Threads = runtime.NumCPU()
	}
	if c.Device != "" && c.Device != device.CPU {
		if c.Gemm != "" {
			return nil, nil, fmt.Errorf("--gemm chooses the CPU's GEMM: use it with --device cpu")
		}
		prev := runtime.GOMAXPROCS(c.Threads)
		be, _, err := device.Open(c.Device, c.Threads)
		if err != nil {
			runtime.GOMAXPROCS(prev)
			return nil, nil, err
		}
		return be, func() { runtime.GOMAXPROCS(prev) }, nil
	}
	prev := runtime.GOMAXPROCS(c.Threads)
	opts := cpu.Options{Threads: c.Threads}
	if c.Gemm != "" {
		opts.Gemm, _ = gemm.ByName(c.Gemm)
	}
	return cpu.New(opts), func() { runtime.GOMAXPROCS(prev) }, nil
}

// syncDevice waits for a device backend's queued work (timings of an
// asynchronous GPU must include it); a no-op on the CPU.
func syncDevice(be tensor.Backend) {
	if s, ok := be.(interface{ Synchronize() }); ok {
		s.Synchronize()
	}
}

// StepResult is one benchmark's outcome; JSON field names are the CLI's.
type StepResult struct {
	Model string `json:"model"`
	// ModelConfig is the model's complete config (defaults filled in).
	ModelConfig models.Config `json:"model_config,omitempty"`
	Batch       int           `json:"batch"`
	Threads     int           `json:"threads"`
	MsPerStep   float64       `json:"ms_per_step"`
	// SamplesPerSec is Batch / MsPerStep: clean examples per second.
	SamplesPerSec float64 `json:"samples_per_s"`
	AllocsPerStep float64 `json:"allocs_per_step"`
	BytesPerStep  float64 `json:"bytes_per_step"`
	PeakRSSMB     float64 `json:"peak_rss_mb"`
	InputGradOnly bool    `json:"input_grad_only"`
	Backend       string  `json:"backend"`
	Steps         int     `json:"steps"`
	MinMs         float64 `json:"min_ms"`
	MaxMs         float64 `json:"max_ms"`
	// Objective and AttackSteps are set for whole training steps.
	Objective   string `json:"objective,omitempty"`
	AttackSteps int    `json:"attack_steps,omitempty"`
	// DeviceProfile is the CUDA backend's op profile of the timed steps
	// (LOGITPAIR_CUDA_PROFILE=1; see pkg/tensor/cuda), else empty.
	DeviceProfile string `json:"device_profile,omitempty"`
}

// Step builds the model with PyTorch's default initialization, then times
// forward + softmax cross-entropy + backward on a random batch in [0, 1]:
// gradients for every weight and the input (a training step's compute without
// the optimizer), or with InputGradOnly the input gradient alone.
func Step(c StepConfig) (StepResult, error) {
	if err := c.Validate(); err != nil {
		return StepResult{}, err
	}
	be, restore, err := c.backend()
	if err != nil {
		return StepResult{}, err
	}
	defer restore()
	m, err := models.New(be, c.Model, c.Config)
	if err != nil {
		return StepResult{}, err
	}
	m.Init(c.Seed)
	rng := rand.New(rand.NewSource(c.Seed))
	xs := make([]float32, c.Batch*m.Input[0]*m.Input[1]*m.Input[2])
	for i := range xs {
		xs[i] = rng.Float32()
	}
	x := be.New(c.Batch, m.Input[0], m.Input[1], m.Input[2])
	be.Upload(x, xs)
	labels := make([]int32, c.Batch)
	for i := range labels {
		labels[i] = int32(rng.Intn(m.Classes))
	}
	dz := be.New(c.Batch, m.Classes)
	g := nn.Grad{Params: true, Input: true}
	train := true
	if c.InputGradOnly {
		g, train = nn.Grad{Input: true}, false
	}
	step := func() {
		logits := m.Forward(x, train)
		nn.SoftmaxCrossEntropy(be, dz, logits, labels, 0)
		m.Backward(dz, g)
		syncDevice(be)
	}
	for i := 0; i < c.Warmup; i++ {
		step()
	}
	resetProfile(be)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	times := make([]float64, c.Steps)
	for i := range times {
		t0 := time.Now()
		step()
		times[i] = float64(time.Since(t0).Microseconds()) / 1000
	}
	runtime.ReadMemStats(&after)
	sorted := append([]float64(nil), times...)
	sort.Float64s(sorted)
	return StepResult{
		Model: c.Model, ModelConfig: m.Config, Batch: c.Batch, Threads: c.Threads,
		MsPerStep:     median(sorted),
		SamplesPerSec: samplesPerSec(c.Batch, median(sorted)),
		AllocsPerStep: float64(after.Mallocs-before.Mallocs) / float64(c.Steps),
		BytesPerStep:  float64(after.TotalAlloc-before.TotalAlloc) / float64(c.Steps),
		PeakRSSMB:     peakRSSMB(),
		InputGradOnly: c.InputGradOnly,
		Backend:       be.Name(),
		Steps:         c.Steps,
		MinMs:         sorted[0],
		MaxMs:         sorted[len(sorted)-1],
		DeviceProfile: profileReport(be),
	}, nil
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// peakRSSMB reads the process's peak resident set (VmHWM) on Linux; 0 where
// /proc is absent.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, err := strconv.ParseFloat(f[1], 64)
				if err == nil {
					return kb / 1024
				}
			}
		}
	}
	return 0
}

// samplesPerSec is batch examples per step of ms milliseconds, per second.
func samplesPerSec(batch int, ms float64) float64 {
	if ms <= 0 {
		return 0
	}
	return float64(batch) * 1000 / ms
}

// profiled is a backend with an op profiler (the CUDA backend's).
type profiled interface {
	ResetProfile()
	ProfileReport(n int) string
}

func resetProfile(be tensor.Backend) {
	if p, ok := be.(profiled); ok {
		p.ResetProfile()
	}
}

// profileReport is the top of be's op profile, or "".
func profileReport(be tensor.Backend) string {
	if p, ok := be.(profiled); ok {
		return p.ProfileReport(40)
	}
	return ""
}
