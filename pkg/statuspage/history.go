package statuspage

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// maxPendingSteps bounds the steps whose reports wait for their commit:
// reports arrive for the current step (and for the previous one, from
// backups), so a few steps suffice; older ones are dropped first.
const maxPendingSteps = 64

// numTerms is the number of fields of Terms.
const numTerms = 6

func (t Terms) array() [numTerms]float64 {
	return [numTerms]float64{t.Loss, t.CleanCE, t.AdvCE, t.Pair, t.CleanAcc, t.AdvAcc}
}

func termsOf(a [numTerms]float64) Terms {
	return Terms{Loss: a[0], CleanCE: a[1], AdvCE: a[2], Pair: a[3], CleanAcc: a[4], AdvAcc: a[5]}
}

// entry is a committed step with the sums behind its averages.
type entry struct {
	step           int64
	time           time.Time
	workers        []int  // sorted
	counted        []bool // counted[i]: workers[i]'s report is in the sums
	sums           [numTerms]float64
	counts         [numTerms]int
	backup, stale  int64
	reportsCounted int
}

func (e *entry) add(slot int, t Terms) {
	i, ok := slices.BinarySearch(e.workers, slot)
	if !ok || e.counted[i] {
		return
	}
	e.counted[i] = true
	e.reportsCounted++
	for k, v := range t.array() {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			e.sums[k] += v
			e.counts[k]++
		}
	}
}

func (e *entry) point() Point {
	var avg [numTerms]float64
	for k := range avg {
		avg[k] = math.NaN()
		if e.counts[k] > 0 {
			avg[k] = e.sums[k] / float64(e.counts[k])
		}
	}
	return Point{Step: e.step, Time: e.time, Workers: slices.Clone(e.workers), Reports: e.reportsCounted,
		Terms: termsOf(avg), DroppedBackup: e.backup, DroppedStale: e.stale}
}

// History is a bounded ring of per-step points, fed by the coordinator's
// hooks: ObserveReport with every worker report (accepted or not),
// ObserveCommit when a step is applied everywhere. A point's terms are the
// averages over the reports of exactly the workers the step committed; a
// report that arrives after its step's commit (the hooks of the gRPC server
// and of the committer race) is still folded in. It is safe for concurrent
// use.
type History struct {
	now func() time.Time

	mu      sync.Mutex
	ring    []entry // ring[(start+i)%cap] is the i-th oldest point
	start   int
	n       int
	pending map[int64]map[int]Terms // step → slot → the slot's latest report
}

// NewHistory returns an empty history that keeps the newest capacity
// points. now is its clock (nil: time.Now).
func NewHistory(capacity int, now func() time.Time) (*History, error) {
	if capacity < 1 {
		return nil, fmt.Errorf("statuspage: history capacity must be at least 1, got %d", capacity)
	}
	if now == nil {
		now = time.Now
	}
	return &History{now: now, ring: make([]entry, capacity), pending: map[int64]map[int]Terms{}}, nil
}

// Capacity is the most points the history keeps.
func (h *History) Capacity() int { return len(h.ring) }

func (h *History) at(i int) *entry { return &h.ring[(h.start+i)%len(h.ring)] }

// find returns the point of step, or nil.
func (h *History) find(step int64) *entry {
	i := sort.Search(h.n, func(i int) bool { return h.at(i).step >= step })
	if i < h.n && h.at(i).step == step {
		return h.at(i)
	}
	return nil
}

// ObserveReport records worker slot's report for step. It counts toward the
// step's point only if the step commits slot's gradient, and once per slot;
// a later report of the same slot for the same step (recomputed after a
// rollback) replaces it for the step's next commit.
func (h *History) ObserveReport(step int64, slot int, t Terms) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.find(step); e != nil {
		// A report that lost the race with its step's commit. It is
		// also kept pending: after a rollback, the recomputed step's
		// reports arrive while the old point is still here, and the
		// step's next commit replaces that point.
		e.add(slot, t)
	}
	if h.n > 0 && step < h.at(0).step {
		return // older than everything kept
	}
	m := h.pending[step]
	if m == nil {
		if len(h.pending) >= maxPendingSteps {
			oldest := int64(math.MaxInt64)
			for s := range h.pending {
				oldest = min(oldest, s)
			}
			if step < oldest {
				return
			}
			delete(h.pending, oldest)
		}
		m = map[int]Terms{}
		h.pending[step] = m
	}
	m[slot] = t
}

// ObserveCommit records that step was applied with the gradients of
// workers, and the coordinator's cumulative dropped-gradient counts. A
// commit of a step at or before the newest point (a rollback recomputed it)
// first drops the points from that step on. The oldest point goes when the
// ring is full.
func (h *History) ObserveCommit(step int64, workers []int, droppedBackup, droppedStale int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.n > 0 && h.at(h.n-1).step >= step {
		h.n--
		*h.at(h.n) = entry{}
	}
	if h.n == len(h.ring) {
		*h.at(0) = entry{}
		h.start = (h.start + 1) % len(h.ring)
		h.n--
	}
	ws := slices.Clone(workers)
	slices.Sort(ws)
	ws = slices.Compact(ws)
	e := h.at(h.n)
	*e = entry{step: step, time: h.now(), workers: ws, counted: make([]bool, len(ws)), backup: droppedBackup, stale: droppedStale}
	h.n++
	for slot, t := range h.pending[step] {
		e.add(slot, t)
	}
	for s := range h.pending {
		if s <= step {
			delete(h.pending, s)
		}
	}
}

// Len is the number of points kept.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Points returns the points kept, oldest first.
func (h *History) Points() []Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Point, h.n)
	for i := range out {
		out[i] = h.at(i).point()
	}
	return out
}

// Last returns the newest n points (all when n exceeds Len), oldest first.
func (h *History) Last(n int) []Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	n = max(min(n, h.n), 0)
	out := make([]Point, n)
	for i := range out {
		out[i] = h.at(h.n - n + i).point()
	}
	return out
}

// StepRate is the committed steps per second over the window ending now:
// with k points committed in (now − window, now], the k − 1 intervals
// between them over the time from the first of them to now (0 with fewer
// than two). Measuring to now rather than to the newest commit makes the
// rate fall while the run is stalled.
func (h *History) StepRate(window time.Duration) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	from := now.Add(-window)
	i := sort.Search(h.n, func(i int) bool { return h.at(i).time.After(from) })
	k := h.n - i
	if k < 2 {
		return 0
	}
	span := now.Sub(h.at(i).time).Seconds()
	if span <= 0 {
		return 0
	}
	return float64(k-1) / span
}
