package models_test

import (
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
)

// Steady-state allocation budget of one madry-mnist forward + backward on
// the CPU backend (issue 3: "a steady-state step allocates (near)
// nothing"). What still allocates is small bookkeeping, never a buffer:
//
//   - cpu.Backend.parallel's fan-out: the closure handed to each op and,
//     at 2 threads, one goroutine closure per extra chunk;
//   - tensor headers of views: Flatten's Reshape (forward and backward) and
//     the dense layers' reshapes, each a *Tensor and a cloned Shape;
//   - with the pure-Go GEMM (gonum blas32, CGO_ENABLED=0), gonum's Sgemm
//     allocates its worker bookkeeping on every call, and the conv layers
//     call it once per example, so that count grows with the batch.
//
// Measured here (Go 1.26, conv1 4, conv2 8, hidden 32, batch 8 and 32):
// OpenBLAS 45 (1 thread) and 67 (2 threads) allocations per full step, 39
// and 59 per input-gradient-only step, independent of the batch, all ≤ 577
// bytes; gonum about 750 + 84 per example beyond 8, also ≤ 577 bytes.
const (
	// maxAllocsOpenBLAS bounds a step's allocations with the cgo GEMM at 1
	// or 2 threads, whatever the batch (about 1.4× the 2-thread count).
	maxAllocsOpenBLAS = 96
	// maxAllocsPerExampleGonum bounds the pure-Go GEMM's per-example count.
	maxAllocsPerExampleGonum = 120
	// bufferBytes: no steady-state allocation may reach this size. The
	// bookkeeping above stays under 600 bytes; every activation (the logits
	// at batch 32: 1,280 bytes) and every weight gradient but conv1's (400
	// bytes) and the biases' are larger, so a layer that allocates its output
	// or a gradient per call fails (checked by injecting one be.New(32, 10)
	// per step: every batch-32 case failed).
	bufferBytes = 1024
)

// TestSteadyStateStepAllocatesNoBuffers runs a small madry-mnist (the
// paper's MNIST architecture at reduced widths) through warm-up steps, then
// measures full training steps (forward in training mode, softmax
// cross-entropy, backward with parameter and input gradients) and PGD-style
// steps (evaluation forward, input gradient only) on every CPU backend (each
// GEMM, 1 and 2 threads) at two batch sizes: the allocation count must stay
// within the documented bound, and no allocation may be buffer-sized.
func TestSteadyStateStepAllocatesNoBuffers(t *testing.T) {
	for _, be := range nntest.Backends() {
		if be.Name() == "cuda" {
			continue // host allocations of a device backend are another matter
		}
		for _, n := range []int{8, 32} {
			m, err := models.New(be, "madry-mnist", models.Config{"conv1": 4, "conv2": 8, "hidden": 32})
			if err != nil {
				t.Fatal(err)
			}
			m.Init(1)
			x := nntest.Random(be, newRand(2), 0.5, n, 1, 28, 28)
			labels := make([]int32, n)
			for i := range labels {
				labels[i] = int32(i % 10)
			}
			dz := be.New(n, 10)
			for _, full := range []bool{true, false} {
				step := func() {
					z := m.Forward(x, full)
					nn.SoftmaxCrossEntropy(be, dz, z, labels, 0)
					m.Backward(dz, nn.Grad{Params: full, Input: true})
				}
				name := nntest.Name(be)
				if full {
					name += "/train-step"
				} else {
					name += "/input-grad-step"
				}
				// Warm-up: the first call per batch size allocates the buffers.
				step()
				step()
				allocs := testing.AllocsPerRun(20, step)
				limit := float64(maxAllocsOpenBLAS)
				if be.Name() != "cpu/openblas" {
					limit = float64(maxAllocsOpenBLAS + maxAllocsPerExampleGonum*n)
				}
				if allocs > limit {
					t.Errorf("%s batch %d: %.1f allocations per step, bound %.0f", name, n, allocs, limit)
				}
				const steps = 20
				if big := largeAllocs(step, steps); big >= steps/2 {
					t.Errorf("%s batch %d: %d allocations of ≥ %d bytes in %d steady-state steps: a per-step buffer", name, n, big, bufferBytes, steps)
				}
				t.Logf("%s batch %d: %.1f allocations per step", name, n, allocs)
			}
		}
	}
}

// largeAllocs counts the heap allocations of at least bufferBytes made while
// running step k times (process-wide: a stray runtime allocation may add
// one or two, a buffer allocated per step adds k).
func largeAllocs(step func(), k int) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs-by-size:bytes"}}
	// The per-size counts are kept per P and folded into the metric lazily;
	// a GC flushes them, so both reads see every allocation made before.
	runtime.GC()
	metrics.Read(s)
	before := append([]uint64(nil), s[0].Value.Float64Histogram().Counts...)
	for i := 0; i < k; i++ {
		step()
	}
	runtime.GC()
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	var big uint64
	for i, c := range h.Counts {
		// Bucket i holds sizes in [Buckets[i], Buckets[i+1]).
		if h.Buckets[i] >= bufferBytes {
			big += c - before[i]
		}
	}
	return big
}
