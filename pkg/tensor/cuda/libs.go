package cuda

import (
	"os"
	"path/filepath"
	"strings"
)

// libSpec describes one shared library the backend loads at run time.
type libSpec struct {
	// Missing is how an error names the library's absence.
	Missing string
	// Names are the file names to try, most preferred first.
	Names []string
	// Companion, when set, maps a name to a library loaded (RTLD_GLOBAL)
	// from the same folder first, so that the name's own dependency resolves
	// when the folder is not on the loader's path (cuBLAS needs cuBLASLt).
	Companion func(name string) string
}

var (
	driverLib = libSpec{Missing: "no CUDA driver", Names: []string{"libcuda.so.1", "libcuda.so"}}
	nvrtcLib  = libSpec{Missing: "no NVRTC (the CUDA runtime compiler)",
		Names: []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}}
	cublasLib = libSpec{Missing: "no cuBLAS",
		Names: []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"},
		Companion: func(name string) string {
			return strings.Replace(name, "libcublas.", "libcublasLt.", 1)
		}}
)

// LibDirEnv names the environment variable that, when set, is the only place
// (a colon-separated list of folders) the CUDA libraries are looked for.
const LibDirEnv = "LOGITPAIR_CUDA_LIB_DIR"

// extraLibDirs are folders CUDA libraries commonly live in outside the
// loader's default search: the toolkit's, WSL's driver folder, and the
// folders of NVIDIA's Python wheels (pip install nvidia-cublas-cu12, ...).
var extraLibDirs = []string{
	"/usr/local/cuda/lib64",
	"/usr/local/cuda/targets/x86_64-linux/lib",
	"/usr/local/cuda/targets/sbsa-linux/lib",
	"/opt/cuda/lib64",
	"/usr/lib/wsl/lib",
}

var extraLibGlobs = []string{
	"/usr/local/lib/python3*/dist-packages/nvidia/*/lib",
	"/usr/local/lib/python3*/site-packages/nvidia/*/lib",
	"/usr/lib/python3/dist-packages/nvidia/*/lib",
	"/opt/conda/lib/python3*/site-packages/nvidia/*/lib",
}

// candidates returns the paths to hand dlopen for spec, in order. With
// LOGITPAIR_CUDA_LIB_DIR set they are that list's folders joined with each
// name and nothing else; otherwise the bare names first (the loader's own
// search: LD_LIBRARY_PATH, ld.so.cache, the system folders), then the names
// found in the usual toolkit and wheel folders.
func candidates(spec libSpec, getenv func(string) string) []string {
	var out []string
	if dirs := getenv(LibDirEnv); dirs != "" {
		for _, d := range filepath.SplitList(dirs) {
			if d == "" {
				continue
			}
			for _, n := range spec.Names {
				out = append(out, filepath.Join(d, n))
			}
		}
		return out
	}
	out = append(out, spec.Names...)
	dirs := append([]string(nil), extraLibDirs...)
	if home := getenv("HOME"); home != "" {
		dirs = append(dirs, filepath.Join(home, ".local/lib/python3*/site-packages/nvidia/*/lib"))
	}
	// The active Python environment's NVIDIA wheels (a virtualenv's or
	// conda's), e.g. those a CUDA PyTorch install brings.
	for _, env := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if p := getenv(env); p != "" {
			dirs = append(dirs, filepath.Join(p, "lib/python3*/site-packages/nvidia/*/lib"))
		}
	}
	for _, g := range append(extraLibGlobs, dirs...) {
		matches, _ := filepath.Glob(g)
		for _, d := range matches {
			for _, n := range spec.Names {
				p := filepath.Join(d, n)
				if _, err := os.Stat(p); err == nil {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// LoadError is the failure to load one CUDA library: every path tried, each
// with the loader's message.
type LoadError struct {
	// Missing is the library's absence in words ("no CUDA driver").
	Missing string
	// Tried holds "path: reason" for every attempt, in order.
	Tried []string
}

func (e *LoadError) Error() string {
	msg := e.Missing + ": " + strings.Join(e.Tried, "; ")
	if len(e.Tried) == 0 {
		msg = e.Missing + ": no candidate library found"
	}
	return msg + " (set " + LibDirEnv + " to the folder holding it)"
}
