package paramserver

import (
	"errors"
	"fmt"
	"strings"
)

// Kinds of *Error (test with errors.Is).
var (
	// ErrStale: the step is older than the shard's version (Push, Pull).
	ErrStale = errors.New("stale step")
	// ErrFuture: the step is newer than the shard's version (Push, Apply).
	ErrFuture = errors.New("future step")
	// ErrLength: a gradient or buffer slice of the wrong length (Push).
	ErrLength = errors.New("wrong length")
	// ErrNonFinite: a NaN or ±Inf in a gradient or buffer slice (Push).
	ErrNonFinite = errors.New("non-finite value")
	// ErrUnknownWorker: a worker outside [0, Workers) (Push, Apply).
	ErrUnknownWorker = errors.New("unknown worker")
	// ErrConflict: a second push by the same worker for the same step with
	// different content (Push). The first push is kept.
	ErrConflict = errors.New("conflicting duplicate push")
	// ErrMissing: Apply names workers that have not pushed for the step;
	// Error.Workers lists them.
	ErrMissing = errors.New("missing gradients")
	// ErrBadSet: Apply's set is empty, unsorted or has repeats.
	ErrBadSet = errors.New("bad worker set")
	// ErrBadScale: Apply's learning-rate scale is negative, NaN or ±Inf.
	ErrBadScale = errors.New("bad learning-rate scale")
	// ErrSetMismatch: Apply resent for the last applied step names a
	// different set (or learning-rate scale) than the one applied.
	ErrSetMismatch = errors.New("worker set differs from the applied one")
	// ErrRestore: Restore was given a state that does not fit the shard.
	ErrRestore = errors.New("state does not fit the shard")
	// ErrClosed: the shard was closed.
	ErrClosed = errors.New("shard closed")
)

// Error is the typed error of Shard's methods. Kind is one of the Err*
// values above (errors.Is(err, ErrStale) works through it); Version is the
// shard's version when the error was made, so a worker answered ErrStale
// knows where to catch up.
type Error struct {
	Op      string // "push", "pull", "apply", "restore"
	Kind    error
	Shard   int
	Step    int64
	Version int64
	Worker  int   // the pushing worker; −1 when not applicable
	Workers []int // ErrMissing: the workers that did not push
	Detail  string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "paramserver: shard %d: %s step %d", e.Shard, e.Op, e.Step)
	if e.Worker >= 0 {
		fmt.Fprintf(&b, " worker %d", e.Worker)
	}
	fmt.Fprintf(&b, ": %v (shard at version %d)", e.Kind, e.Version)
	if len(e.Workers) > 0 {
		fmt.Fprintf(&b, ": workers %v", e.Workers)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Unwrap returns Kind.
func (e *Error) Unwrap() error { return e.Kind }
