package checkpoint

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/safetensors"
)

// record is FileRecord or MemRecord as the coordinator sees them.
type record interface {
	LastCheckpoint() (int64, bool, error)
	SetLastCheckpoint(int64) error
	Held() ([]int64, error)
}

// writeModel writes a readable model file of step into dir.
func writeModel(t *testing.T, dir string, step int64) {
	t.Helper()
	f := safetensors.New()
	if err := f.AddF32("w", []int{1}, []float32{float32(step)}); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteFileAtomic(filepath.Join(dir, ModelFileName(step))); err != nil {
		t.Fatal(err)
	}
}

func held(t *testing.T, r record) []int64 {
	t.Helper()
	h, err := r.Held()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRecordRule: both records keep the same list: the newest last, later
// steps dropped when an earlier one is recorded (a rollback), at most
// keptRecords of them.
func TestRecordRule(t *testing.T) {
	dir := t.TempDir()
	for i := int64(1); i <= keptRecords+8; i++ {
		writeModel(t, dir, i)
	}
	for name, r := range map[string]record{"file": FileRecord{Dir: dir}, "mem": &MemRecord{}} {
		t.Run(name, func(t *testing.T) {
			if _, ok, err := r.LastCheckpoint(); ok || err != nil {
				t.Fatalf("a new record has a checkpoint (%v, %v)", ok, err)
			}
			for _, s := range []int64{2, 4, 6} {
				if err := r.SetLastCheckpoint(s); err != nil {
					t.Fatal(err)
				}
			}
			if h := held(t, r); !slices.Equal(h, []int64{6, 4, 2}) {
				t.Fatalf("Held %v, want [6 4 2]", h)
			}
			if err := r.SetLastCheckpoint(3); err != nil { // rolled back to 2, then checkpointed 3
				t.Fatal(err)
			}
			if s, ok, err := r.LastCheckpoint(); s != 3 || !ok || err != nil {
				t.Fatalf("LastCheckpoint %d %v %v, want 3", s, ok, err)
			}
			if h := held(t, r); !slices.Equal(h, []int64{3, 2}) {
				t.Fatalf("Held after a rollback %v, want [3 2]", h)
			}
			for s := int64(4); s <= keptRecords+8; s++ {
				if err := r.SetLastCheckpoint(s); err != nil {
					t.Fatal(err)
				}
			}
			if h := held(t, r); len(h) != keptRecords || h[0] != keptRecords+8 || h[len(h)-1] != 9 {
				t.Fatalf("Held %v, want the %d newest, %d down to 9", h, keptRecords, keptRecords+8)
			}
		})
	}
}

// TestFileRecord: the file's format, a record from before the list of
// steps, a damaged record, and a checkpoint whose model file is gone.
func TestFileRecord(t *testing.T) {
	dir := t.TempDir()
	r := FileRecord{Dir: dir}
	for _, s := range []int64{2, 4} {
		writeModel(t, dir, s)
		if err := r.SetLastCheckpoint(s); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "cluster-checkpoint.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil || got["step"] != 4.0 || got["model"] != "ckpt-00000004.safetensors" || len(got["steps"].([]any)) != 2 {
		t.Fatalf("cluster-checkpoint.json is %s (%v)", b, err)
	}
	if err := os.Remove(filepath.Join(dir, ModelFileName(4))); err != nil {
		t.Fatal(err)
	}
	if h := held(t, r); !slices.Equal(h, []int64{2}) {
		t.Fatalf("Held without step 4's model file: %v, want [2]", h)
	}

	if err := os.WriteFile(r.path(), []byte(`{"step": 2, "model": "ckpt-00000002.safetensors"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if h := held(t, r); !slices.Equal(h, []int64{2}) {
		t.Fatalf("Held of a record with only its newest step: %v, want [2]", h)
	}

	if err := os.WriteFile(r.path(), []byte(`{"step": 2, "mod`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.LastCheckpoint(); err == nil || !strings.Contains(err.Error(), r.path()) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("a damaged record: %v", err)
	}
	if err := r.SetLastCheckpoint(6); err == nil {
		t.Fatal("SetLastCheckpoint replaced a damaged record")
	}
	for _, bad := range []string{
		`{"step": 4, "model": "ckpt-00000002.safetensors"}`,                  // the model of another step
		`{"step": 4, "model": "ckpt-00000004.safetensors", "steps": [4, 2]}`, // not increasing
		`{"step": -1, "model": "ckpt--0000001.safetensors"}`,
	} {
		if err := os.WriteFile(r.path(), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Held(); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("%s: Held answered %v, want the record reported damaged", bad, err)
		}
	}
}

// TestMemRecordLost: Lost steps are left out of Held.
func TestMemRecordLost(t *testing.T) {
	m := &MemRecord{Lost: map[int64]bool{4: true}}
	for _, s := range []int64{2, 4, 6} {
		if err := m.SetLastCheckpoint(s); err != nil {
			t.Fatal(err)
		}
	}
	if h := held(t, m); !slices.Equal(h, []int64{6, 2}) {
		t.Fatalf("Held %v, want [6 2]", h)
	}
}
