package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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

func ckptName(step int64, suffix string) string {
	return fmt.Sprintf("ckpt-%08d%s.safetensors", step, suffix)
}

// Checkpoint is what Save writes and Load restores.
type Checkpoint struct {
	Step  int64
	Model *models.Model
	Opt   optim.Optimizer
	EMA   *optim.EMA
	Meta  map[string]string // extra model-file metadata (dataset, objective, config)
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
	p := Pointer{Step: c.Step, Model: ckptName(c.Step, ""), State: ckptName(c.Step, ".state")}
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
		p.EMA = ckptName(c.Step, "-ema")
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
	return p, atomicfile.Write(filepath.Join(dir, "latest.json"), append(b, '\n'), 0o644)
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
	path := filepath.Join(dir, "latest.json")
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

// Restore loads the checkpoint latest.json points at into c's model,
// optimizer and EMA, strictly, and returns its step. Nothing is modified when
// any file is missing, corrupt or of another architecture.
func Restore(dir string, c *Checkpoint) (int64, error) {
	p, err := ReadPointer(dir)
	if err != nil {
		return 0, fmt.Errorf("resume: no checkpoint to resume from in %s: %w", dir, err)
	}
	mf, err := safetensors.ReadFile(filepath.Join(dir, p.Model))
	if err != nil {
		return 0, fmt.Errorf("resume: %w", err)
	}
	sf, err := safetensors.ReadFile(filepath.Join(dir, p.State))
	if err != nil {
		return 0, fmt.Errorf("resume: %w", err)
	}
	if sf.Metadata["format"] != stateFormat {
		return 0, fmt.Errorf("resume: %s is not a logitpair training state (format %q)", p.State, sf.Metadata["format"])
	}
	if s := sf.Metadata["step"]; s != strconv.FormatInt(p.Step, 10) || mf.Metadata["step"] != s {
		return 0, fmt.Errorf("resume: %s, %s and latest.json disagree on the step (%s, %s, %d)", p.Model, p.State, mf.Metadata["step"], s, p.Step)
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
func Prune(dir string, keep int) error {
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
		drop[s] = true
	}
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
