package paramserver

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/safetensors"
)

// StepStore keeps shard states per version, so the cluster can roll back
// to a consistent checkpoint even when some shards saved a newer state
// before a crash.
type StepStore interface {
	Store
	// LoadStep returns shard index's state saved at version step.
	LoadStep(index int, step int64) (ShardState, bool, error)
	// Held lists the versions of shard index whose saved state reads back
	// intact (LoadStep succeeds and the state says it is shard index at
	// that version), newest first.
	Held(index int) ([]int64, error)
	// SaveKeeping is Save, except that the versions in keep are spared
	// by the pruning of old versions that may follow the write (the
	// coordinator's rollback target, which may be older than the states a
	// store keeps otherwise).
	SaveKeeping(st ShardState, keep []int64) error
}

// FileStore persists shard states as safetensors files in a directory:
// shard-<index>-<version>.safetensors holding "params", "buffers", "ema" and
// "optim.<slot>" (F32), with the range, version and optimizer kind as
// metadata. Files are written atomically; the Keep newest versions per shard
// are kept, and those a SaveKeeping names.
type FileStore struct {
	Dir  string
	Keep int
	// OnCorrupt, when set, hears of every state file that does not read
	// back (Load skips it and falls back to an older one; Held leaves it
	// out). The file is left in place for the operator to inspect.
	OnCorrupt func(path string, err error)
	mu        sync.Mutex
}

var _ StepStore = (*FileStore)(nil)

// NewFileStore returns a FileStore keeping keep versions per shard (at least 2).
func NewFileStore(dir string, keep int) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &FileStore{Dir: dir, Keep: max(keep, 2)}, nil
}

func (f *FileStore) path(index int, step int64) string {
	return filepath.Join(f.Dir, fmt.Sprintf("shard-%d-%012d.safetensors", index, step))
}

// Save implements Store.
func (f *FileStore) Save(st ShardState) error { return f.SaveKeeping(st, nil) }

// SaveKeeping implements StepStore: it writes st, then removes the shard's
// versions beyond the Keep newest except those in keep.
func (f *FileStore) SaveKeeping(st ShardState, keep []int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	file := safetensors.New()
	add := func(name string, v []float32) error { return file.AddF32(name, []int{len(v)}, v) }
	if err := add("params", st.Params); err != nil {
		return err
	}
	if err := add("buffers", st.Buffers); err != nil {
		return err
	}
	if st.EMA != nil {
		if err := add("ema", st.EMA); err != nil {
			return err
		}
	}
	for _, ns := range st.Optim {
		if err := add("optim."+ns.Name, ns.Data); err != nil {
			return err
		}
	}
	m := file.Metadata
	m["format"] = "logitpair-shard-state-v1"
	m["index"], m["lo"], m["hi"] = strconv.Itoa(st.Index), strconv.Itoa(st.Lo), strconv.Itoa(st.Hi)
	m["buf_lo"], m["buf_hi"] = strconv.Itoa(st.BufLo), strconv.Itoa(st.BufHi)
	m["version"], m["optim"] = strconv.FormatInt(st.Version, 10), st.OptimKind
	if err := file.WriteFileAtomic(f.path(st.Index, st.Version)); err != nil {
		return err
	}
	return f.prune(st.Index, keep)
}

func (f *FileStore) versions(index int) ([]int64, error) {
	m, err := filepath.Glob(filepath.Join(f.Dir, fmt.Sprintf("shard-%d-*.safetensors", index)))
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, p := range m {
		s := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), fmt.Sprintf("shard-%d-", index)), ".safetensors")
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] > out[j] })
	return out, nil
}

func (f *FileStore) prune(index int, keep []int64) error {
	vs, err := f.versions(index)
	if err != nil {
		return err
	}
	for _, v := range vs[min(f.Keep, len(vs)):] {
		if slices.Contains(keep, v) {
			continue
		}
		if err := os.Remove(f.path(index, v)); err != nil {
			return err
		}
	}
	return nil
}

// Load implements Store: the newest saved state that reads back intact. A
// newer file that is corrupt, or that holds another shard or version than
// its name says, is reported to OnCorrupt and skipped, so a shard whose
// newest file was damaged serves its older intact one (the coordinator
// then rolls the cluster back to a version every shard holds).
func (f *FileStore) Load(index int) (ShardState, bool, error) {
	vs, err := f.versions(index)
	if err != nil {
		return ShardState{}, false, err
	}
	for _, v := range vs {
		st, ok, err := f.loadChecked(index, v)
		if ok {
			return st, true, nil
		}
		f.corrupt(f.path(index, v), err)
	}
	return ShardState{}, false, nil
}

// Held implements StepStore.
func (f *FileStore) Held(index int) ([]int64, error) {
	vs, err := f.versions(index)
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, v := range vs {
		if _, ok, err := f.loadChecked(index, v); ok {
			out = append(out, v)
		} else {
			f.corrupt(f.path(index, v), err)
		}
	}
	return out, nil
}

// loadChecked loads version v of shard index (LoadStep checks the file
// against its name and itself); ok is false with the reason otherwise.
func (f *FileStore) loadChecked(index int, v int64) (ShardState, bool, error) {
	st, ok, err := f.LoadStep(index, v)
	switch {
	case err != nil:
		return st, false, err
	case !ok:
		return st, false, fmt.Errorf("vanished while being read")
	}
	return st, true, nil
}

