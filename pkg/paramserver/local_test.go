package paramserver

import (
	"errors"
	"slices"
	"testing"
)

// TestLocal: a new Local holds version 0; Checkpoint is taken at the
// shard's version only (ErrStale, ErrFuture otherwise); Held lists the
// saved versions newest first; Restore goes back to any of them and is
// ErrRestore for one it does not hold; FetchState answers at the shard's
// version only. Nothing a refused call touches changes.
func TestLocal(t *testing.T) {
	ctx := testCtx(t)
	cfg := DefaultConfig()
	cfg.Hi, cfg.Workers = 3, 1
	l, err := NewLocal(cfg, []float32{1, 2, 3}, NewMemStepStore())
	if err != nil {
		t.Fatal(err)
	}
	held := func() []int64 {
		t.Helper()
		h, err := l.Held(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if h := held(); !slices.Equal(h, []int64{0}) {
		t.Fatalf("a new shard holds %v, want [0]", h)
	}
	kind := func(err error) error {
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("%v is not a *paramserver.Error", err)
		}
		return pe.Kind
	}
	for step := int64(0); step < 2; step++ {
		if err := l.S.Push(step, 0, []float32{1, 1, 1}, nil); err != nil {
			t.Fatal(err)
		}
		if err := l.Apply(ctx, step, []int{0}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := l.Version(ctx); v != 2 {
		t.Fatalf("version %d after 2 steps", v)
	}
	if err := l.Checkpoint(ctx, 1, nil); kind(err) != ErrStale {
		t.Fatalf("Checkpoint(1) at version 2: %v", err)
	}
	if err := l.Checkpoint(ctx, 3, nil); kind(err) != ErrFuture {
		t.Fatalf("Checkpoint(3) at version 2: %v", err)
	}
	if h := held(); !slices.Equal(h, []int64{0}) {
		t.Fatalf("refused checkpoints saved something: %v", h)
	}
	if err := l.Checkpoint(ctx, 2, nil); err != nil {
		t.Fatal(err)
	}
	if h := held(); !slices.Equal(h, []int64{2, 0}) {
		t.Fatalf("Held %v, want [2 0]", h)
	}
	at2, _, err := l.S.Pull(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	at2 = slices.Clone(at2)
	if _, _, err := l.FetchState(ctx, 1); err == nil {
		t.Fatal("FetchState of step 1 at version 2 answered")
	}
	kindName, slots, err := l.FetchState(ctx, 2)
	if err != nil || kindName != "rmsprop" || len(slots) == 0 {
		t.Fatalf("FetchState(2): %q %d slots %v", kindName, len(slots), err)
	}

	if err := l.Restore(ctx, 1); kind(err) != ErrRestore {
		t.Fatalf("Restore of a step never saved: %v", err)
	}
	if v, _ := l.Version(ctx); v != 2 {
		t.Fatalf("a refused Restore moved the version to %d", v)
	}
	if err := l.Restore(ctx, 0); err != nil {
		t.Fatal(err)
	}
	p, _, err := l.S.Pull(ctx, 0)
	if err != nil || !slices.Equal(p, []float32{1, 2, 3}) {
		t.Fatalf("after Restore(0): %v %v, want the initial parameters", p, err)
	}
	if err := l.Restore(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if p, _, err := l.S.Pull(ctx, 2); err != nil || !slices.Equal(p, at2) {
		t.Fatalf("after Restore(2): %v %v, want %v", p, err, at2)
	}
}
