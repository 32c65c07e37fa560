package paramserver

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileStoreRoundTripAndRetention(t *testing.T) {
	dir := t.TempDir()
	fs, err := NewFileStore(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig("rmsprop", 6, 2)
	cfg.Hi = 6
	s := mustShard(t, cfg, vec(6, 1, 3), nil)
	for step := int64(0); step < 3; step++ {
		mustPush(t, s, step, 0, vec(6, 1, uint64(step)), nil)
		mustPush(t, s, step, 1, vec(6, 1, uint64(step+9)), nil)
		mustApply(t, s, step, []int{0, 1})
		if err := fs.Save(s.Checkpoint()); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := filepath.Glob(filepath.Join(dir, "shard-0-*"))
	if len(m) != 2 {
		t.Fatalf("kept %v, want the 2 newest", m)
	}
	st, ok, err := fs.Load(0)
	if err != nil || !ok || st.Version != 3 {
		t.Fatalf("latest %v %v %v", st.Version, ok, err)
	}
	want := s.Checkpoint()
	if !sameBits(st.Params, want.Params) || st.OptimKind != want.OptimKind || len(st.Optim) != len(want.Optim) {
		t.Fatalf("state differs after the round trip")
	}
	if _, ok, _ := fs.LoadStep(0, 1); ok {
		t.Fatal("version 1 should have been pruned")
	}
	if st2, ok, _ := fs.LoadStep(0, 2); !ok || st2.Version != 2 {
		t.Fatal("version 2 missing")
	}
	if err := s.Restore(st); err != nil {
		t.Fatalf("restoring a saved state: %v", err)
	}
	// A corrupt newest file is reported and skipped: Load falls back to the
	// older intact one, Held leaves it out, LoadStep of it is an error, and
	// the file stays in place.
	bad := filepath.Join(dir, "shard-0-000000000003.safetensors")
	os.WriteFile(bad, []byte("junk"), 0o644)
	var reported []string
	fs.OnCorrupt = func(path string, err error) { reported = append(reported, path) }
	st, ok, err = fs.Load(0)
	if err != nil || !ok || st.Version != 2 {
		t.Fatalf("Load with a corrupt newest file: version %d ok %v err %v, want version 2", st.Version, ok, err)
	}
	if len(reported) != 1 || reported[0] != bad {
		t.Fatalf("OnCorrupt heard %v, want [%s]", reported, bad)
	}
	if held, err := fs.Held(0); err != nil || len(held) != 1 || held[0] != 2 {
		t.Fatalf("Held = %v %v, want [2]", held, err)
	}
	if _, _, err := fs.LoadStep(0, 3); err == nil {
		t.Fatal("corrupt state file accepted by LoadStep")
	}
	if _, err := os.Stat(bad); err != nil {
		t.Fatalf("the corrupt file was removed: %v", err)
	}
	// A file whose content names another version than its name is not held.
	two, _ := os.ReadFile(filepath.Join(dir, "shard-0-000000000002.safetensors"))
	os.WriteFile(filepath.Join(dir, "shard-0-000000000004.safetensors"), two, 0o644)
	if held, _ := fs.Held(0); len(held) != 1 || held[0] != 2 {
		t.Fatalf("Held = %v with a mislabelled file, want [2]", held)
	}
}

// TestStateOfAnotherPartitionIsRefused: a shard whose directory holds a state
// saved under another partition (here 2 shards of the small layout, the
// shard now being shard 0 of 3) refuses to start, naming both ranges and
// what to do, and leaves the file as it was.
func TestStateOfAnotherPartitionIsRefused(t *testing.T) {
	l := smallLayout()
	dir := t.TempDir()
	fs, err := NewFileStore(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	config := func(shards int) ShardConfig {
		parts, err := Partition(l, shards)
		if err != nil {
			t.Fatal(err)
		}
		return ConfigFor(baseConfig("rmsprop", l.Total, 1), parts[0], 0)
	}
	two := config(2)
	s := mustShard(t, two, vec(two.Hi-two.Lo, 1, 5), fs)
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "shard-0-000000000000.safetensors")
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	three := config(3)
	_, err = NewShard(three, vec(three.Hi-three.Lo, 1, 5), fs)
	if !errors.Is(err, ErrRestore) {
		t.Fatalf("NewShard over a state of [0,250): %v, want ErrRestore", err)
	}
	for _, want := range []string{"[0,250)", "[0,167)", "another partition", "empty directories"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
		t.Errorf("the saved state changed (%v)", err)
	}
}
