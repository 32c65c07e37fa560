package paramserver

import (
	"os"
	"path/filepath"
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
