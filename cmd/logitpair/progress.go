package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/logitpair/logitpair/pkg/progress"
)

// progressInterval is how often long work prints a progress line when its
// output is not a terminal.
const progressInterval = 30 * time.Second

// isTerminal reports whether w is a terminal (an *os.File on a character
// device): long work draws a live bar there, plain lines elsewhere.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// evalProgress turns pkg/eval's per-batch callback into progress: a bar
// on a terminal, a line every progressInterval otherwise, and a closing
// line with the time taken.
type evalProgress struct {
	p    *progress.Progress
	done int
}

// newEvalProgress starts the clock of an evaluation (now nil: time.Now).
func newEvalProgress(w io.Writer, terminal bool, now func() time.Time) *evalProgress {
	return &evalProgress{p: progress.New(progress.Options{Out: w, Label: "eval", Unit: "examples",
		Terminal: terminal, Interval: progressInterval, Now: now})}
}

// update is eval.Options.Progress.
func (e *evalProgress) update(done, total int) {
	e.p.SetTotal(int64(total))
	e.done = done
	e.p.Update(int64(done), "")
}

// finish prints the closing line (nothing when no batch was reported).
func (e *evalProgress) finish() {
	if e.done > 0 {
		e.p.Finish(int64(e.done), "")
	} else {
		e.p.Close()
	}
}

// strongProgress turns pkg/strong's callbacks (Options.Progress and
// Advance) into progress: a line as each run of a stage starts, then a
// bar on a terminal or a line every progressInterval, and a closing line
// with the run's time.
type strongProgress struct {
	w        io.Writer
	terminal bool
	now      func() time.Time // nil: time.Now
	p        *progress.Progress
	total    int
}

// start is strong.Options.Progress.
func (s *strongProgress) start(stage string, restart, attacked int) {
	s.finish()
	if stage == "checks" {
		fmt.Fprintf(s.w, "strong: masking checks on %d examples\n", attacked)
		return
	}
	fmt.Fprintf(s.w, "strong: %s run %d on %d examples\n", stage, restart+1, attacked)
	s.total = attacked
	s.p = progress.New(progress.Options{Out: s.w, Label: fmt.Sprintf("strong %s run %d", stage, restart+1), Unit: "examples",
		Total: int64(attacked), Terminal: s.terminal, Interval: progressInterval, Now: s.now})
}

// advance is strong.Options.Advance (a transfer stage's total, the
// examples it crafts on, is not the attacked examples start was told).
func (s *strongProgress) advance(_ string, _, done, total int) {
	if s.p == nil {
		return
	}
	s.total = total
	s.p.SetTotal(int64(total))
	s.p.Update(int64(done), "")
}

// finish closes the current run's progress with its closing line (none
// for a run on no example).
func (s *strongProgress) finish() {
	if s.p == nil {
		return
	}
	if s.total > 0 {
		s.p.Finish(int64(s.total), "")
	} else {
		s.p.Close()
	}
	s.p = nil
}
