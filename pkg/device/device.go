// Package device chooses the numeric backend a process computes on: the CPU
// backend or a CUDA GPU (pkg/tensor/cuda), from the --device flag that
// `logitpair train`, `eval`, `bench` and `worker` share. The device is a
// property of the machine a process runs on, never of a training
// configuration: cluster workers pick theirs with their own flag.
package device

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/tensor/cuda"
)

// The device kinds.
const (
	// Auto is a CUDA GPU when the driver loads and finds one (and NVRTC and
	// cuBLAS load), else the CPU.
	Auto = "auto"
	// CPU is the CPU backend.
	CPU = "cpu"
	// CUDA is a CUDA GPU, an error when there is none.
	CUDA = "cuda"
)

// Default is the --device flag's default.
const Default = Auto

// Usage is the --device flag's help text.
const Usage = "compute device: auto (a CUDA GPU when the driver loads and finds one, else the CPU), cpu, cuda or cuda:N (GPU N)"

// Choice is a parsed --device value.
type Choice struct {
	Kind    string // Auto, CPU or CUDA
	Ordinal int    // the CUDA device (after CUDA_VISIBLE_DEVICES)
}

// Parse reads a --device value: auto, cpu, cuda or cuda:N.
func Parse(s string) (Choice, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	switch v {
	case Auto, CPU, CUDA:
		return Choice{Kind: v}, nil
	}
	if rest, ok := strings.CutPrefix(v, CUDA+":"); ok {
		n, err := strconv.Atoi(rest)
		if err == nil && n >= 0 {
			return Choice{Kind: CUDA, Ordinal: n}, nil
		}
	}
	return Choice{}, fmt.Errorf("--device %q: want auto, cpu, cuda or cuda:N (N a GPU number ≥ 0)", s)
}

// Flag registers --device on fs, defaulting to Default.
func Flag(fs *pflag.FlagSet, p *string) { fs.StringVar(p, "device", Default, Usage) }

// openCUDA is cuda.Open; tests replace it.
var openCUDA = cuda.Open

// Open returns the backend for device (see Parse), with threads compute
// threads on the CPU (0: GOMAXPROCS), and a one-line description of what was
// chosen for the log: the GPU and libraries in use, or, for auto without a
// usable GPU, the CPU and in a few words why not (OpenDetail also returns
// the full reason). With cuda the error says which library failed to load,
// from where, or that no GPU was found.
func Open(device string, threads int) (tensor.Backend, string, error) {
	be, desc, _, err := OpenDetail(device, threads)
	return be, desc, err
}

// OpenDetail is Open that also returns, when auto fell back to the CPU, the
// full reason CUDA was not used (every library path tried and its loader
// error), for a debug log; "" otherwise.
func OpenDetail(device string, threads int) (be tensor.Backend, desc, detail string, err error) {
	c, err := Parse(device)
	if err != nil {
		return nil, "", "", err
	}
	newCPU := func() (tensor.Backend, string) {
		be := cpu.New(cpu.Options{Threads: threads})
		return be, fmt.Sprintf("computing on the CPU (%s, %d threads)", be.Name(), be.Threads())
	}
	switch c.Kind {
	case CPU:
		be, desc := newCPU()
		return be, desc, "", nil
	case CUDA:
		be, err := openCUDA(cuda.Options{Device: c.Ordinal})
		if err != nil {
			return nil, "", "", fmt.Errorf("--device %s: %w", device, err)
		}
		return be, describe(be), "", nil
	}
	gpu, err := openCUDA(cuda.Options{})
	if err != nil {
		cpuBE, desc := newCPU()
		return cpuBE, desc + "; --device auto: " + shortReason(err), "--device auto: no usable CUDA GPU: " + err.Error(), nil
	}
	return gpu, describe(gpu), "", nil
}

// shortReason is why CUDA did not open, in a few words for a line printed on
// every CPU run: a library's absence ("no CUDA driver", with where to point
// the loader), else the error's first clause ("no CUDA device"). --device
// cuda prints the whole error.
func shortReason(err error) string {
	var le *cuda.LoadError
	if errors.As(err, &le) {
		return le.Missing + " (set " + cuda.LibDirEnv + " if it is installed elsewhere; --device cuda says why)"
	}
	msg := err.Error()
	for _, sep := range []string{": ", " ("} {
		if i := strings.Index(msg, sep); i > 0 {
			msg = msg[:i]
		}
	}
	if r := []rune(msg); len(r) > 80 {
		msg = string(r[:79]) + "…"
	}
	return msg + " (--device cuda says why)"
}

func describe(be tensor.Backend) string {
	if i, ok := be.(interface{ Info() string }); ok {
		return "computing on " + i.Info()
	}
	return "computing on " + be.Name()
}
