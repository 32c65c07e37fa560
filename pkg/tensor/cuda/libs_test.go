package cuda

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestCandidatesWithLibDirOnlySearchThere(t *testing.T) {
	got := candidates(nvrtcLib, env(map[string]string{LibDirEnv: "/a:/b", "LD_LIBRARY_PATH": "/c"}))
	var want []string
	for _, d := range []string{"/a", "/b"} {
		for _, n := range nvrtcLib.Names {
			want = append(want, filepath.Join(d, n))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("candidates = %v\nwant %v", got, want)
	}
	for _, n := range []string{"libnvrtc.so.12", "libnvrtc.so.11.2"} {
		if !slices.Contains(nvrtcLib.Names, n) {
			t.Errorf("NVRTC names lack %s", n)
		}
	}
}

// Without the override the bare names come first: dlopen's own search
// honours LD_LIBRARY_PATH and ld.so.cache.
func TestCandidatesDefaultStartWithBareNames(t *testing.T) {
	got := candidates(driverLib, env(nil))
	if len(got) < 2 || got[0] != "libcuda.so.1" || got[1] != "libcuda.so" {
		t.Errorf("candidates = %v, want the bare names first", got)
	}
}

func TestCublasCompanionIsLt(t *testing.T) {
	if got := cublasLib.Companion("/x/libcublas.so.12"); got != "/x/libcublasLt.so.12" {
		t.Errorf("companion = %q", got)
	}
}

func TestLoadErrorMessage(t *testing.T) {
	e := &LoadError{Missing: "no CUDA driver", Tried: []string{"libcuda.so.1: cannot open shared object file: No such file or directory"}}
	msg := e.Error()
	for _, w := range []string{"no CUDA driver: libcuda.so.1: cannot open shared object file", LibDirEnv} {
		if !strings.Contains(msg, w) {
			t.Errorf("%q lacks %q", msg, w)
		}
	}
	if msg := (&LoadError{Missing: "no cuBLAS"}).Error(); !strings.Contains(msg, "no cuBLAS: no candidate") {
		t.Errorf("empty LoadError: %q", msg)
	}
}

// A CUDA PyTorch in a virtualenv brings NVRTC and cuBLAS as NVIDIA wheels
// (nvidia/cu13/lib for CUDA 13): the active environment's are found.
func TestCandidatesFindVirtualenvWheels(t *testing.T) {
	venv := t.TempDir()
	lib := filepath.Join(venv, "lib", "python3.12", "site-packages", "nvidia", "cu13", "lib")
	if err := os.MkdirAll(lib, 0o755); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(lib, "libnvrtc.so.13")
	if err := os.WriteFile(want, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := candidates(nvrtcLib, env(map[string]string{"VIRTUAL_ENV": venv}))
	if !slices.Contains(got, want) {
		t.Errorf("candidates = %v, want %s among them", got, want)
	}
	if got := candidates(nvrtcLib, env(nil)); slices.Contains(got, want) {
		t.Errorf("without VIRTUAL_ENV the environment's wheels are not searched, got %v", got)
	}
}
