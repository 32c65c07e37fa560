// Package nntest holds test helpers shared by the engine's test suites: the
// backends every suite runs on, golden-fixture loading and comparison, and
// finite-difference gradient checks.
package nntest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/logitpair/logitpair/pkg/gemm"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/safetensors"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/tensor/cuda"
)

// Backends returns one CPU backend per GEMM implementation compiled in, each
// at 1 and 2 threads (the parallel split must not change results beyond
// rounding), so the same suite runs on OpenBLAS and pure Go; then, when a
// CUDA GPU is usable, the CUDA backend (the suites' first backend stays the
// CPU's). LOGITPAIR_TEST_CUDA=0 leaves CUDA out; LOGITPAIR_REQUIRE_CUDA=1
// (scripts/gpu-check.sh) makes a missing or unusable GPU a failure.
func Backends() []tensor.Backend {
	var out []tensor.Backend
	for _, g := range gemm.All() {
		out = append(out, cpu.New(cpu.Options{Threads: 1, Gemm: g}), cpu.New(cpu.Options{Threads: 2, Gemm: g}))
	}
	if be := cudaBackend(); be != nil {
		out = append(out, be)
	}
	return out
}

var (
	cudaOnce sync.Once
	cudaBE   tensor.Backend
)

// cudaBackend is the process's CUDA test backend, or nil where there is no
// usable GPU (the driver does not load or finds no device: see
// cuda.Available). A GPU whose backend does not open is reported on
// standard error and left out.
func cudaBackend() tensor.Backend {
	cudaOnce.Do(func() {
		require := os.Getenv("LOGITPAIR_REQUIRE_CUDA") == "1"
		if os.Getenv("LOGITPAIR_TEST_CUDA") == "0" {
			return
		}
		if err := cuda.Available(); err != nil {
			if require {
				panic(fmt.Sprintf("nntest: LOGITPAIR_REQUIRE_CUDA=1 but no CUDA GPU: %v", err))
			}
			return
		}
		be, err := cuda.Open(cuda.Options{})
		if err != nil {
			if require {
				panic(fmt.Sprintf("nntest: LOGITPAIR_REQUIRE_CUDA=1 but the CUDA backend does not open: %v", err))
			}
			fmt.Fprintf(os.Stderr, "nntest: a CUDA GPU is visible but its backend does not open, testing without it: %v\n", err)
			return
		}
		cudaBE = be
	})
	return cudaBE
}

// Name labels a backend in subtest names.
func Name(be tensor.Backend) string { return fmt.Sprintf("%s-t%d", be.Name(), be.Threads()) }

// Golden is one fixture file written by scripts/gen-golden.py.
type Golden struct {
	T    testing.TB
	F    *safetensors.File
	Path string
}

// Root is the repository's testdata/golden folder, found from this file.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "golden")
}

// Load reads testdata/golden/<kind>/<name>.safetensors.
func Load(t testing.TB, kind, name string) *Golden {
	t.Helper()
	p := filepath.Join(Root(), kind, name+".safetensors")
	f, err := safetensors.ReadFile(p)
	if err != nil {
		t.Fatalf("golden fixture: %v", err)
	}
	return &Golden{T: t, F: f, Path: p}
}

// List returns the fixture names of a kind.
func List(t testing.TB, kind string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(Root(), kind, "*.safetensors"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no golden fixtures in %s (run make golden): %v", filepath.Join(Root(), kind), err)
	}
	out := make([]string, len(m))
	for i, p := range m {
		out[i] = filepath.Base(p[:len(p)-len(".safetensors")])
	}
	return out
}

// F32 returns a float32 tensor's data and shape.
func (g *Golden) F32(name string) ([]float32, []int) {
	g.T.Helper()
	d, s, err := g.F.F32(name)
	if err != nil {
		g.T.Fatalf("%s: %v", g.Path, err)
	}
	if len(s) == 0 {
		s = []int{1}
	}
	return d, s
}

// Tensor uploads a fixture tensor to be.
func (g *Golden) Tensor(be tensor.Backend, name string) *tensor.Tensor {
	g.T.Helper()
	d, s := g.F32(name)
	t := be.New(s...)
	be.Upload(t, d)
	return t
}

// Labels returns an int64 label tensor as int32.
func (g *Golden) Labels(name string) []int32 {
	g.T.Helper()
	d, _, err := g.F.I64(name)
	if err != nil {
		g.T.Fatalf("%s: %v", g.Path, err)
	}
	out := make([]int32, len(d))
	for i, v := range d {
		out[i] = int32(v)
	}
	return out
}

