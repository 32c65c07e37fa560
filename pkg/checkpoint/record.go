package checkpoint

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/logitpair/logitpair/pkg/atomicfile"
	"github.com/logitpair/logitpair/pkg/safetensors"
)

// RecordFile is the name, in the coordinator's --dir, of its record of
// consistent checkpoints (FileRecord).
const RecordFile = "cluster-checkpoint.json"

// FileRecord is the coordinator's durable record of its consistent
// checkpoints (a coordinator.CheckpointStore): Dir/cluster-checkpoint.json,
// written atomically, naming the newest ("step", "model") and every
// recorded one ("steps", oldest first; a record written before that list
// existed has only "step"). The checkpoints' model files are in Dir too,
// named by ModelFileName.
type FileRecord struct{ Dir string }

type recordJSON struct {
	Step  int64   `json:"step"`
	Model string  `json:"model"`
	Steps []int64 `json:"steps,omitempty"`
}

func (f FileRecord) path() string { return filepath.Join(f.Dir, RecordFile) }

func (f FileRecord) read() (recordJSON, bool, error) {
	b, err := os.ReadFile(f.path())
	if os.IsNotExist(err) {
		return recordJSON{}, false, nil
	}
	if err != nil {
		return recordJSON{}, false, err
	}
	var r recordJSON
	if err := json.Unmarshal(b, &r); err != nil {
		return recordJSON{}, false, fmt.Errorf("%s: %w (the coordinator's record of its checkpoints is damaged: restore it from a backup, or delete it to roll back only to steps every shard holds, at worst the start)", f.path(), err)
	}
	// SetLastCheckpoint writes these fields consistently; anything else is
	// damage, and a rollback to a step no shard holds would never succeed.
	damaged := r.Step < 0 || r.Model != ModelFileName(r.Step)
	for i, s := range r.Steps {
		damaged = damaged || s < 0 || (i > 0 && s <= r.Steps[i-1])
	}
	if len(r.Steps) > 0 && r.Steps[len(r.Steps)-1] != r.Step {
		damaged = true
	}
	if damaged {
		return recordJSON{}, false, fmt.Errorf("%s is damaged: step %d, model %q, steps %v (want a step ≥ 0, its model file name, and increasing steps ending at it): restore it from a backup, or delete it to roll back only to steps every shard holds, at worst the start", f.path(), r.Step, r.Model, r.Steps)
	}
	if len(r.Steps) == 0 {
		r.Steps = []int64{r.Step}
	}
	return r, true, nil
}

// LastCheckpoint implements coordinator.CheckpointStore.
func (f FileRecord) LastCheckpoint() (int64, bool, error) {
	r, ok, err := f.read()
	return r.Step, ok, err
}

// SetLastCheckpoint implements coordinator.CheckpointStore.
func (f FileRecord) SetLastCheckpoint(step int64) error {
	r, _, err := f.read()
	if err != nil {
		return err
	}
	r = recordJSON{Step: step, Model: ModelFileName(step), Steps: recordCheckpoint(r.Steps, step)}
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(f.path(), append(b, '\n'), 0o644)
}

// Held implements coordinator.CheckpointStore: the recorded checkpoints
// whose model file reads back intact, newest first.
func (f FileRecord) Held() ([]int64, error) {
	r, ok, err := f.read()
	if err != nil || !ok {
		return nil, err
	}
	var out []int64
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if _, err := safetensors.ReadFile(filepath.Join(f.Dir, ModelFileName(r.Steps[i]))); err == nil {
			out = append(out, r.Steps[i])
		}
	}
	return out, nil
}

// MemRecord is FileRecord in memory (tests, in-process clusters). Lost,
// when set, makes Held leave those steps out (tests: a checkpoint whose
// files were lost).
type MemRecord struct {
	mu    sync.Mutex
	steps []int64 // recorded, oldest first
	Lost  map[int64]bool
}

// LastCheckpoint implements coordinator.CheckpointStore.
func (m *MemRecord) LastCheckpoint() (int64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.steps) == 0 {
		return 0, false, nil
	}
	return m.steps[len(m.steps)-1], true, nil
}

// SetLastCheckpoint implements coordinator.CheckpointStore.
func (m *MemRecord) SetLastCheckpoint(s int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.steps = recordCheckpoint(m.steps, s)
	return nil
}

// Held implements coordinator.CheckpointStore.
func (m *MemRecord) Held() ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []int64
	for i := len(m.steps) - 1; i >= 0; i-- {
		if !m.Lost[m.steps[i]] {
			out = append(out, m.steps[i])
		}
	}
	return out, nil
}

// recordCheckpoint is the one rule of the coordinator's checkpoint record:
// step becomes the newest, records of later steps (a history abandoned by a
// rollback) are dropped, and at most keptRecords are kept, oldest first.
func recordCheckpoint(steps []int64, step int64) []int64 {
	out := steps[:0:0]
	for _, s := range steps {
		if s < step {
			out = append(out, s)
		}
	}
	out = append(out, step)
	if len(out) > keptRecords {
		out = out[len(out)-keptRecords:]
	}
	return out
}

// keptRecords bounds the coordinator's list of consistent checkpoints.
const keptRecords = 32
