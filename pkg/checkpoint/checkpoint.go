package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/logitpair/logitpair/pkg/atomicfile"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/safetensors"
)

// A checkpoint of step S (S steps done) in an output directory is:
//
//	ckpt-0000000S.safetensors        the model: every tensor under its PyTorch
//	                                 name and layout, metadata model/config/
//	                                 dataset/objective/step/train-config
//	ckpt-0000000S-ema.safetensors    the EMA weights (when --ema > 0)
//	ckpt-0000000S.state.safetensors  optimizer slots ("optim.<slot>", flat over
//	                                 the trainable layout), "ema" shadow,
//	                                 metadata step and seed
//	latest.json                      {"step": S, ...}: the newest complete one
//
// Each file is written atomically (temporary file, fsync, rename), and
// latest.json is replaced only after all files of the checkpoint are in place,
// so a crash leaves the previous checkpoint as the newest complete one. The
// random state and the data position need no storing: both are functions of
// (seed, step).
const stateFormat = "logitpair-train-state-v1"

// Pointer is latest.json.
type Pointer struct {
	Step  int64  `json:"step"`
	Model string `json:"model"`
	State string `json:"state"`
	EMA   string `json:"ema,omitempty"`
}

// PointerFile is the name of the pointer to the newest complete checkpoint.
const PointerFile = "latest.json"

// ckptName is the one rule of checkpoint file names: ckpt-<step, 8
// digits><suffix>.safetensors ("" the model, ".state" the optimizer state,
// "-ema" the EMA model).
func ckptName(step int64, suffix string) string {
	return fmt.Sprintf("ckpt-%08d%s.safetensors", step, suffix)
}

// ModelFileName is the name of the model file of the checkpoint at step,
// in local training's folders and the cluster coordinator's alike.
func ModelFileName(step int64) string { return ckptName(step, "") }

// StateFileName is the name of the state file (optimizer slots, EMA) of
// the checkpoint at step.
func StateFileName(step int64) string { return ckptName(step, ".state") }

// EMAFileName is the name of the EMA model file of the checkpoint at step.
func EMAFileName(step int64) string { return ckptName(step, "-ema") }

// Checkpoint is what Save writes and Restore restores.
type Checkpoint struct {
	Step  int64
	Model *models.Model
	Opt   optim.Optimizer
	EMA   *optim.EMA
	Meta  map[string]string // extra model-file metadata (dataset, objective, config)
	// Restored is set by a successful Restore to the restored model file's
	// metadata (its Compute, for one, is the run's accounting so far).
	Restored map[string]string
}

// ModelFile returns the model's state dict with logitpair's metadata.
func ModelFile(m *models.Model, step int64, meta map[string]string) *safetensors.File {
	f := m.StateDict()
	for k, v := range meta {
		f.Metadata[k] = v
	}
	f.Metadata["step"] = strconv.FormatInt(step, 10)
	return f
}

// Save writes checkpoint c into dir and then points latest.json at it.
func Save(dir string, c Checkpoint, seed int64) (Pointer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Pointer{}, err
	}
	p := Pointer{Step: c.Step, Model: ModelFileName(c.Step), State: StateFileName(c.Step)}
	state := safetensors.New()
	state.Metadata["format"] = stateFormat
	state.Metadata["step"] = strconv.FormatInt(c.Step, 10)
	state.Metadata["seed"] = strconv.FormatInt(seed, 10)
	state.Metadata["optimizer"] = c.Opt.Name()
	for _, s := range c.Opt.State() {
		if err := state.AddF32("optim."+s.Name, []int{len(s.Data)}, s.Data); err != nil {
			return p, err
		}
	}
	if c.EMA != nil {
		v := c.EMA.Values()
		if err := state.AddF32("ema", []int{len(v)}, v); err != nil {
			return p, err
		}
	}
	if err := state.WriteFileAtomic(filepath.Join(dir, p.State)); err != nil {
		return p, err
	}
	if c.EMA != nil {
		p.EMA = EMAFileName(c.Step)
		ema, err := emaModelFile(c.Model, c.EMA.Values(), c.Step, c.Meta)
		if err != nil {
			return p, err
		}
		if err := ema.WriteFileAtomic(filepath.Join(dir, p.EMA)); err != nil {
			return p, err
		}
	}
	if err := ModelFile(c.Model, c.Step, c.Meta).WriteFileAtomic(filepath.Join(dir, p.Model)); err != nil {
		return p, err
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	return p, atomicfile.Write(filepath.Join(dir, PointerFile), append(b, '\n'), 0o644)
}

