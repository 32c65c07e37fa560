package checkpoint

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestPruneKeepingProtects: PruneKeeping keeps the keep newest and the
// protected steps' files (model, state, EMA), deletes the rest and never
// best.*; Prune protects nothing.
func TestPruneKeepingProtects(t *testing.T) {
	dir := t.TempDir()
	save(t, dir, run(t, 1), 1, 2, 3, 4, 5)
	if err := os.WriteFile(filepath.Join(dir, BestModelFile), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := PruneKeeping(dir, 1, 2); err != nil {
		t.Fatal(err)
	}
	if got, _ := Steps(dir); !reflect.DeepEqual(got, []int64{5, 2}) {
		t.Fatalf("steps %v, want [5 2]", got)
	}
	for _, f := range []string{ModelFileName(2), StateFileName(2), EMAFileName(2), BestModelFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if err := Prune(dir, 1); err != nil {
		t.Fatal(err)
	}
	if got, _ := Steps(dir); !reflect.DeepEqual(got, []int64{5}) {
		t.Fatalf("steps %v after Prune, want [5]", got)
	}
}

// TestRemoveAfter deletes exactly the checkpoints after the step.
func TestRemoveAfter(t *testing.T) {
	dir := t.TempDir()
	save(t, dir, run(t, 1), 2, 4, 6, 8)
	removed, err := RemoveAfter(dir, 4)
	if err != nil || !reflect.DeepEqual(removed, []int64{8, 6}) {
		t.Fatalf("removed %v, %v", removed, err)
	}
	if got, _ := Steps(dir); !reflect.DeepEqual(got, []int64{4, 2}) {
		t.Fatalf("steps %v, want [4 2]", got)
	}
	if _, err := os.Stat(filepath.Join(dir, EMAFileName(6))); !os.IsNotExist(err) {
		t.Fatalf("the EMA file of step 6: %v", err)
	}
}
