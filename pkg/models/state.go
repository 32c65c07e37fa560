package models

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/safetensors"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// Metadata keys logitpair writes into a model file.
const (
	MetaModel  = "model"
	MetaConfig = "config"
	// MetaTrainConfig: the training config as JSON (train.Config), written
	// by the trainer into its checkpoints' model files.
	MetaTrainConfig = "train_config"
)

// StateDict returns the model's tensors as PyTorch's state_dict would hold
// them: every parameter and float buffer as F32 under its name and shape,
// batch norm's num_batches_tracked as a scalar I64 — so
// `model.load_state_dict(load(file), strict=True)` works in PyTorch — plus
// the model name and config as metadata.
func (m *Model) StateDict() *safetensors.File {
	f := safetensors.New()
	for _, p := range m.params {
		host := make([]float32, p.Value.Numel())
		m.Backend.Download(host, p.Value)
		if err := f.AddF32(p.Name, p.Value.Shape(), host); err != nil {
			panic(err) // names and shapes come from the model: a bug
		}
	}
	for _, ib := range m.ints {
		if err := f.AddI64(ib.Name, []int{}, []int64{*ib.Value}); err != nil {
			panic(err)
		}
	}
	f.Metadata[MetaModel] = m.Name
	f.Metadata[MetaConfig] = m.ConfigJSON()
	return f
}

// LoadStateDict sets the model's tensors from f, strictly: every tensor of the
// model must be present with its shape (F32, or I64 for integer buffers),
// no tensor of f may be unknown to the model, and no value may be NaN or
// infinite. On error the model is left unchanged, and the error names the
// source and every mismatching tensor.
func (m *Model) LoadStateDict(f *safetensors.File, source string) error {
	var problems []string
	vals := make([][]float32, len(m.params))
	known := map[string]bool{}
	for i, p := range m.params {
		known[p.Name] = true
		if !f.Has(p.Name) {
			problems = append(problems, fmt.Sprintf("missing %s %v", p.Name, p.Value.Shape()))
			continue
		}
		d, shape, err := f.F32(p.Name)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if !tensor.Shape(shape).Equal(p.Value.Shape()) {
			problems = append(problems, fmt.Sprintf("%s has shape %v, model %s wants %v", p.Name, shape, m.Name, p.Value.Shape()))
			continue
		}
		for j, v := range d {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				problems = append(problems, fmt.Sprintf("%s[%d] is %v", p.Name, j, v))
				break
			}
		}
		vals[i] = d
	}
	ints := make([]int64, len(m.ints))
	for i, ib := range m.ints {
		known[ib.Name] = true
		if !f.Has(ib.Name) {
			problems = append(problems, "missing "+ib.Name)
			continue
		}
		d, _, err := f.I64(ib.Name)
		if err != nil || len(d) != 1 {
			problems = append(problems, fmt.Sprintf("%s: want one int64 (%v)", ib.Name, err))
			continue
		}
		ints[i] = d[0]
	}
	var extra []string
	for _, n := range f.Names() {
		if !known[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		problems = append(problems, fmt.Sprintf("unexpected tensors %s", strings.Join(extra, ", ")))
	}
	if len(problems) > 0 {
		if len(problems) > 8 {
			problems = append(problems[:8], fmt.Sprintf("... and %d more", len(problems)-8))
		}
		arch := ""
		if name := f.Metadata[MetaModel]; name != "" && name != m.Name {
			arch = fmt.Sprintf(" (the file holds a %s, not a %s)", name, m.Name)
		}
		return fmt.Errorf("loading %s into %s%s: %s", source, m.Name, arch, strings.Join(problems, "; "))
	}
	for i, p := range m.params {
		m.Backend.Upload(p.Value, vals[i])
	}
	for i, ib := range m.ints {
		*ib.Value = ints[i]
	}
	return nil
}

// FlatLayout returns the layout of the model's trainable parameters in one
// flat vector (state_dict order), for sharding across parameter servers.
func (m *Model) FlatLayout() nn.Layout { return nn.NewLayout(m.Trainable()) }