func (f *FileStore) corrupt(path string, err error) {
	if f.OnCorrupt != nil {
		f.OnCorrupt(path, err)
	}
}

// LoadStep implements StepStore.
func (f *FileStore) LoadStep(index int, step int64) (ShardState, bool, error) {
	p := f.path(index, step)
	file, err := safetensors.ReadFile(p)
	if os.IsNotExist(err) {
		return ShardState{}, false, nil
	}
	if err != nil {
		return ShardState{}, false, err
	}
	m := file.Metadata
	if m["format"] != "logitpair-shard-state-v1" {
		return ShardState{}, false, fmt.Errorf("%s: not a shard state (format %q)", p, m["format"])
	}
	st := ShardState{OptimKind: m["optim"]}
	ints := []*int{&st.Index, &st.Lo, &st.Hi, &st.BufLo, &st.BufHi}
	for i, k := range []string{"index", "lo", "hi", "buf_lo", "buf_hi"} {
		if *ints[i], err = strconv.Atoi(m[k]); err != nil {
			return st, false, fmt.Errorf("%s: metadata %s: %w", p, k, err)
		}
	}
	if st.Version, err = strconv.ParseInt(m["version"], 10, 64); err != nil {
		return st, false, fmt.Errorf("%s: metadata version: %w", p, err)
	}
	for _, name := range file.Names() {
		d, _, err := file.F32(name)
		if err != nil {
			return st, false, err
		}
		switch {
		case name == "params":
			st.Params = d
		case name == "buffers":
			st.Buffers = d
		case name == "ema":
			st.EMA = d
		case strings.HasPrefix(name, "optim."):
			st.Optim = append(st.Optim, optim.NamedState{Name: strings.TrimPrefix(name, "optim."), Data: d})
		default:
			return st, false, fmt.Errorf("%s: unexpected tensor %q", p, name)
		}
	}
	if st.Buffers == nil {
		st.Buffers = []float32{}
	}
	if err := checkStored(st, index, step, file.Has("params")); err != nil {
		return st, false, fmt.Errorf("%s: %w", p, err)
	}
	return st, true, nil
}

// checkStored checks a decoded state file against its name and itself:
// what Save writes is shard index's state at version step, with one value
// per parameter in every slot and one per buffer of its buffer range.
func checkStored(st ShardState, index int, step int64, hasParams bool) error {
	n := len(st.Params)
	switch {
	case st.Index != index || st.Version != step:
		return fmt.Errorf("holds shard %d at version %d, its name says shard %d at version %d", st.Index, st.Version, index, step)
	case !hasParams:
		return fmt.Errorf("no params tensor")
	case st.Lo < 0 || st.Hi < st.Lo || st.Hi-st.Lo != n:
		return fmt.Errorf("parameter range [%d,%d) with %d values", st.Lo, st.Hi, n)
	case st.BufLo < 0 || st.BufHi < st.BufLo || st.BufHi-st.BufLo != len(st.Buffers):
		return fmt.Errorf("buffer range [%d,%d) with %d values", st.BufLo, st.BufHi, len(st.Buffers))
	case st.EMA != nil && len(st.EMA) != n:
		return fmt.Errorf("EMA of %d values for %d parameters", len(st.EMA), n)
	}
	for _, s := range st.Optim {
		if len(s.Data) != n {
			return fmt.Errorf("optimizer slot %q of %d values for %d parameters", s.Name, len(s.Data), n)
		}
	}
	return nil
}

// MemStepStore is an in-memory StepStore.
type MemStepStore struct {
	mu     sync.Mutex
	states map[[2]int64]ShardState
	latest map[int]int64
}

// NewMemStepStore returns an empty MemStepStore.
func NewMemStepStore() *MemStepStore {
	return &MemStepStore{states: map[[2]int64]ShardState{}, latest: map[int]int64{}}
}

// Save implements Store.
func (m *MemStepStore) Save(st ShardState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.states[[2]int64{int64(st.Index), st.Version}] = st.Clone()
	if v, ok := m.latest[st.Index]; !ok || st.Version >= v {
		m.latest[st.Index] = st.Version
	}
	return nil
}

// SaveKeeping implements StepStore: a MemStepStore prunes nothing.
func (m *MemStepStore) SaveKeeping(st ShardState, _ []int64) error { return m.Save(st) }

// Load implements Store.
func (m *MemStepStore) Load(index int) (ShardState, bool, error) {
	m.mu.Lock()
	v, ok := m.latest[index]
	m.mu.Unlock()
	if !ok {
		return ShardState{}, false, nil
	}
	return m.LoadStep(index, v)
}

// Held implements StepStore.
func (m *MemStepStore) Held(index int) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []int64
	for k := range m.states {
		if k[0] == int64(index) {
			out = append(out, k[1])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] > out[j] })
	return out, nil
}

// Drop forgets shard index's state at version step (tests: a lost file).
func (m *MemStepStore) Drop(index int, step int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.states, [2]int64{int64(index), step})
}

// LoadStep implements StepStore.
func (m *MemStepStore) LoadStep(index int, step int64) (ShardState, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.states[[2]int64{int64(index), step}]
	if !ok {
		return ShardState{}, false, nil
	}
	return st.Clone(), true, nil
}
