//go:build cgo && linux && !static && !purego

package cuda

import (
	"strings"
	"testing"
)

// With LOGITPAIR_CUDA_PROFILE=1 the backend charges every kernel and GEMM
// to a table by name and shape; without it there is no table.
func TestProfiler(t *testing.T) {
	testBackendOrSkip(t) // a GPU or the emulator, else skip
	t.Setenv(ProfileEnv, "1")
	b, err := New(Options{CacheDir: testCache})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	x, y := b.New(4, 3), b.New(4, 3)
	b.Upload(x, []float32{1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12})
	b.ResetProfile()
	b.ReLU(y, x)
	b.ReLU(y, x)
	c := b.New(4, 4)
	b.MatMul(c, x, y, false, true, 1, 0)
	rep := b.ProfileReport(0)
	for _, want := range []string{"lp_relu_mask", "sgemm NT m=4 n=4 k=3", "all ops"} {
		if !strings.Contains(rep, want) {
			t.Errorf("profile lacks %q:\n%s", want, rep)
		}
	}
	var relu string
	for _, l := range strings.Split(rep, "\n") {
		if strings.HasPrefix(l, "lp_relu_mask") {
			relu = l
		}
	}
	if f := strings.Fields(relu); len(f) < 2 || f[1] != "2" {
		t.Errorf("lp_relu_mask row %q: want 2 calls", relu)
	}
	b.ResetProfile()
	if rep := b.ProfileReport(0); strings.Contains(rep, "lp_relu_mask") {
		t.Errorf("ResetProfile left rows:\n%s", rep)
	}

	t.Setenv(ProfileEnv, "")
	plain, err := New(Options{CacheDir: testCache})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.ReLU(plain.New(2), plain.New(2))
	if rep := plain.ProfileReport(0); rep != "" {
		t.Errorf("profiler off, report %q", rep)
	}
}
