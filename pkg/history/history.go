// Package history is a run's curve file: RUN_DIR/history.jsonl, one JSON
// object per line, appended by `logitpair train` (pkg/train's records) and
// by the cluster's coordinator (pkg/node), read back by `logitpair plot`.
//
// # Records
//
// Every line is a Record: its Kind, the Step it is about and the Time it
// was written, and the fields of its kind (the others are left out):
//
//	start       a process began (or resumed) the run at Step
//	train       a log interval ending at Step: the mean loss terms and
//	            batch accuracies over the interval's steps, the learning
//	            rate, steps/s and samples/s, seconds since the start
//	validation  train's robust validation of the model of Step (clean and
//	            robust accuracy, the attack, the examples)
//	sentinel    a sentinel check of the model of Step (clean, single-step
//	            and multi-step accuracy; Verdict "good" or "rollback", Rule)
//	rollback    the run went back from step From to step Step (a sentinel
//	            trip), Reason says why
//
// Step is always a count of steps done: the version of the model (the
// coordinator's committed step s is Step s+1, as its checkpoints count).
// A term the objective does not compute (NaN) is left out.
//
// # Rollbacks and resumes
//
// The file is append-only: after a rollback to step L (and after a resume
// from the checkpoint of step L, which abandons any step logged after it)
// the records of the abandoned steps stay, and a rollback (or start)
// record marks the point. Surviving replays the file and keeps the path the
// run took in the end: a rollback or start record at step L drops every
// earlier record of a step after L. A cluster's recovery from a shard's
// failure also takes the run back, without a record: a train record at a
// step not after the previous one marks it. The plots draw that path and
// mark where the run went back (where a rollback record says so).
//
// # Durability
//
// Each record is one write(2) of a whole line to a file opened with
// O_APPEND, so a crash leaves at most a torn last line; Open ends such a
// line before appending, and Read skips every line that is not a record,
// saying so in its notes. The file is not fsynced: a crash may lose the
// last records, never the checkpoints.
package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// FileName is the history's name in a run directory.
const FileName = "history.jsonl"

// Kinds of Record.Kind.
const (
	KindStart      = "start"
	KindTrain      = "train"
	KindValidation = "validation"
	KindSentinel   = "sentinel"
	KindRollback   = "rollback"
)

// Verdicts of a sentinel Record.
const (
	VerdictGood     = "good"
	VerdictRollback = "rollback"
)

