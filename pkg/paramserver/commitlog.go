package paramserver

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
)

// Entry is one committed step: the workers whose gradients make step Step
// (S_t), sorted and without repeats, and the factor LRScale by which the
// step's scheduled learning rate is multiplied (the coordinator lowers it
// when it rolls the run back; see LRScaleOf).
type Entry struct {
	Step    int64
	Workers []int
	// LRScale multiplies Schedule.LR(Step) for this step. 0 stands for 1
	// (unscaled): it is what every entry written before the scale existed
	// reads as, and the one form of 1 a log stores (Append writes 1 as 0),
	// so that a run that never changes the scale writes the logs it always
	// wrote. Otherwise it must be positive and finite.
	LRScale float64
}

// LRScaleOf returns the learning-rate factor a scale field stands for: 1
// for 0, the field otherwise.
func LRScaleOf(scale float64) float64 {
	if scale == 0 {
		return 1
	}
	return scale
}

// canonicalScale is the stored form of scale: 0 for 1.
func canonicalScale(scale float64) float64 {
	if scale == 1 {
		return 0
	}
	return scale
}

// checkScale validates a learning-rate scale field (0 or positive finite).
func checkScale(scale float64) error {
	if scale < 0 || math.IsNaN(scale) || math.IsInf(scale, 0) {
		return fmt.Errorf("learning-rate scale %v must be positive and finite (0 stands for 1)", scale)
	}
	return nil
}

// CommitLog is the coordinator's durable record of (t, S_t), written before
// any shard applies step t. Implementations are safe for concurrent use.
type CommitLog interface {
	// Append records e. e.Step must be the last step + 1 (any step ≥ 0 for
	// an empty log) and e.Workers non-empty, sorted, without repeats and
	// ≥ 0; otherwise it returns an error and records nothing. When Append
	// returns nil the entry is durable.
	Append(e Entry) error
	// Entries returns a copy of every entry, in step order.
	Entries() ([]Entry, error)
	// TruncateAfter removes every entry with Step > step (rolling back to a
	// checkpoint at version c is TruncateAfter(c−1)).
	TruncateAfter(step int64) error
	// Close releases the log; later calls return ErrLogClosed.
	Close() error
}

// ErrLogClosed is returned by a closed CommitLog.
var ErrLogClosed = errors.New("paramserver: commit log closed")

// ErrNotConsecutive is wrapped by Append when the entry's step does not
// follow the last one.
var ErrNotConsecutive = errors.New("paramserver: commit log: step is not the last step + 1")

// checkEntry validates e against the last step (has is false for an empty
// log).
func checkEntry(e Entry, last int64, has bool) error {
	if e.Step < 0 {
		return fmt.Errorf("paramserver: commit log: negative step %d", e.Step)
	}
	if has && e.Step != last+1 {
		return fmt.Errorf("%w: step %d after %d", ErrNotConsecutive, e.Step, last)
	}
	if len(e.Workers) == 0 {
		return fmt.Errorf("paramserver: commit log: step %d has no workers", e.Step)
	}
	for i, w := range e.Workers {
		if w < 0 || (i > 0 && w <= e.Workers[i-1]) {
			return fmt.Errorf("paramserver: commit log: step %d: workers %v must be >= 0, sorted, without repeats", e.Step, e.Workers)
		}
	}
	if err := checkScale(e.LRScale); err != nil {
		return fmt.Errorf("paramserver: commit log: step %d: %w", e.Step, err)
	}
	return nil
}

func cloneEntries(es []Entry) []Entry {
	out := make([]Entry, len(es))
	for i, e := range es {
		out[i] = Entry{Step: e.Step, Workers: slices.Clone(e.Workers), LRScale: e.LRScale}
	}
	return out
}

// MemLog is an in-memory CommitLog (tests, single-process clusters).
type MemLog struct {
	mu      sync.Mutex
	entries []Entry
	closed  bool
}

// NewMemLog returns an empty MemLog.
func NewMemLog() *MemLog { return &MemLog{} }

// Append records a copy of e.
func (l *MemLog) Append(e Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrLogClosed
	}
	n := len(l.entries)
	var last int64
	if n > 0 {
		last = l.entries[n-1].Step
	}
	if err := checkEntry(e, last, n > 0); err != nil {
		return err
	}
	l.entries = append(l.entries, Entry{Step: e.Step, Workers: slices.Clone(e.Workers), LRScale: canonicalScale(e.LRScale)})
	return nil
}

// Entries returns a copy of the entries.
func (l *MemLog) Entries() ([]Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrLogClosed
	}
	return cloneEntries(l.entries), nil
}

// TruncateAfter removes the entries after step.
func (l *MemLog) TruncateAfter(step int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrLogClosed
	}
	l.entries = l.entries[:keepUpTo(l.entries, step)]
	return nil
}

// Close closes the log.
func (l *MemLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return nil
}

// keepUpTo returns how many leading entries have Step <= step.
func keepUpTo(es []Entry, step int64) int {
	n := 0
	for n < len(es) && es[n].Step <= step {
		n++
	}
	return n
}
