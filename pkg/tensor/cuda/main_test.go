//go:build cgo && linux && !static && !purego

package cuda

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The package's GPU tests run on a real GPU when the CUDA driver finds one;
// otherwise, when g++ is at hand, on fakecuda (testdata/fakecuda: the
// kernels compiled as host C++ behind an emulated driver, NVRTC and cuBLAS),
// which TestMain builds and points LOGITPAIR_CUDA_LIB_DIR at; otherwise they
// skip, saying why. LOGITPAIR_CUDA_NO_FAKE=1 disables the emulator.

// probeEnv makes the test binary print what Available or New says and exit
// (the loader's error paths are tested in a child process, since a process
// keeps the libraries it has loaded).
const probeEnv = "LOGITPAIR_CUDA_PROBE"

var (
	testMode    string // "gpu", "fakecuda" or "" (none)
	testSkip    string // why there is no backend
	testFakeDir string // the built emulator, if any
	testBackend *Backend
	testOnce    sync.Once
	testErr     error
	testCache   string
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(probeEnv); mode != "" {
		os.Exit(probe(mode))
	}
	tmp, err := os.MkdirTemp("", "logitpair-cuda-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	testCache = filepath.Join(tmp, "cache")
	realErr := Available()
	switch {
	case realErr == nil:
		testMode = "gpu"
	case os.Getenv("LOGITPAIR_CUDA_NO_FAKE") == "1":
		testSkip = fmt.Sprintf("%v (and LOGITPAIR_CUDA_NO_FAKE=1: no emulator)", realErr)
	default:
		dir := filepath.Join(tmp, "fakecuda")
		if err := buildFake(dir); err != nil {
			testSkip = fmt.Sprintf("%v; and the host emulator could not be built: %v", realErr, err)
			break
		}
		testFakeDir = dir
		os.Setenv(LibDirEnv, dir)
		if err := Available(); err != nil {
			testSkip = fmt.Sprintf("fakecuda built but does not load: %v", err)
			break
		}
		testMode = "fakecuda"
	}
	code := m.Run()
	if testBackend != nil {
		_ = testBackend.Close()
	}
	os.RemoveAll(tmp)
	os.Exit(code)
}

// testBackendOrSkip returns the shared test backend (a GPU or fakecuda) or
// skips t saying why there is none. With LOGITPAIR_REQUIRE_E2E=1 a missing
// emulator toolchain (g++) is a failure: CI installs it. With
// LOGITPAIR_REQUIRE_CUDA=1 (scripts/gpu-check.sh) anything but a real GPU is.
func testBackendOrSkip(t testing.TB) *Backend {
	t.Helper()
	if testMode != "gpu" && os.Getenv("LOGITPAIR_REQUIRE_CUDA") == "1" {
		t.Fatalf("LOGITPAIR_REQUIRE_CUDA=1 but the tests run on %q, not a GPU: %s", testMode, testSkip)
	}
	if testMode == "" {
		if os.Getenv("LOGITPAIR_REQUIRE_E2E") == "1" && strings.Contains(testSkip, "emulator could not be built") {
			t.Fatalf("no CUDA backend to test and LOGITPAIR_REQUIRE_E2E=1: %s", testSkip)
		}
		t.Skipf("no CUDA backend to test: %s", testSkip)
	}
	testOnce.Do(func() { testBackend, testErr = New(Options{CacheDir: testCache}) })
	if testErr != nil {
		t.Fatalf("%s: New: %v", testMode, testErr)
	}
	return testBackend
}

// buildFake compiles testdata/fakecuda with g++ into dir and installs it
// under the driver's, NVRTC's and cuBLAS's file names.
func buildFake(dir string) error {
	gxx, err := exec.LookPath("g++")
	if err != nil {
		return fmt.Errorf("g++ not found (Debian: apt-get install g++)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var reg strings.Builder
	for _, n := range kernelNames {
		fmt.Fprintf(&reg, "LP_KERNEL(%s)\n", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "registry.inc"), []byte(reg.String()), 0o644); err != nil {
		return err
	}
	lib := filepath.Join(dir, "libfakecuda.so")
	cmd := exec.Command(gxx, "-std=c++17", "-O2", "-shared", "-fPIC", "-o", lib, "-I", ".", "-I", dir,
		"-I", filepath.Join("testdata", "fakecuda"), filepath.Join("testdata", "fakecuda", "fakecuda.cpp"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("g++: %v\n%s", err, out)
	}
	for _, name := range []string{"libcuda.so.1", "libnvrtc.so.12", "libcublas.so.12"} {
		if err := os.Symlink("libfakecuda.so", filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// probe prints Available's (mode "available") or New's (mode "new") error,
// or "ok", for the parent test to read.
func probe(mode string) int {
	var err error
	switch mode {
	case "available":
		err = Available()
	case "new":
		var b *Backend
		b, err = New(Options{CacheDir: os.Getenv("LOGITPAIR_CUDA_CACHE_DIR")})
		if err == nil {
			fmt.Println("ok: " + b.Info())
			return 0
		}
	default:
		err = fmt.Errorf("unknown probe %q", mode)
	}
	if err != nil {
		fmt.Println("error: " + err.Error())
		return 0
	}
	fmt.Println("ok")
	return 0
}

// runProbe runs the test binary as a probe with extra environment.
func runProbe(t *testing.T, mode string, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), probeEnv+"="+mode)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}
