package checkpoint

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadPointer reads a checkpoint folder's latest.json. ReadPointer must
// fail, or return a step ≥ 0 and plain file names (model and state given),
// which Save's encoding writes back to the same pointer.
func FuzzReadPointer(f *testing.F) {
	for _, p := range []Pointer{
		{Step: 1000, Model: ModelFileName(1000), State: StateFileName(1000)},
		{Step: 7, Model: ModelFileName(7), State: StateFileName(7), EMA: EMAFileName(7)},
	} {
		b, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "latest.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := ReadPointer(dir)
		if err != nil {
			if p != (Pointer{}) {
				t.Fatalf("ReadPointer failed (%v) but returned %+v", err, p)
			}
			return
		}
		if p.Step < 0 {
			t.Fatalf("negative step %d", p.Step)
		}
		for _, name := range []string{p.Model, p.State, p.EMA} {
			if name == p.EMA && name == "" {
				continue
			}
			if name == "" || filepath.Base(name) != name || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
				t.Fatalf("file %q is not a plain file name", name)
			}
		}
		out, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		again, err := ReadPointer(dir)
		if err != nil || again != p {
			t.Fatalf("round trip: %+v became %+v (%v)", p, again, err)
		}
	})
}

// FuzzLastCheckpoint reads the coordinator's cluster-checkpoint.json.
// LastCheckpoint must fail, or report a step ≥ 0 that SetLastCheckpoint
// writes back to the same answer.
func FuzzLastCheckpoint(f *testing.F) {
	dir := f.TempDir()
	for _, step := range []int64{0, 1000} {
		if err := (FileRecord{Dir: dir}).SetLastCheckpoint(step); err != nil {
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
		fc := FileRecord{Dir: dir}
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