// emaModelFile is the model file with the EMA values in place of the
// trainable parameters (buffers as in the model).
func emaModelFile(m *models.Model, ema []float32, step int64, meta map[string]string) (*safetensors.File, error) {
	f := ModelFile(m, step, meta)
	f.Metadata["ema"] = "true"
	out := safetensors.New()
	for k, v := range f.Metadata {
		out.Metadata[k] = v
	}
	off := map[string][2]int{}
	for _, r := range m.FlatLayout().Ranges {
		off[r.Name] = [2]int{r.Offset, r.Offset + r.Size}
	}
	for _, t := range f.Tensors {
		if o, ok := off[t.Name]; ok {
			if err := out.AddF32(t.Name, t.Shape, ema[o[0]:o[1]]); err != nil {
				return nil, err
			}
			continue
		}
		if err := out.Add(t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReadPointer reads dir/latest.json. The step must be ≥ 0 and the files
// plain names of files in dir (the model and state files required, the EMA
// file optional), so that a damaged pointer cannot send a resume elsewhere.
func ReadPointer(dir string) (Pointer, error) {
	var p Pointer
	path := filepath.Join(dir, PointerFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return Pointer{}, fmt.Errorf("%s: %w", path, err)
	}
	if p.Step < 0 {
		return Pointer{}, fmt.Errorf("%s: negative step %d", path, p.Step)
	}
	for _, f := range []struct{ key, name string }{{"model", p.Model}, {"state", p.State}, {"ema", p.EMA}} {
		if f.name == "" && f.key == "ema" {
			continue
		}
		if f.name == "" || f.name != filepath.Base(f.name) || f.name == "." || f.name == ".." || strings.ContainsRune(f.name, '\\') {
			return Pointer{}, fmt.Errorf("%s: %s %q is not the name of a file in %s", path, f.key, f.name, dir)
		}
	}
	return p, nil
}

// Restore loads a checkpoint of dir into c's model, optimizer and EMA,
// strictly, and returns its step: the one latest.json points at when from is
// 0, else the checkpoint of step from. Nothing is modified, and no file is
// touched, when any file is missing, corrupt or of another architecture; a
// missing or corrupt checkpoint is a *CorruptError naming the
// newest intact one.
func Restore(dir string, from int64, c *Checkpoint) (int64, error) {
	var p Pointer
	if from > 0 {
		steps, err := Steps(dir)
		if err != nil {
			return 0, fmt.Errorf("resume: %w", err)
		}
		if !slices.Contains(steps, from) {
			return 0, fmt.Errorf("resume: --resume-from %d: %s holds no checkpoint of step %d (its checkpoints: %v)", from, dir, from, steps)
		}
		p = pointerAt(dir, from)
	} else {
		var err error
		if p, err = ReadPointer(dir); err != nil {
			steps, _ := Steps(dir)
			if errors.Is(err, fs.ErrNotExist) && len(steps) == 0 {
				return 0, fmt.Errorf("resume: no checkpoint to resume from in %s: %w", dir, err)
			}
			return 0, corrupt(dir, -1, err, steps, true)
		}
	}
	mf, sf, err := readCheckpoint(dir, p)
	if err != nil {
		steps, _ := Steps(dir)
		return 0, corrupt(dir, p.Step, err, steps, from == 0)
	}
	if o := sf.Metadata["optimizer"]; o != c.Opt.Name() {
		return 0, fmt.Errorf("resume: the checkpoint was trained with %s, this run uses %s", o, c.Opt.Name())
	}
	var slots []optim.NamedState
	for _, s := range c.Opt.State() {
		d, _, err := sf.F32("optim." + s.Name)
		if err != nil {
			return 0, fmt.Errorf("resume: %w", err)
		}
		slots = append(slots, optim.NamedState{Name: s.Name, Data: d})
	}
	var ema []float32
	if c.EMA != nil {
		if ema, _, err = sf.F32("ema"); err != nil {
			return 0, fmt.Errorf("resume: this run uses --ema but the checkpoint has none: %w", err)
		}
		if len(ema) != len(c.EMA.Values()) {
			return 0, fmt.Errorf("resume: EMA of %d values for %d parameters", len(ema), len(c.EMA.Values()))
		}
	}
	// Validate everything before changing anything: the model load is the
	// last fallible step that touches state, and it is itself all-or-nothing.
	saved := snapshot(c.Opt)
	if err := c.Opt.SetState(slots); err != nil {
		return 0, fmt.Errorf("resume: %w", err)
	}
	if err := c.Model.LoadStateDict(mf, filepath.Join(dir, p.Model)); err != nil {
		_ = c.Opt.SetState(saved)
		return 0, fmt.Errorf("resume: %w", err)
	}
	if c.EMA != nil {
		_ = c.EMA.SetState([]optim.NamedState{{Name: "ema", Data: ema}})
	}
	c.Restored = mf.Metadata
	return p.Step, nil
}

func snapshot(o optim.Optimizer) []optim.NamedState {
	var out []optim.NamedState
	for _, s := range o.State() {
		out = append(out, optim.NamedState{Name: s.Name, Data: append([]float32(nil), s.Data...)})
	}
	return out
}

// Prune deletes all but the keep newest checkpoints in dir (never best.*).
func Prune(dir string, keep int) error { return PruneKeeping(dir, keep) }

// PruneKeeping is Prune that never deletes the checkpoints of the steps in
// protect (the training sentinel's last good checkpoint, which a rollback
// restores): it deletes the checkpoints that are neither among the keep
// newest nor protected.
func PruneKeeping(dir string, keep int, protect ...int64) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	steps := map[int64]bool{}
	for _, e := range entries {
		if s, ok := stepOf(e.Name()); ok {
			steps[s] = true
		}
	}
	var all []int64
	for s := range steps {
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] > all[j] })
	if len(all) <= keep {
		return nil
	}
	drop := map[int64]bool{}
	for _, s := range all[keep:] {
		drop[s] = !slices.Contains(protect, s)
	}
	return removeSteps(dir, entries, drop)
}

