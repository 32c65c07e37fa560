package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestStrongProgressLines: the strong suite's callbacks become a start line
// per run, periodic lines (every progressInterval on the fake clock) with
// the examples done, the rate and the ETA, and a closing line per run.
func TestStrongProgressLines(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	sp := &strongProgress{w: &out, now: func() time.Time { return clock }}
	sp.start("apgd-ce", 0, 400)
	for done := 100; done <= 400; done += 100 {
		clock = clock.Add(20 * time.Second)
		sp.advance("apgd-ce", 0, done, 400)
	}
	sp.start("apgd-ce", 1, 50)
	clock = clock.Add(5 * time.Second)
	sp.advance("apgd-ce", 1, 50, 50)
	sp.start("apgd-dlr", 0, 0) // nothing left to attack: no closing line
	sp.start("checks", 0, 100)
	sp.finish()
	want := []string{
		"strong: apgd-ce run 1 on 400 examples",
		"strong apgd-ce run 1: 200/400 examples (50%)  5 examples/s  elapsed 40s  ETA 40s",
		"strong apgd-ce run 1: 400/400 examples (100%)  5 examples/s  elapsed 1m20s  ETA 0s",
		"strong apgd-ce run 1: 400/400 examples in 1m20s (5 examples/s)",
		"strong: apgd-ce run 2 on 50 examples",
		"strong apgd-ce run 2: 50/50 examples in 5s (10 examples/s)",
		"strong: apgd-dlr run 1 on 0 examples",
		"strong: masking checks on 100 examples",
	}
	if got := strings.Split(strings.TrimSpace(out.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestEvalProgressLines: the standard suite's per-batch callback becomes
// periodic lines and a closing one.
func TestEvalProgressLines(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	ep := newEvalProgress(&out, false, func() time.Time { return clock })
	for done := 100; done <= 1000; done += 100 {
		clock = clock.Add(10 * time.Second)
		ep.update(done, 1000)
	}
	ep.finish()
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(got) != 4 || got[0] != "eval: 300/1000 examples (30%)  10 examples/s  elapsed 30s  ETA 1m10s" ||
		got[3] != "eval: 1000/1000 examples in 1m40s (10 examples/s)" {
		t.Fatalf("lines:\n%s", out.String())
	}
}
