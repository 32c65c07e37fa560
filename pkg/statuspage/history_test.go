package statuspage

import (
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newHistory(t *testing.T, capacity int, clock *fakeClock) *History {
	t.Helper()
	var now func() time.Time
	if clock != nil {
		now = clock.Now
	}
	h, err := NewHistory(capacity, now)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func uniform(v float64) Terms {
	return Terms{Loss: v, CleanCE: v, AdvCE: v, Pair: v, CleanAcc: v, AdvAcc: v}
}

func steps(ps []Point) []int64 {
	out := make([]int64, len(ps))
	for i, p := range ps {
		out[i] = p.Step
	}
	return out
}

func equalSteps(a []int64, b ...int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestNewHistoryRejectsBadCapacity(t *testing.T) {
	for _, c := range []int{0, -3} {
		_, err := NewHistory(c, nil)
		if err == nil || !strings.Contains(err.Error(), "capacity") {
			t.Fatalf("capacity %d: got %v, want an error naming the capacity", c, err)
		}
	}
}

func TestHistoryBoundedAndOrdered(t *testing.T) {
	h := newHistory(t, 5, newFakeClock())
	for s := range int64(12) {
		h.ObserveCommit(s, []int{0}, 0, 0)
		if h.Len() > 5 {
			t.Fatalf("after step %d: %d points, capacity 5", s, h.Len())
		}
	}
	if got := steps(h.Points()); !equalSteps(got, 7, 8, 9, 10, 11) {
		t.Fatalf("points %v, want the newest five in order", got)
	}
	if got := steps(h.Last(2)); !equalSteps(got, 10, 11) {
		t.Fatalf("Last(2) = %v", got)
	}
	if got := steps(h.Last(50)); len(got) != 5 {
		t.Fatalf("Last(50) = %v, want all 5", got)
	}
	if got := h.Last(-1); len(got) != 0 {
		t.Fatalf("Last(-1) = %v", got)
	}
}

func TestHistoryAveragesAcceptedReportsOnly(t *testing.T) {
	h := newHistory(t, 10, newFakeClock())
	nan := math.NaN()
	h.ObserveReport(0, 0, Terms{Loss: 1, CleanCE: 0.5, AdvCE: 1.5, Pair: 0.2, CleanAcc: 0.5, AdvAcc: 0.25})
	h.ObserveReport(0, 1, uniform(100)) // a backup: not in the set
	h.ObserveReport(0, 2, Terms{Loss: 3, CleanCE: 1.5, AdvCE: nan, Pair: 0.4, CleanAcc: 1, AdvAcc: nan})
	h.ObserveReport(0, 3, Terms{Loss: 2, CleanCE: 1, AdvCE: 2.5, Pair: nan, CleanAcc: 0.75, AdvAcc: 0.75})
	h.ObserveCommit(0, []int{3, 0, 2}, 4, 1)
	p := h.Points()[0]
	if p.Reports != 3 {
		t.Fatalf("reports %d, want 3", p.Reports)
	}
	want := Terms{Loss: 2, CleanCE: 1, AdvCE: 2, Pair: 0.3, CleanAcc: 0.75, AdvAcc: 0.5}
	if !closeTerms(p.Terms, want) {
		t.Fatalf("terms %+v, want %+v", p.Terms, want)
	}
	if !equalInts(p.Workers, 0, 2, 3) || p.DroppedBackup != 4 || p.DroppedStale != 1 {
		t.Fatalf("point %+v", p)
	}
	// A term no report has stays NaN; a step nobody reported has no averages.
	h.ObserveReport(1, 0, Terms{Loss: 1, CleanCE: 1, AdvCE: nan, Pair: nan, CleanAcc: 1, AdvAcc: nan})
	h.ObserveCommit(1, []int{0}, 4, 1)
	h.ObserveCommit(2, []int{0, 1}, 4, 1)
	ps := h.Points()
	if !math.IsNaN(ps[1].AdvCE) || !math.IsNaN(ps[1].Pair) || ps[1].Loss != 1 {
		t.Fatalf("step 1: %+v", ps[1].Terms)
	}
	if ps[2].Reports != 0 || !math.IsNaN(ps[2].Loss) || !math.IsNaN(ps[2].CleanAcc) {
		t.Fatalf("step 2 (no reports): %+v", ps[2])
	}
}

func TestHistoryFoldsLateReports(t *testing.T) {
	h := newHistory(t, 10, newFakeClock())
	h.ObserveReport(5, 0, uniform(1))
	h.ObserveCommit(5, []int{0, 1}, 0, 0)
	h.ObserveReport(5, 1, uniform(3))  // in the set, arrives after the commit
	h.ObserveReport(5, 2, uniform(50)) // a backup after the commit
	h.ObserveReport(5, 1, uniform(70)) // a duplicate
	p := h.Points()[0]
	if p.Reports != 2 || p.Loss != 2 || p.AdvAcc != 2 {
		t.Fatalf("point %+v, want the mean of slots 0 and 1 (2)", p)
	}
	// Late reports stay pending (for a re-commit after a rollback) only
	// until a later step commits; reports older than everything kept are
	// dropped at once.
	h.ObserveCommit(6, []int{0}, 0, 0)
	h.ObserveReport(1, 0, uniform(9))
	if len(h.pending) != 0 {
		t.Fatalf("pending %v", h.pending)
	}
	if p := h.Points()[0]; p.Reports != 2 || p.Loss != 2 {
		t.Fatalf("step 5 changed to %+v", p)
	}
}

func TestHistoryRollbackReplacesRecomputedSteps(t *testing.T) {
	h := newHistory(t, 100, newFakeClock())
	for s := range int64(10) {
		h.ObserveReport(s, 0, uniform(float64(s)))
		h.ObserveCommit(s, []int{0}, 0, 0)
	}
	// Rolled back to the checkpoint at 5; the run redoes step 5 with a
	// different result and a report from the old generation for step 7 is
	// left over.
	h.ObserveReport(7, 0, uniform(-1))
	h.ObserveReport(5, 0, uniform(55))
	h.ObserveCommit(5, []int{0}, 0, 0)
	ps := h.Points()
	if got := steps(ps); !equalSteps(got, 0, 1, 2, 3, 4, 5) {
		t.Fatalf("after the rollback: %v", got)
	}
	if ps[5].Loss != 55 {
		t.Fatalf("recomputed step 5: loss %v, want 55", ps[5].Loss)
	}
	h.ObserveReport(6, 0, uniform(66))
	h.ObserveReport(7, 0, uniform(77)) // replaces the old generation's report
	h.ObserveCommit(6, []int{0}, 0, 0)
	h.ObserveCommit(7, []int{0}, 0, 0)
	ps = h.Points()
	if ps[6].Loss != 66 || ps[7].Loss != 77 {
		t.Fatalf("steps 6, 7: %v %v", ps[6].Loss, ps[7].Loss)
	}
}

func TestHistoryPendingIsBounded(t *testing.T) {
	h := newHistory(t, 4, newFakeClock())
	for s := range int64(1000) {
		h.ObserveReport(s, int(s%3), uniform(1))
	}
	if len(h.pending) > maxPendingSteps {
		t.Fatalf("%d pending steps, bound %d", len(h.pending), maxPendingSteps)
	}
	if _, ok := h.pending[999]; !ok {
		t.Fatal("the newest step's report was dropped instead of the oldest")
	}
	h.ObserveCommit(999, []int{0}, 0, 0)
	if len(h.pending) != 0 {
		t.Fatalf("%d pending steps after committing past all of them", len(h.pending))
	}
}

func TestHistoryStepRate(t *testing.T) {
	clock := newFakeClock()
	h := newHistory(t, 1000, clock)
	if r := h.StepRate(time.Minute); r != 0 {
		t.Fatalf("empty: rate %v", r)
	}
	for s := range int64(100) {
		h.ObserveCommit(s, []int{0}, 0, 0)
		clock.Advance(500 * time.Millisecond)
	}
	// Now is 0.5 s after the last commit. A 10 s window holds the commits
	// at now−10 s (excluded) … now−0.5 s: 19 of them, 18 intervals over
	// 9.5 s.
	if r, want := h.StepRate(10*time.Second), 18/9.5; math.Abs(r-want) > 1e-9 {
		t.Fatalf("rate %v, want %v", r, want)
	}
	// A stalled run's rate falls, then reaches 0.
	clock.Advance(5 * time.Second)
	if r, want := h.StepRate(10*time.Second), 8/9.5; math.Abs(r-want) > 1e-9 {
		t.Fatalf("stalled 5 s: rate %v, want %v", r, want)
	}
	clock.Advance(20 * time.Second)
	if r := h.StepRate(10 * time.Second); r != 0 {
		t.Fatalf("stalled 25 s: rate %v, want 0", r)
	}
}

// TestHistoryConcurrent feeds and reads a history from many goroutines (run
// with -race) and checks that it stays bounded and ordered.
func TestHistoryConcurrent(t *testing.T) {
	const workers, stepsN, capacity = 8, 300, 64
	h := newHistory(t, capacity, nil)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range int64(stepsN) {
				h.ObserveReport(s, w, uniform(float64(s)))
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for s := range int64(stepsN) {
			h.ObserveCommit(s, []int{0, 1, 2, 3, 4, 5}, s, 0)
		}
	}()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				ps := h.Points()
				if len(ps) > capacity {
					t.Errorf("%d points, capacity %d", len(ps), capacity)
					return
				}
				for i := 1; i < len(ps); i++ {
					if ps[i].Step <= ps[i-1].Step {
						t.Errorf("points out of order: %v", steps(ps))
						return
					}
				}
				_ = h.StepRate(time.Second)
			}
		}()
	}
	wg.Wait()
	ps := h.Points()
	if len(ps) != capacity || ps[len(ps)-1].Step != stepsN-1 {
		t.Fatalf("%d points ending at %d", len(ps), ps[len(ps)-1].Step)
	}
	for _, p := range ps {
		if p.Reports > 6 {
			t.Fatalf("step %d averages %d reports, the set has 6", p.Step, p.Reports)
		}
		// Every report for step s carries s: any mix of them averages to s.
		if p.Reports > 0 && p.Loss != float64(p.Step) {
			t.Fatalf("step %d: loss %v", p.Step, p.Loss)
		}
	}
}

func closeTerms(a, b Terms) bool {
	x, y := a.array(), b.array()
	for i := range x {
		if math.Abs(x[i]-y[i]) > 1e-12 {
			return false
		}
	}
	return true
}

func equalInts(a []int, b ...int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
