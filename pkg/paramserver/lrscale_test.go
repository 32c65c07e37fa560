package paramserver

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/logitpair/logitpair/pkg/optim"
)

// TestCommitLogLRScale: both logs keep each entry's learning-rate scale,
// store 1 as 0 (the form every entry from before the scale has), refuse a
// negative, NaN or infinite one, and the file log writes an unscaled entry
// in exactly the bytes of the format before the scale existed.
func TestCommitLogLRScale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "commit.log")
	fl, err := OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	in := []Entry{
		{Step: 0, Workers: []int{0, 1}},
		{Step: 1, Workers: []int{1}, LRScale: 1},
		{Step: 2, Workers: []int{0, 2}, LRScale: 0.5},
		{Step: 3, Workers: []int{2}, LRScale: 0.1},
	}
	want := slices.Clone(in)
	want[1].LRScale = 0 // 1 is stored as 0
	for _, l := range []CommitLog{NewMemLog(), fl} {
		for _, e := range in {
			if err := l.Append(e); err != nil {
				t.Fatal(err)
			}
		}
		for _, bad := range []float64{-0.5, math.NaN(), math.Inf(1)} {
			if err := l.Append(Entry{Step: 4, Workers: []int{0}, LRScale: bad}); err == nil {
				t.Errorf("%T: Append with scale %v: no error", l, bad)
			}
		}
		if got := mustEntries(t, l); !entriesEqual(got, want) {
			t.Errorf("%T: entries %v, want %v", l, got, want)
		}
	}
	if err := fl.TruncateAfter(2); err != nil { // rewrites the file
		t.Fatal(err)
	}
	fl.Close()
	re, err := OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	if got := mustEntries(t, re); !entriesEqual(got, want[:3]) {
		t.Errorf("reopened after truncation: %v, want %v", got, want[:3])
	}
	// The two unscaled records are 12 + 4·workers bytes of payload, as
	// before the scale existed; the scaled one 8 more.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(fileMagic)) + (recHeader + 12 + 8) + (recHeader + 12 + 4) + (recHeader + 12 + 8 + 8)
	if fi.Size() != size {
		t.Errorf("file of %d bytes, want %d", fi.Size(), size)
	}
	for _, e := range []Entry{{Step: 7, Workers: []int{3}}, {Step: 7, Workers: []int{3}, LRScale: 1}} {
		if got := len(encodeRecord(e)); got != recHeader+12+4 {
			t.Errorf("record of %+v has %d bytes, want the old format's %d", e, got, recHeader+12+4)
		}
	}
	for _, s := range []float64{0, 1, 0.5, 3} {
		if got, want := LRScaleOf(s), map[float64]float64{0: 1, 1: 1, 0.5: 0.5, 3: 3}[s]; got != want {
			t.Errorf("LRScaleOf(%v) = %v, want %v", s, got, want)
		}
	}
}

// TestApplyScaled: a step applied with scale s moves the parameters as the
// same step under a learning rate s times larger (bit for bit where s·lr is
// exact), scale 1 is Apply, and a resend of the last step with another
// scale is refused like one with another set.
func TestApplyScaled(t *testing.T) {
	const n = 8
	mk := func(lr float64) *Shard {
		cfg := baseConfig(optim.KindRMSProp, n, 2)
		cfg.Schedule, cfg.LR = "constant", lr
		return mustShard(t, cfg, vec(n, 1, 5), nil)
	}
	run := func(s *Shard, scale float64) {
		for step := int64(0); step < 3; step++ {
			mustPush(t, s, step, 0, vec(n, 1, 6, uint64(step)), nil)
			mustPush(t, s, step, 1, vec(n, 1, 7, uint64(step)), nil)
			if err := s.ApplyScaled(step, []int{0, 1}, scale); err != nil {
				t.Fatalf("ApplyScaled(%d, scale %v): %v", step, scale, err)
			}
		}
	}
	half, lower, one, plain := mk(0.02), mk(0.01), mk(0.02), mk(0.02)
	run(half, 0.5)
	run(lower, 0)
	run(one, 1)
	for step := int64(0); step < 3; step++ {
		mustPush(t, plain, step, 0, vec(n, 1, 6, uint64(step)), nil)
		mustPush(t, plain, step, 1, vec(n, 1, 7, uint64(step)), nil)
		mustApply(t, plain, step, []int{0, 1})
	}
	sameState(t, "scale 0.5 vs lr halved", half.Checkpoint(), lower.Checkpoint())
	sameState(t, "scale 1 vs Apply", one.Checkpoint(), plain.Checkpoint())
	if slices.Equal(half.Checkpoint().Params, plain.Checkpoint().Params) {
		t.Fatal("scale 0.5 gave the unscaled parameters")
	}

	// Resends of the last applied step: the same scale (1 and 0 alike) is
	// acknowledged, another is refused.
	if err := one.ApplyScaled(2, []int{0, 1}, 0); err != nil {
		t.Errorf("resend with scale 0 after 1: %v", err)
	}
	if err := half.ApplyScaled(2, []int{0, 1}, 0.5); err != nil {
		t.Errorf("resend with the applied scale: %v", err)
	}
	if err := half.ApplyScaled(2, []int{0, 1}, 1); !errors.Is(err, ErrSetMismatch) {
		t.Errorf("resend with another scale: %v, want ErrSetMismatch", err)
	}
	// A bad scale changes nothing.
	before := half.Checkpoint()
	mustPush(t, half, 3, 0, vec(n, 1, 8), nil)
	for _, bad := range []float64{-1, math.NaN(), math.Inf(1)} {
		if err := half.ApplyScaled(3, []int{0}, bad); !errors.Is(err, ErrBadScale) {
			t.Errorf("scale %v: %v, want ErrBadScale", bad, err)
		}
	}
	sameState(t, "after refused scales", half.Checkpoint(), before)
}

