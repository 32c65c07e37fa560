package rpc

import "testing"

// TestSizedPool: Get gives the length asked for, in a buffer of the next
// power of two that Put takes back for a later Get of that class; buffers
// of other capacities, and those above 4 MiB, are not pooled.
func TestSizedPool(t *testing.T) {
	p := &sizedPool{}
	for _, n := range []int{0, 1, 2, 3, 1000, 16384, 16385, 1 << 22} {
		b := p.Get(n)
		if len(*b) != n || cap(*b) != 1<<class(n) {
			t.Errorf("Get(%d): length %d, capacity %d, want %d and %d", n, len(*b), cap(*b), n, 1<<class(n))
		}
	}
	if b := p.Get(1<<22 + 1); len(*b) != 1<<22+1 {
		t.Errorf("Get above the largest class: length %d", len(*b))
	}
	// sync.Pool may drop what it holds at any GC, so reuse is checked
	// through what Put accepts rather than through a later Get.
	if c := class(16384); c != 14 {
		t.Errorf("class(16384) = %d, want 14", c)
	}
	if c := class(16385); c != 15 {
		t.Errorf("class(16385) = %d, want 15", c)
	}
	odd := make([]byte, 10, 12)
	p.Put(&odd) // not a power of two: dropped, must not be handed out as class 4
	for range 100 {
		if b := p.Get(10); cap(*b) != 16 {
			t.Fatalf("Get(10) returned a buffer of capacity %d", cap(*b))
		}
	}
}
