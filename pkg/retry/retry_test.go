package retry

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackoffGrowsWithJitterAndIsCapped(t *testing.T) {
	src := rand.New(rand.NewPCG(1, 2))
	b := New(100*time.Millisecond, 2*time.Second).WithRand(src.Float64)
	nominal := []time.Duration{100, 200, 400, 800, 1600, 2000, 2000, 2000}
	for i, n := range nominal {
		n *= time.Millisecond
		d := b.Next()
		if d < n/2 || d > n {
			t.Fatalf("attempt %d: pause %v outside [%v, %v]", i, d, n/2, n)
		}
	}
	if b.Failures() != len(nominal) {
		t.Fatalf("Failures() = %d, want %d", b.Failures(), len(nominal))
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after Reset: %v, want ≤ 100ms", d)
	}
}

func TestBackoffJitterSpreadsPauses(t *testing.T) {
	src := rand.New(rand.NewPCG(3, 4))
	seen := map[time.Duration]bool{}
	for i := 0; i < 20; i++ {
		b := New(time.Second, time.Second).WithRand(src.Float64)
		seen[b.Next()] = true
	}
	if len(seen) < 10 {
		t.Fatalf("20 backoffs gave only %d distinct pauses: no jitter", len(seen))
	}
}

func TestNewEnforcesSaneBounds(t *testing.T) {
	b := New(0, 0)
	if b.Base <= 0 || b.Max < b.Base {
		t.Fatalf("New(0, 0) = base %v max %v", b.Base, b.Max)
	}
}

func TestSleepEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("Sleep on a cancelled context = %v", err)
	}
}

func TestLimiterLetsOnePerIntervalAndCounts(t *testing.T) {
	now := time.Unix(0, 0)
	l := &Limiter{Every: time.Second, Now: func() time.Time { return now }}
	if ok, _ := l.Allow(); !ok {
		t.Fatal("first event held back")
	}
	for i := 0; i < 9; i++ {
		now = now.Add(100 * time.Millisecond)
		if ok, _ := l.Allow(); ok && i < 9 {
			t.Fatalf("event %d let through within the interval", i)
		}
	}
	now = now.Add(200 * time.Millisecond)
	ok, n := l.Allow()
	if !ok || n != 9 {
		t.Fatalf("after the interval: ok %v suppressed %d, want true 9", ok, n)
	}
}

func TestEveryCallsUntilTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		Every(ctx, time.Millisecond, func(c context.Context) {
			if _, ok := c.Deadline(); !ok {
				t.Error("a call without a deadline")
			}
			if calls++; calls == 3 {
				cancel()
			}
		})
	}()
	<-done
	if calls != 3 {
		t.Fatalf("%d calls, want 3 (Every must return once ctx ends)", calls)
	}
}
