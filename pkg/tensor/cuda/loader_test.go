//go:build cgo && linux && !static && !purego

package cuda

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func wantContains(t *testing.T, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("got %q\nwant it to contain %q", got, w)
		}
	}
}

// An empty LOGITPAIR_CUDA_LIB_DIR: the error names the driver library and
// the loader's reason, for every name tried, and says how to fix it.
func TestLoaderNoDriver(t *testing.T) {
	dir := t.TempDir()
	out := runProbe(t, "available", LibDirEnv+"="+dir)
	wantContains(t, out, "error: no CUDA driver: ",
		filepath.Join(dir, "libcuda.so.1")+": cannot open shared object file",
		filepath.Join(dir, "libcuda.so")+": cannot open shared object file",
		"set "+LibDirEnv)
}

// A file that is not a shared library: the loader's own message.
func TestLoaderCorruptDriver(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "libcuda.so.1"), []byte(strings.Repeat("not an ELF file. ", 16)), 0o755); err != nil {
		t.Fatal(err)
	}
	out := runProbe(t, "available", LibDirEnv+"="+dir)
	wantContains(t, out, "error: no CUDA driver: ", filepath.Join(dir, "libcuda.so.1")+": invalid ELF header")
}

// A shared library without the driver API: the missing symbol is named.
func TestLoaderDriverLacksSymbols(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "empty.c")
	if err := os.WriteFile(src, []byte("int not_cuda(void) { return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", filepath.Join(dir, "libcuda.so.1"), src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out := runProbe(t, "available", LibDirEnv+"="+dir)
	wantContains(t, out, "error: no CUDA driver: "+filepath.Join(dir, "libcuda.so.1")+" lacks cuInit")
}

func fakeOrSkip(t *testing.T) string {
	t.Helper()
	if testFakeDir == "" {
		t.Skipf("fakecuda not built: %s", testSkip)
	}
	return testFakeDir
}

// The driver loads but reports no GPU, in its two ways.
func TestLoaderNoDevice(t *testing.T) {
	dir := fakeOrSkip(t)
	out := runProbe(t, "available", LibDirEnv+"="+dir, "FAKECUDA_DEVICES=0")
	wantContains(t, out, "error: no CUDA device: cuDeviceGetCount returned 0", "libcuda.so.1")
	out = runProbe(t, "available", LibDirEnv+"="+dir, "FAKECUDA_NO_DEVICE=1")
	wantContains(t, out, "error: no CUDA device: cuInit found no GPU", "CUDA_ERROR_NO_DEVICE")
}

// The driver and a GPU but no NVRTC, then no cuBLAS: New names the library.
func TestLoaderMissingToolkitLibraries(t *testing.T) {
	fake := fakeOrSkip(t)
	dir := t.TempDir()
	link := func(name string) {
		if err := os.Symlink(filepath.Join(fake, "libfakecuda.so"), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	link("libcuda.so.1")
	out := runProbe(t, "available", LibDirEnv+"="+dir)
	if out != "ok" {
		t.Fatalf("Available with a driver and a device: %s", out)
	}
	out = runProbe(t, "new", LibDirEnv+"="+dir, "LOGITPAIR_CUDA_CACHE_DIR="+t.TempDir())
	wantContains(t, out, "error: no NVRTC (the CUDA runtime compiler): ", filepath.Join(dir, "libnvrtc.so.12")+": cannot open shared object file")
	link("libnvrtc.so.11.2")
	out = runProbe(t, "new", LibDirEnv+"="+dir, "LOGITPAIR_CUDA_CACHE_DIR="+t.TempDir())
	wantContains(t, out, "error: no cuBLAS: ", filepath.Join(dir, "libcublas.so.12")+": cannot open shared object file")
	link("libcublas.so")
	out = runProbe(t, "new", LibDirEnv+"="+dir, "LOGITPAIR_CUDA_CACHE_DIR="+t.TempDir())
	wantContains(t, out, "ok: CUDA device 0: fakecuda", "NVRTC 12.4 from "+filepath.Join(dir, "libnvrtc.so.11.2"),
		"cuBLAS from "+filepath.Join(dir, "libcublas.so"), "kernels compiled and cached")
}

// New compiles for the newest architecture NVRTC supports that the device
// can run, caches the PTX, reads it back next time and rebuilds a corrupt
// entry.
func TestKernelCacheEndToEnd(t *testing.T) {
	fake := fakeOrSkip(t)
	cache := t.TempDir()
	env := []string{LibDirEnv + "=" + fake, "LOGITPAIR_CUDA_CACHE_DIR=" + cache, "FAKECUDA_CC=88"}
	out := runProbe(t, "new", env...)
	wantContains(t, out, "ok: ", "compute capability 8.8, PTX for compute_87", "kernels compiled and cached in "+cache)
	entries, _ := filepath.Glob(filepath.Join(cache, "*.ptx"))
	if len(entries) != 1 {
		t.Fatalf("cache holds %v, want one .ptx", entries)
	}
	out = runProbe(t, "new", env...)
	wantContains(t, out, "ok: ", "kernels from cache "+entries[0])
	b, err := os.ReadFile(entries[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(entries[0], b[:len(b)-3], 0o644); err != nil {
		t.Fatal(err)
	}
	out = runProbe(t, "new", env...)
	wantContains(t, out, "ok: ", "kernels compiled and cached", "a corrupt cache entry was rebuilt")
	out = runProbe(t, "new", env...)
	wantContains(t, out, "ok: ", "kernels from cache")
}