// Config decodes the fixture's JSON config metadata into v.
func (g *Golden) Config(v any) {
	g.T.Helper()
	if err := json.Unmarshal([]byte(g.F.Metadata["config"]), v); err != nil {
		g.T.Fatalf("%s: config: %v", g.Path, err)
	}
}

// RelTol is the golden tolerance: |got − want| ≤ RelTol·(|want| + max|want|)
// per element, i.e. 1e-4 relative to the element, with an absolute floor of
// 1e-4 of the tensor's largest magnitude for entries near zero.
const RelTol = 1e-4

// Close fails t unless got matches want within tol as described at RelTol.
func Close(t testing.TB, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var scale float64
	for _, w := range want {
		scale = math.Max(scale, math.Abs(float64(w)))
	}
	worst, wi := 0.0, -1
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		lim := tol * (math.Abs(float64(want[i])) + scale)
		if !(d <= lim) && (wi < 0 || d/lim > worst) {
			worst, wi = d/math.Max(lim, 1e-30), i
		}
	}
	if wi >= 0 {
		t.Errorf("%s: element %d = %v, want %v (%.3g× the tolerance %g)", what, wi, got[wi], want[wi], worst, tol)
	}
}

// Host downloads a tensor.
func Host(be tensor.Backend, t *tensor.Tensor) []float32 {
	out := make([]float32, t.Numel())
	be.Download(out, t)
	return out
}

// Random uploads normal(0, std) values from rng into a new tensor.
func Random(be tensor.Backend, rng *rand.Rand, std float64, shape ...int) *tensor.Tensor {
	t := be.New(shape...)
	v := make([]float32, t.Numel())
	for i := range v {
		v[i] = float32(rng.NormFloat64() * std)
	}
	be.Upload(t, v)
	return t
}

// GradCheck compares a layer's Backward with central finite differences of
// the scalar f(x, θ) = Σ r ⊙ Forward(x), r a fixed random projection, at
// probes random coordinates of the input and of every trainable parameter.
// Forward is evaluated in float32, so h and tol must suit it (h ≈ 1e-3,
// tol ≈ 1e-2 relative to the gradient's scale for O(1) inputs).
//
// ReLU and max make f piecewise smooth: a probe whose interval [v−h, v+h]
// straddles a kink is detected by its two one-sided differences disagreeing
// and is skipped; more than a quarter of the probes skipped fails the check.
func GradCheck(t testing.TB, be tensor.Backend, l nn.Layer, x *tensor.Tensor, train bool, probes int, h, tol float64, seed int64) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	y := l.Forward(x, train)
	r := Random(be, rng, 1, y.Shape()...)
	rh := Host(be, r)
	f := func() float64 {
		out := Host(be, l.Forward(x, train))
		var s float64
		for i, v := range out {
			s += float64(v) * float64(rh[i])
		}
		return s
	}
	l.Forward(x, train)
	dx := l.Backward(r, nn.Grad{Params: true, Input: true})
	type target struct {
		name string
		v    *tensor.Tensor
		g    []float32
	}
	targets := []target{{"x", x, Host(be, dx)}}
	for _, p := range nn.Trainable(l.Params()) {
		targets = append(targets, target{p.Name, p.Value, Host(be, p.Grad)})
	}
	f0 := f()
	skipped, total := 0, 0
	for _, tg := range targets {
		vals := Host(be, tg.v)
		var scale float64
		for _, g := range tg.g {
			scale = math.Max(scale, math.Abs(float64(g)))
		}
		for k := 0; k < probes; k++ {
			i := rng.Intn(len(vals))
			orig := vals[i]
			vals[i] = orig + float32(h)
			be.Upload(tg.v, vals)
			fp := f()
			vals[i] = orig - float32(h)
			be.Upload(tg.v, vals)
			fm := f()
			vals[i] = orig
			be.Upload(tg.v, vals)
			num := (fp - fm) / (2 * h)
			total++
			if fwd, bwd := (fp-f0)/h, (f0-fm)/h; math.Abs(fwd-bwd) > tol*(scale+math.Abs(num)) {
				skipped++ // a kink inside the interval: not differentiable there
				continue
			}
			if d := math.Abs(num - float64(tg.g[i])); d > tol*(scale+math.Abs(num)) {
				t.Errorf("gradcheck %s[%d]: analytic %.6g, numeric %.6g (scale %.3g)", tg.name, i, tg.g[i], num, scale)
			}
		}
	}
	if skipped*4 > total {
		t.Errorf("gradcheck: %d of %d probes straddled a kink; choose other inputs or a smaller h", skipped, total)
	}
}