// Record is one line of the history. Pointer fields are nil when the
// record's kind has no such value (or the objective does not compute it).
type Record struct {
	Kind string    `json:"kind"`
	Step int64     `json:"step"`
	Time time.Time `json:"time"`
	// Steps is the run's length (start).
	Steps int64 `json:"steps,omitempty"`
	// Source is who wrote the record: "train" or "coordinator" (start).
	Source string `json:"source,omitempty"`

	// train: the means over the interval's steps (Interval of them; in a
	// cluster, Reports worker reports over those steps).
	Interval int      `json:"interval,omitempty"`
	Reports  int      `json:"reports,omitempty"`
	Loss     *float64 `json:"loss,omitempty"`
	CleanCE  *float64 `json:"clean_ce,omitempty"`
	AdvCE    *float64 `json:"adv_ce,omitempty"`
	Pair     *float64 `json:"pair,omitempty"`
	CleanAcc *float64 `json:"clean_acc,omitempty"`
	AdvAcc   *float64 `json:"adv_acc,omitempty"`
	LR       *float64 `json:"lr,omitempty"`
	// StepsPerSec and SamplesPerSec are the rate since the process started
	// (train) or over the interval (coordinator); Elapsed the seconds since
	// the process started.
	StepsPerSec   *float64 `json:"steps_per_s,omitempty"`
	SamplesPerSec *float64 `json:"samples_per_s,omitempty"`
	Elapsed       *float64 `json:"elapsed_s,omitempty"`

	// validation and sentinel: accuracies in [0, 1] on Examples examples.
	Clean      *float64 `json:"clean,omitempty"`
	Robust     *float64 `json:"robust,omitempty"`
	Attack     string   `json:"attack,omitempty"`
	SingleStep *float64 `json:"single_step,omitempty"`
	MultiStep  *float64 `json:"multi_step,omitempty"`
	Examples   int      `json:"examples,omitempty"`
	Verdict    string   `json:"verdict,omitempty"`
	Rule       string   `json:"rule,omitempty"`

	// rollback: the step the run went back from, why, and the learning
	// rate's scale from now on.
	From    int64    `json:"from,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	LRScale *float64 `json:"lr_scale,omitempty"`
}

// Float is &v, or nil for NaN and ±Inf (which JSON cannot carry: a term
// not computed is left out).
func Float(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// Value is *p, or NaN for nil.
func Value(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// Writer appends records to a history file. It is safe for concurrent use;
// a nil Writer writes nothing.
type Writer struct {
	mu   sync.Mutex
	f    *os.File
	path string
	now  func() time.Time
}

// Open opens dir's history file for appending (creating it and dir). A
// torn last line, a crash's, is ended first so that the next record starts
// a line of its own.
func Open(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				f.Close()
				return nil, fmt.Errorf("history: %w", err)
			}
		}
	}
	return &Writer{f: f, path: path, now: time.Now}, nil
}

// Path is the file's path ("" for a nil Writer).
func (w *Writer) Path() string {
	if w == nil {
		return ""
	}
	return w.path
}

// Write appends r as one line in one write; a zero r.Time is set to now.
func (w *Writer) Write(r Record) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return fmt.Errorf("history: %s is closed", w.path)
	}
	if r.Time.IsZero() {
		r.Time = w.now()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if _, err := w.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// Close closes the file; later writes fail.
func (w *Writer) Close() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// ReadFile reads a history file (Read).
func ReadFile(path string) ([]Record, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return Read(f)
}

// Read reads the records of a history, in file order. A line that is not
// a record (a torn write, an unknown kind) is skipped with a note naming
// it; blank lines are skipped silently.
func Read(r io.Reader) (recs []Record, notes []string, err error) {
	br := bufio.NewReader(r)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			torn := b[len(b)-1] != '\n'
			if b = bytes.TrimSpace(b); len(b) > 0 {
				var rec Record
				switch jerr := json.Unmarshal(b, &rec); {
				case jerr != nil && torn:
					notes = append(notes, fmt.Sprintf("line %d: skipped a torn last line (%d bytes; the writer stopped mid-line)", line, len(b)))
				case jerr != nil:
					notes = append(notes, fmt.Sprintf("line %d: skipped, not a record: %v", line, jerr))
				case !knownKind(rec.Kind):
					notes = append(notes, fmt.Sprintf("line %d: skipped, unknown kind %q", line, rec.Kind))
				default:
					recs = append(recs, rec)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return recs, notes, nil
		}
		if err != nil {
			return recs, notes, err
		}
	}
}

func knownKind(k string) bool {
	switch k {
	case KindStart, KindTrain, KindValidation, KindSentinel, KindRollback:
		return true
	}
	return false
}

// Surviving is the path the run took in the end: the records in file
// order, where a rollback or start record at step L first drops every
// earlier train, validation and sentinel record of a step after L (the
// abandoned steps'). The rollback and start records themselves stay. A
// train record at a step S not after the newest train record kept is a
// rollback without its record (a cluster's recovery from a shard's
// failure): it first drops the records of steps from S on.
func Surviving(recs []Record) []Record {
	out := make([]Record, 0, len(recs))
	lastTrain := int64(-1)
	drop := func(after int64) {
		kept := out[:0]
		lastTrain = -1
		for _, o := range out {
			if o.Kind == KindRollback || o.Kind == KindStart || o.Step <= after {
				kept = append(kept, o)
				if o.Kind == KindTrain {
					lastTrain = o.Step
				}
			}
		}
		out = kept
	}
	for _, r := range recs {
		switch {
		case r.Kind == KindRollback || r.Kind == KindStart:
			drop(r.Step)
		case r.Kind == KindTrain && r.Step <= lastTrain:
			drop(r.Step - 1)
		}
		if r.Kind == KindTrain {
			lastTrain = r.Step
		}
		out = append(out, r)
	}
	return out
}
