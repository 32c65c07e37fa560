//go:build cgo && linux && !static && !purego

package cuda

import "testing"

// ForTest returns the backend the package's tests run on (a GPU, or the
// fakecuda emulator) or skips t with the reason there is none.
func ForTest(t testing.TB) *Backend { return testBackendOrSkip(t) }

// RunsOn is "gpu" or "fakecuda" once ForTest has returned a backend.
func RunsOn() string { return testMode }
