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
	// A corrupt file is an error, not a silent empty state.
	os.WriteFile(filepath.Join(dir, "shard-0-000000000003.safetensors"), []byte("junk"), 0o644)
	if _, _, err := fs.Load(0); err == nil {
		t.Fatal("corrupt state file accepted")
	}
}
