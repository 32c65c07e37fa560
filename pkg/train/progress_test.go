package train

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/objective"
)

// TestRunProgressLines: each log line of Run carries the step out of the
// run's, the rate, the elapsed time and the ETA (remaining steps at the
// recent rate), on a clock that moves 10 s per step; the run ends with a
// line of its whole rate. On a terminal a live bar is drawn as well.
func TestRunProgressLines(t *testing.T) {
	c := tinyConfig(t)
	c.Objective, c.Steps, c.LogEvery = "plain", 6, 2
	tr := newTrainer(t, c)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr.acct.now = func() time.Time { return now }
	tr.OnStep = func(int64, objective.Terms) { now = now.Add(10 * time.Second) }
	var out bytes.Buffer
	tr.Progress = &out
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 3 step lines and the closing one:\n%s", len(lines), out.String())
	}
	for i, want := range []struct{ prefix, suffix string }{
		{"step 2/6  0.10 steps/s  0 samples/s  loss ", "  elapsed 20s  ETA 40s"},
		{"step 4/6  0.10 steps/s", "  elapsed 40s  ETA 20s"},
		{"step 6/6  0.10 steps/s", "  elapsed 1m00s  ETA 0s"},
		{"trained steps 0 to 6 in 1m00s: 0.10 steps/s, 0 samples/s", ""},
	} {
		if !strings.HasPrefix(lines[i], want.prefix) || !strings.HasSuffix(lines[i], want.suffix) {
			t.Errorf("line %d:\n%q\nwant %q ... %q", i, lines[i], want.prefix, want.suffix)
		}
	}

	// On a terminal: the same lines, and a bar between them.
	c.Out = t.TempDir()
	tr = newTrainer(t, c)
	tr.acct.now = func() time.Time { return now }
	tr.OnStep = func(int64, objective.Terms) { now = now.Add(10 * time.Second) }
	out.Reset()
	tr.Progress, tr.Terminal = &out, true
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"% |█", "\rstep 4/6  0.10 steps/s", "elapsed 40s  ETA 20s\n", "trained steps 0 to 6"} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, got)
		}
	}
}
