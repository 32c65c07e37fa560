// Package fuzzcheck holds what the project's fuzz targets share: a measure
// of how much a decoder allocates, so a target can assert that a tiny input
// claiming a huge size is refused before the allocation.
package fuzzcheck

import "runtime"

// Allocated returns the bytes fn allocated on the heap: the least of up to
// three runs while over limit, as the count includes whatever another
// goroutine (the fuzzing engine's) allocated meanwhile. fn must be
// repeatable.
func Allocated(limit uint64, fn func()) uint64 {
	least := ^uint64(0)
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		fn()
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
		if least <= limit {
			break
		}
	}
	return least
}
