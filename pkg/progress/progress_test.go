package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func newClock() *fakeClock                   { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }
func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestFormatDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{{0, "0s"}, {-time.Second, "0s"}, {1499 * time.Millisecond, "1s"}, {59 * time.Second, "59s"}, {187 * time.Second, "3m07s"},
		{2*time.Hour + 5*time.Minute + 40*time.Second, "2h05m"}} {
		if got := FormatDuration(c.d); got != c.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

// TestMeterETA: the rate is that of the recent window, not of the whole
// run, and the ETA is the remaining work at that rate.
func TestMeterETA(t *testing.T) {
	c := newClock()
	m := NewMeter(1000, 0, 10*time.Second, c.now)
	if st := m.Observe(0); st.Rate != 0 || st.ETA != -1 {
		t.Fatalf("no time passed: rate %v ETA %v, want unknown", st.Rate, st.ETA)
	}
	// A slow start: 10 units in the first 20 s, then 10 units/s.
	c.advance(20 * time.Second)
	m.Observe(10)
	var st Stats
	for i := 1; i <= 20; i++ {
		c.advance(time.Second)
		st = m.Observe(10 + 10*int64(i))
	}
	if st.Done != 210 || st.Elapsed != 40*time.Second {
		t.Fatalf("done %d elapsed %v", st.Done, st.Elapsed)
	}
	if st.Rate < 9.99 || st.Rate > 10.01 {
		t.Fatalf("rate %v, want 10/s over the 10 s window (the whole run's average is %v)", st.Rate, 210.0/40)
	}
	if want := 79 * time.Second; st.ETA < want || st.ETA > want+time.Second {
		t.Fatalf("ETA %v, want 79 s (790 units at 10/s)", st.ETA)
	}
	if got := st.ETAString(); got != "1m19s" {
		t.Fatalf("ETAString %q", got)
	}
	// A rollback to 150 is no negative work: the rate stays, the ETA grows.
	c.advance(time.Second)
	st = m.Observe(150)
	if st.Rate <= 0 {
		t.Fatalf("rate %v after a rollback", st.Rate)
	}
	if st.ETA <= 79*time.Second {
		t.Fatalf("ETA %v after rolling back to 150, want more than before", st.ETA)
	}
	c.advance(time.Second)
	if st = m.Observe(1000); st.ETA != 0 {
		t.Fatalf("ETA %v when done", st.ETA)
	}
}

// TestPlainLines: without a terminal a line comes every Every units or
// every Interval, with done/total, rate, elapsed and ETA.
func TestPlainLines(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	p := New(Options{Out: &out, Label: "eval", Unit: "examples", Total: 1000, Every: 300, Interval: time.Minute, Now: c.now})
	if p.Terminal() {
		t.Fatal("a bar without Terminal")
	}
	for done := int64(100); done <= 1000; done += 100 {
		c.advance(10 * time.Second)
		p.Update(done, "batch ok")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	// By count at 300, 600, 900; by time never (a line every 30 s at most).
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), out.String())
	}
	want := "eval: 300/1000 examples (30%)  10 examples/s  elapsed 30s  ETA 1m10s  batch ok"
	if lines[0] != want {
		t.Fatalf("line\n%q, want\n%q", lines[0], want)
	}
	if !strings.HasPrefix(lines[2], "eval: 900/1000 examples (90%)") || !strings.Contains(lines[2], "ETA 10s") {
		t.Fatalf("last line %q", lines[2])
	}
	out.Reset()
	c.advance(5 * time.Second)
	p.Finish(1000, "")
	if got := out.String(); got != "eval: 1000/1000 examples in 1m45s (9.52 examples/s)\n" {
		t.Fatalf("finish line %q", got)
	}
	if got := rateString(1234.5, "examples"); got != "1234 examples" {
		t.Fatalf("rateString %q", got)
	}

	// By time only: slow work gets a line every Interval.
	out.Reset()
	p = New(Options{Out: &out, Label: "train", Unit: "steps", Total: 100, Interval: 30 * time.Second, Now: c.now})
	for s := int64(1); s <= 10; s++ {
		c.advance(10 * time.Second)
		p.Update(s, "")
	}
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Fatalf("%d lines in 100 s at one per 30 s, want 3:\n%s", n, out.String())
	}
}

// TestTerminalBar: on a terminal the output is a bar redrawn in place (no
// line per update) whose description carries the stats; Println keeps a
// line above it.
func TestTerminalBar(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	p := New(Options{Out: &out, Label: "train", Unit: "steps", Total: 200, Terminal: true, Every: 1, Now: c.now})
	if !p.Terminal() {
		t.Fatal("no bar with Terminal")
	}
	for s := int64(1); s <= 90; s++ {
		c.advance(time.Second)
		p.Update(s, "loss 0.5")
	}
	got := out.String()
	if strings.Contains(got, "\n") {
		t.Fatalf("a live bar printed lines:\n%q", got)
	}
	last := got[strings.LastIndex(got, "\r")+1:]
	for _, want := range []string{"45%", "|█████████", "train: 90/200 steps (45%)", "1 steps/s", "elapsed 1m30s", "ETA 1m50s", "loss 0.5"} {
		if !strings.Contains(last, want) {
			t.Errorf("bar %q lacks %q", last, want)
		}
	}
	// Redraws are throttled: 10 updates within 100 ms draw once at most.
	n := strings.Count(out.String(), "\r")
	for i := 0; i < 10; i++ {
		c.advance(5 * time.Millisecond)
		p.Update(90, "")
	}
	if m := strings.Count(out.String(), "\r"); m-n > 3 {
		t.Fatalf("%d carriage returns for updates within 50 ms", m-n)
	}
	p.Println("validation at step 90")
	if !strings.Contains(out.String(), "validation at step 90\n") {
		t.Fatalf("Println: %q", out.String())
	}
	p.Close()
	if !strings.HasSuffix(out.String(), "\033[2K\r") {
		t.Fatalf("Close left the bar: %q", out.String()[max(0, out.Len()-40):])
	}
}
