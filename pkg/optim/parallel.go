package optim

import (
	"runtime"
	"sync"
)

// minChunk is the fewest elements one goroutine of an update takes: vectors
// shorter than two chunks are updated on the calling goroutine, where a
// goroutine's start-up would cost more than it saves.
const minChunk = 1 << 15

// forChunks calls fn on contiguous chunks [lo, hi) that cover [0, n), at
// most GOMAXPROCS of them, concurrently, and returns when all are done.
//
// Every update in this package is element-wise (element i of the result
// depends on element i of the inputs alone), so the split changes nothing:
// the results equal a sequential loop's bit for bit, at any thread count.
// The updates are memory-bound (Adam reads 4 and writes 3 float32 per
// element): over a ResNet's tens of millions of parameters one core's
// memory bandwidth is the bottleneck of a step that a GPU computes in a few
// milliseconds, and the parameter servers update their shards the same way.
func forChunks(n int, fn func(lo, hi int)) {
	k := min(runtime.GOMAXPROCS(0), n/minChunk)
	if k <= 1 {
		fn(0, n)
		return
	}
	forChunksK(n, k, func(_, lo, hi int) { fn(lo, hi) })
}

// firstNonFinite returns the lowest index of a NaN or ±Inf in x, or -1.
func firstNonFinite(x []float32) int {
	n := len(x)
	k := min(runtime.GOMAXPROCS(0), n/minChunk)
	if k <= 1 {
		return scanNonFinite(x, 0)
	}
	found := make([]int, k)
	forChunksK(n, k, func(c, lo, hi int) { found[c] = scanNonFinite(x[lo:hi], lo) })
	for _, i := range found {
		if i >= 0 {
			return i
		}
	}
	return -1
}

func scanNonFinite(x []float32, off int) int {
	for i, v := range x {
		if v-v != 0 { // NaN or ±Inf
			return off + i
		}
	}
	return -1
}

// forChunksK is forChunks with exactly k chunks, numbered for fn.
func forChunksK(n, k int, fn func(c, lo, hi int)) {
	var wg sync.WaitGroup
	wg.Add(k - 1)
	for c := 1; c < k; c++ {
		go func() {
			defer wg.Done()
			fn(c, c*n/k, (c+1)*n/k)
		}()
	}
	fn(0, 0, n/k)
	wg.Wait()
}