// TestReplayRollbackWithScale: a run rolled back to a checkpoint (shards
// restored, log truncated) that goes on with a lower learning-rate scale is
// reproduced bit for bit by replaying its final log from the start; the
// same log without the scales diverges.
func TestReplayRollbackWithScale(t *testing.T) {
	store := NewMemStore()
	log := NewMemLog()
	orig := newTestCluster(t, store)
	orig.run(t, log, 0, 4, replaySet)
	for _, s := range orig.shards {
		if err := s.Save(); err != nil {
			t.Fatal(err)
		}
	}
	orig.run(t, log, 4, 9, replaySet) // the history the rollback abandons
	for _, s := range orig.shards {
		st, _, _ := store.Load(s.Config().Index)
		if err := s.Restore(st); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.TruncateAfter(3); err != nil {
		t.Fatal(err)
	}
	orig.runScaled(t, log, 4, 7, replaySet, 0.5)
	orig.runScaled(t, log, 7, 10, replaySet, 0.25)
	entries := mustEntries(t, log)
	if len(entries) != 10 || entries[3].LRScale != 0 || entries[4].LRScale != 0.5 || entries[9].LRScale != 0.25 {
		t.Fatalf("log %v", entries)
	}

	fresh := newTestCluster(t, nil)
	if err := Replay(entries, fresh.shards, fresh.grads(t)); err != nil {
		t.Fatal(err)
	}
	sameCluster(t, "replayed", fresh, orig)

	unscaled := slices.Clone(entries)
	for i := range unscaled {
		unscaled[i].LRScale = 0
	}
	other := newTestCluster(t, nil)
	if err := Replay(unscaled, other.shards, other.grads(t)); err != nil {
		t.Fatal(err)
	}
	if slices.Equal(other.states()[0].Params, orig.states()[0].Params) {
		t.Error("the log without its scales replayed to the same parameters")
	}
}

// TestFileStoreSaveKeeping: the versions SaveKeeping names survive the
// pruning to the Keep newest; the others do not.
func TestFileStoreSaveKeeping(t *testing.T) {
	fs, err := NewFileStore(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(optim.KindSGD, 4, 1)
	s := mustShard(t, cfg, vec(4, 1, 3), nil)
	for step := int64(0); step < 6; step++ {
		if err := fs.SaveKeeping(s.Checkpoint(), []int64{1}); err != nil {
			t.Fatal(err)
		}
		mustPush(t, s, step, 0, vec(4, 1, uint64(step)), nil)
		mustApply(t, s, step, []int{0})
	}
	held, err := fs.Held(0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{5, 4, 1}; !slices.Equal(held, want) {
		t.Errorf("held %v, want %v (the 2 newest and the kept 1)", held, want)
	}
	// Once no longer named, the kept version goes with the next save.
	if err := fs.Save(s.Checkpoint()); err != nil {
		t.Fatal(err)
	}
	if held, _ := fs.Held(0); !slices.Equal(held, []int64{6, 5}) {
		t.Errorf("held %v after a save keeping nothing, want [6 5]", held)
	}
}