// RemoveAfter deletes the checkpoint files of every step after step (a
// trajectory the training sentinel rolled back from) and returns their
// steps, newest first. latest.json must already point at a checkpoint it
// keeps.
func RemoveAfter(dir string, step int64) ([]int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	drop := map[int64]bool{}
	var out []int64
	for _, e := range entries {
		if s, ok := stepOf(e.Name()); ok && s > step && !drop[s] {
			drop[s] = true
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] > out[j] })
	return out, removeSteps(dir, entries, drop)
}

// removeSteps deletes the checkpoint files among entries whose step drop
// marks.
func removeSteps(dir string, entries []fs.DirEntry, drop map[int64]bool) error {
	for _, e := range entries {
		if s, ok := stepOf(e.Name()); ok && drop[s] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func stepOf(name string) (int64, bool) {
	if !strings.HasPrefix(name, "ckpt-") || !strings.HasSuffix(name, ".safetensors") {
		return 0, false
	}
	digits := strings.TrimPrefix(name, "ckpt-")
	if len(digits) < 8 {
		return 0, false
	}
	s, err := strconv.ParseInt(digits[:8], 10, 64)
	return s, err == nil
}

// pointerAt is the Pointer of step's checkpoint in dir, named as Save names
// its files.
func pointerAt(dir string, step int64) Pointer {
	p := Pointer{Step: step, Model: ModelFileName(step), State: StateFileName(step)}
	if _, err := os.Stat(filepath.Join(dir, EMAFileName(step))); err == nil {
		p.EMA = EMAFileName(step)
	}
	return p
}

// readCheckpoint reads checkpoint p's model and state files and checks
// that they are whole: both parse, the state is a logitpair training state,
// and both agree with p on the step.
func readCheckpoint(dir string, p Pointer) (mf, sf *safetensors.File, err error) {
	if mf, err = safetensors.ReadFile(filepath.Join(dir, p.Model)); err != nil {
		return nil, nil, err
	}
	if sf, err = safetensors.ReadFile(filepath.Join(dir, p.State)); err != nil {
		return nil, nil, err
	}
	if sf.Metadata["format"] != stateFormat {
		return nil, nil, fmt.Errorf("%s is not a logitpair training state (format %q)", p.State, sf.Metadata["format"])
	}
	if s := sf.Metadata["step"]; s != strconv.FormatInt(p.Step, 10) || mf.Metadata["step"] != s {
		return nil, nil, fmt.Errorf("%s, %s and the step %d disagree on the step (%s, %s)", p.Model, p.State, p.Step, mf.Metadata["step"], s)
	}
	return mf, sf, nil
}

// Steps returns the steps of which dir holds checkpoint files
// (whole or not; regular files only), newest first.
func Steps(dir string) ([]int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	seen := map[int64]bool{}
	var out []int64
	for _, e := range entries {
		if s, ok := stepOf(e.Name()); ok && !seen[s] && e.Type().IsRegular() {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] > out[j] })
	return out, nil
}

// CorruptError is Restore's error for a checkpoint (or
// latest.json) that is missing or damaged. Nothing was changed or deleted.
type CorruptError struct {
	Dir string
	// Step is the damaged checkpoint's step; -1 when latest.json itself is
	// missing or damaged.
	Step int64
	// Newest: the damaged checkpoint is the newest, the one --resume takes.
	Newest bool
	Err    error
	// Intact is the newest checkpoint (below Step) whose files read whole;
	// HaveIntact is false when there is none.
	Intact     int64
	HaveIntact bool
}

func (e *CorruptError) Error() string {
	var what string
	if e.Step < 0 {
		what = fmt.Sprintf("the pointer to the newest checkpoint, %s, is missing or corrupt", filepath.Join(e.Dir, PointerFile))
	} else if e.Newest {
		what = fmt.Sprintf("the newest checkpoint in %s, step %d, is corrupt or incomplete", e.Dir, e.Step)
	} else {
		what = fmt.Sprintf("the checkpoint of step %d in %s is corrupt or incomplete", e.Step, e.Dir)
	}
	if !e.HaveIntact {
		return fmt.Sprintf("resume: %s (%v), and no intact checkpoint is left there: start a new run (another --out, or --force to replace this one)", what, e.Err)
	}
	return fmt.Sprintf("resume: %s (%v); the newest intact checkpoint is step %d (%s): resume from it with --resume-from %d (nothing was deleted)",
		what, e.Err, e.Intact, ModelFileName(e.Intact), e.Intact)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// corrupt builds the error for the damaged checkpoint of step (-1:
// latest.json), looking for the newest intact one among steps below it.
func corrupt(dir string, step int64, err error, steps []int64, newest bool) error {
	e := &CorruptError{Dir: dir, Step: step, Newest: newest, Err: err}
	for _, s := range steps {
		if step >= 0 && s >= step {
			continue
		}
		if _, _, err := readCheckpoint(dir, pointerAt(dir, s)); err == nil {
			e.Intact, e.HaveIntact = s, true
			break
		}
	}
	return e
}

// runFileNames are the files besides ckpt-* that a run writes into its
// output directory (Save, WriteBest).
var runFileNames = []string{PointerFile, BestModelFile, BestFile}

// RunFiles returns the files of a training run that dir holds: the
// checkpoints (ckpt-*.safetensors), latest.json and best.safetensors and
// best.json, sorted. A missing dir holds none.
func RunFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if _, ok := stepOf(e.Name()); (ok || slices.Contains(runFileNames, e.Name())) && e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// CheckOut decides whether a new run (one that does not resume) may write
// into dir: a directory that holds another run's files (RunFiles) is
// refused unless force, which lets RemoveRun replace them.
func CheckOut(dir string, force bool) error {
	files, err := RunFiles(dir)
	if err != nil || len(files) == 0 || force {
		return err
	}
	what := fmt.Sprintf("%d files", len(files))
	if steps, _ := Steps(dir); len(steps) > 0 {
		what = fmt.Sprintf("newest step %d, %d files", steps[0], len(files))
	}
	return fmt.Errorf("--out %s holds the checkpoints of another run (%s): pass --resume to continue it, --force to delete them (its ckpt-*.safetensors, latest.json and best.*, nothing else) and start over, or choose another --out", dir, what)
}

// RemoveRun deletes the files of the run in dir (RunFiles) and nothing
// else, latest.json first so that no pointer outlives its checkpoint, and
// returns their names.
func RemoveRun(dir string) ([]string, error) {
	files, err := RunFiles(dir)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i] == PointerFile && files[j] != PointerFile })
	for i, f := range files {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			return files[:i], fmt.Errorf("--force: %w", err)
		}
	}
	return files, nil
}
