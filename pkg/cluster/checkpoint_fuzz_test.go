package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLastCheckpoint reads the coordinator's cluster-checkpoint.json.
// LastCheckpoint must fail, or report a step ≥ 0 that SetLastCheckpoint
// writes back to the same answer.
func FuzzLastCheckpoint(f *testing.F) {
	dir := f.TempDir()
	for _, step := range []int64{0, 1000} {
		if err := (FileCheckpoints{Dir: dir}).SetLastCheckpoint(step); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "cluster-checkpoint.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	path := filepath.Join(dir, "cluster-checkpoint.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		fc := FileCheckpoints{Dir: dir}
		step, ok, err := fc.LastCheckpoint()
		if err != nil {
			if ok || step != 0 {
				t.Fatalf("error %v with step %d, ok %v", err, step, ok)
			}
			return
		}
		if !ok || step < 0 {
			t.Fatalf("an existing file gave step %d, ok %v", step, ok)
		}
		if err := fc.SetLastCheckpoint(step); err != nil {
			t.Fatal(err)
		}
		again, ok, err := fc.LastCheckpoint()
		if err != nil || !ok || again != step {
			t.Fatalf("step %d written back reads as %d (%v, %v)", step, again, ok, err)
		}
	})
}
