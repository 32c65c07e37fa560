package device

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/tensor/cuda"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Choice{
		"auto": {Kind: Auto}, "cpu": {Kind: CPU}, "CUDA": {Kind: CUDA}, " cuda ": {Kind: CUDA},
		"cuda:0": {Kind: CUDA}, "cuda:3": {Kind: CUDA, Ordinal: 3},
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "gpu", "cuda:", "cuda:-1", "cuda:x", "cpu:1", "tpu"} {
		if _, err := Parse(bad); err == nil || !strings.Contains(err.Error(), "want auto, cpu, cuda or cuda:N") {
			t.Errorf("Parse(%q): %v", bad, err)
		}
	}
}

func TestFlag(t *testing.T) {
	var d string
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	Flag(fs, &d)
	if d != "auto" {
		t.Errorf("default %q", d)
	}
	if err := fs.Parse([]string{"--device", "cuda:1"}); err != nil || d != "cuda:1" {
		t.Errorf("parsed %q, %v", d, err)
	}
}

// stubCUDA makes openCUDA return be or err for the test's duration.
func stubCUDA(t *testing.T, be tensor.Backend, err error) *[]cuda.Options {
	var calls []cuda.Options
	prev := openCUDA
	openCUDA = func(o cuda.Options) (tensor.Backend, error) {
		calls = append(calls, o)
		return be, err
	}
	t.Cleanup(func() { openCUDA = prev })
	return &calls
}

func TestCPU(t *testing.T) {
	calls := stubCUDA(t, nil, errors.New("must not be called"))
	be, desc, err := Open("cpu", 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := be.(*cpu.Backend); !ok || be.Threads() != 3 {
		t.Errorf("got %T with %d threads", be, be.Threads())
	}
	if !strings.Contains(desc, "computing on the CPU") || len(*calls) != 0 {
		t.Errorf("desc %q, %d CUDA attempts", desc, len(*calls))
	}
}

// TestAutoFallsBackToTheCPUSayingWhy: without a usable GPU, auto computes on
// the CPU and says so in one short line (the reason in a few words, where to
// point the loader, and that --device cuda says more); the full reason, every
// path tried, is OpenDetail's detail.
func TestAutoFallsBackToTheCPUSayingWhy(t *testing.T) {
	loadErr := &cuda.LoadError{Missing: "no CUDA driver", Tried: []string{
		"libcuda.so.1: cannot open shared object file: No such file or directory",
		"libcuda.so: cannot open shared object file: No such file or directory"}}
	for _, c := range []struct {
		err        error
		short      []string
		detailWant string
	}{
		{loadErr, []string{"--device auto: no CUDA driver (set " + cuda.LibDirEnv, "--device cuda says why"}, "libcuda.so: cannot open shared object file"},
		{errors.New("no CUDA device: cuDeviceGetCount returned 0 (driver 12.4 from /usr/lib/libcuda.so.1)"), []string{"--device auto: no CUDA device (--device cuda says why)"}, "cuDeviceGetCount returned 0"},
		{cuda.ErrNotBuilt, []string{"--device auto: CUDA backend not built into this binary (--device cuda says why)"}, "static/purego"},
	} {
		stubCUDA(t, nil, c.err)
		be, desc, detail, err := OpenDetail("auto", 2)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := be.(*cpu.Backend); !ok {
			t.Errorf("auto without a GPU gave %T", be)
		}
		want := append([]string{"computing on the CPU (" + be.Name() + ", 2 threads); "}, c.short...)
		for _, w := range want {
			if !strings.Contains(desc, w) {
				t.Errorf("description %q lacks %q", desc, w)
			}
		}
		if n := len([]rune(desc)); n > 160 || strings.Contains(desc, "\n") || strings.Contains(desc, c.detailWant) {
			t.Errorf("description is not one short line (%d characters, the detail %q in it?): %q", n, c.detailWant, desc)
		}
		if !strings.Contains(detail, c.err.Error()) {
			t.Errorf("detail %q lacks the full reason %q", detail, c.err)
		}
		if _, short, _ := Open("auto", 2); short != desc {
			t.Errorf("Open's description %q, OpenDetail's %q", short, desc)
		}
	}
}

func TestAutoAndCUDAUseTheGPU(t *testing.T) {
	gpu := cpu.New(cpu.Options{Threads: 1}) // stands in for a CUDA backend
	calls := stubCUDA(t, gpu, nil)
	for _, d := range []string{"auto", "cuda", "cuda:2"} {
		be, _, err := Open(d, 4)
		if err != nil || be != tensor.Backend(gpu) {
			t.Errorf("Open(%q) = %v, %v", d, be, err)
		}
	}
	if got := *calls; len(got) != 3 || got[2].Device != 2 {
		t.Errorf("CUDA opened with %+v", got)
	}
}

func TestCUDAAbsentIsAnError(t *testing.T) {
	stubCUDA(t, nil, errors.New("no CUDA device: cuDeviceGetCount returned 0"))
	_, _, err := Open("cuda", 1)
	if err == nil || !strings.Contains(err.Error(), "--device cuda: no CUDA device: cuDeviceGetCount returned 0") {
		t.Errorf("err = %v", err)
	}
	if _, _, err := Open("gpu", 1); err == nil {
		t.Error("--device gpu accepted")
	}
}

// Without stubs, on this machine: cuda either works or says why not, and
// auto always gives a backend.
func TestRealDevice(t *testing.T) {
	why := cuda.Available()
	be, _, err := Open("cuda", 1)
	switch {
	case why != nil && err == nil:
		t.Errorf("--device cuda succeeded although %v", why)
	case why != nil && !strings.Contains(err.Error(), why.Error()):
		t.Errorf("--device cuda: %v; want the reason %v", err, why)
	case why == nil && err != nil:
		t.Logf("a GPU is visible but the backend does not open: %v", err)
	}
	if be != nil {
		t.Logf("CUDA: %s", be.Name())
	}
	if be, desc, err := Open("auto", 1); err != nil || be == nil {
		t.Errorf("--device auto: %v", err)
	} else {
		t.Log(desc)
		if n := len([]rune(desc)); n > 160 {
			t.Errorf("--device auto's line has %d characters: %q", n, desc)
		}
	}
}
