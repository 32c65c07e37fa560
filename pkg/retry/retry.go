// Package retry is the one way the cluster waits before trying again:
// capped exponential backoff with jitter, and a limiter that keeps a failing
// loop from writing more than one log line per interval.
//
// Every retry loop in the cluster (a worker's pulls, pushes and reports, its
// joins, the coordinator's recovery and rollback) uses a Backoff, so an
// outage costs a waiting process a few wake-ups per second at most, however
// long it lasts, and many processes retrying at once spread out instead of
// hammering a peer in lock step.
package retry

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Backoff yields the pauses of a retry loop: the n-th consecutive failure
// waits a uniformly random time in [d/2, d] with d = min(Base·2ⁿ, Max)
// ("equal jitter": never shorter than half the nominal pause, so the
// average rate stays bounded, and never in lock step with other
// processes). Reset after a success. A Backoff is not safe for concurrent
// use.
type Backoff struct {
	Base, Max time.Duration
	n         int
	// rand draws the jitter (nil: math/rand/v2's global source).
	rand func() float64
}

// New returns a Backoff from base up to max (max ≥ base > 0 are enforced:
// a zero base becomes 50 ms, a max below base becomes base).
func New(base, max time.Duration) *Backoff {
	if base <= 0 {
		base = 50 * time.Millisecond
	}
	if max < base {
		max = base
	}
	return &Backoff{Base: base, Max: max}
}

// WithRand makes the jitter come from fn (values in [0, 1)); tests pass a
// seeded source.
func (b *Backoff) WithRand(fn func() float64) *Backoff {
	b.rand = fn
	return b
}

// Next returns the pause before the next attempt and counts a failure.
func (b *Backoff) Next() time.Duration {
	d := b.Base
	for i := 0; i < b.n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	b.n++
	r := rand.Float64
	if b.rand != nil {
		r = b.rand
	}
	return d/2 + time.Duration(r()*float64(d/2))
}

// Failures is the number of failures since the last Reset.
func (b *Backoff) Failures() int { return b.n }

// Reset starts over after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Wait sleeps Next() or until ctx ends, returning ctx.Err() in that case.
func (b *Backoff) Wait(ctx context.Context) error {
	return Sleep(ctx, b.Next())
}

// Sleep pauses d or until ctx ends (returning ctx.Err()).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Limiter lets one event through per interval and counts the ones it
// holds back, so a loop that fails many times a second logs once a second
// with the count of what it did not log. It is safe for concurrent use.
type Limiter struct {
	Every time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// NewLimiter lets one event through per every.
func NewLimiter(every time.Duration) *Limiter { return &Limiter{Every: every} }

// Allow reports whether this event may be logged, and how many were held
// back since the last one that was.
func (l *Limiter) Allow() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	t := now()
	if !l.last.IsZero() && t.Sub(l.last) < l.Every {
		l.suppressed++
		return false, 0
	}
	l.last, suppressed, l.suppressed = t, l.suppressed, 0
	return true, suppressed
}

// Every calls fn every period until ctx ends, each call bounded by a
// context that ends after period: a periodic check (one small call per
// period), not a retry loop, so a failed call simply waits for the next
// period.
func Every(ctx context.Context, period time.Duration, fn func(ctx context.Context)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ctx.Err() != nil { // both were ready: the end wins
				return
			}
			cctx, cancel := context.WithTimeout(ctx, period)
			fn(cctx)
			cancel()
		}
	}
}
