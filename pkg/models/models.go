// Package models builds logitpair's networks from pkg/nn layers with fixed
// parameter names and layouts that match PyTorch's state_dict conventions
// (python/logitpair_torch/models.py defines the same modules), so weights move
// to and from PyTorch with no conversion.
//
// Models: madry-mnist (the paper's MNIST model), resnet9 (its SVHN model),
// resnet-v2-50 and resnet-v2-101 (pre-activation ResNets for 64×64 ImageNet /
// Tiny ImageNet and the paper's ImageNet ResNet-101), inception-v3
// (torchvision's Inception3, the paper's 299×299 ImageNet model).
package models

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"sort"
	"strings"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// Config holds a model's integer hyper-parameters under the same keys as the
// PyTorch constructors' keyword arguments (e.g. {"classes": 10}). Keys left
// out take the model's defaults.
type Config map[string]int

// Model is a network with a name, its config, and its input geometry.
type Model struct {
	Name    string
	Config  Config // complete: defaults filled in
	Backend tensor.Backend
	// Input is the expected (C, H, W) of one example.
	Input [3]int
	// Classes is the number of logits.
	Classes int
	net     nn.Layer
	params  []*nn.Param
	ints    []*nn.IntBuffer
	// leafLo[i] is the flat offset (FlatLayout) of the first trainable
	// parameter of leaf i of net when net is an *nn.Sequential: where the
	// gradients that leaf's Backward finishes begin. Nil otherwise.
	leafLo []int
}

// Forward computes logits (N, Classes) for x (N, C, H, W) in [0, 1]. train
// selects training-mode batch norm (batch statistics, running-statistics
// update); attacks run with train=false.
func (m *Model) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	if x.Rank() != 4 || x.Dim(1) != m.Input[0] || (m.Input[1] > 0 && (x.Dim(2) != m.Input[1] || x.Dim(3) != m.Input[2])) {
		tensor.Panicf(m.Name, "input %v, want (N, %d, %d, %d)", x.Shape(), m.Input[0], m.Input[1], m.Input[2])
	}
	return m.net.Forward(x, train)
}

// Backward back-propagates dL/dlogits through the last Forward; it returns
// dL/dx when g.Input is set and fills every parameter's Grad when g.Params is.
func (m *Model) Backward(dlogits *tensor.Tensor, g nn.Grad) *tensor.Tensor {
	return m.net.Backward(dlogits, g)
}

// BackwardReady is Backward(dlogits, g) with g.Params set that reports, as
// the backward pass runs from the logits down, which parameter gradients
// are final: ready(lo) means every trainable parameter at flat offset lo or
// above (FlatLayout) has its final Grad. lo is non-increasing and the last
// call has lo = 0. A model whose network is a Sequential (every model here)
// calls ready after each of its leaves (nn.Sequential.BackwardEach) that
// owns trainable parameters; any other network calls ready(0) once at the
// end. The gradients are exactly Backward's: the same layer calls in the
// same order.
func (m *Model) BackwardReady(dlogits *tensor.Tensor, g nn.Grad, ready func(lo int)) *tensor.Tensor {
	if !g.Params {
		tensor.Panicf(m.Name, "BackwardReady without parameter gradients")
	}
	seq, ok := m.net.(*nn.Sequential)
	if !ok || len(m.leafLo) == 0 {
		dx := m.net.Backward(dlogits, g)
		ready(0)
		return dx
	}
	prev := m.leafLo[len(m.leafLo)-1] + 1 // above every leaf's offset: the first call always reports
	dx := seq.BackwardEach(dlogits, g, func(leaf int) {
		// Leaves finish from the last to the first, and their trainable
		// parameters lie in the flat layout in leaf order, so once leaf i
		// is done every parameter from leafLo[i] on is final.
		if lo := m.leafLo[leaf]; lo < prev {
			prev = lo
			ready(lo)
		}
	})
	if prev != 0 { // no leaf reported 0: the model has no trainable parameters
		ready(0)
	}
	return dx
}

// leafOffsets returns Model.leafLo for net.
func leafOffsets(net nn.Layer) []int {
	seq, ok := net.(*nn.Sequential)
	if !ok {
		return nil
	}
	leaves := seq.Leaves()
	out := make([]int, len(leaves))
	off := 0
	for i, l := range leaves {
		out[i] = off
		for _, p := range nn.Trainable(l.Params()) {
			off += p.Value.Numel()
		}
	}
	return out
}

// Params returns every float tensor of the model, parameters and buffers, in
// PyTorch's state_dict order.
func (m *Model) Params() []*nn.Param { return m.params }

// Trainable returns the trainable parameters in state_dict order.
func (m *Model) Trainable() []*nn.Param { return nn.Trainable(m.params) }

// IntBuffers returns the integer buffers (batch norm's num_batches_tracked).
func (m *Model) IntBuffers() []*nn.IntBuffer { return m.ints }

// Param returns the tensor called name, or nil.
func (m *Model) Param(name string) *nn.Param {
	for _, p := range m.params {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Init sets parameters to PyTorch's default initialization from seed.
func (m *Model) Init(seed int64) {
	rng := rand.New(rand.NewSource(seed))
	nn.InitDefault(m.Backend, m.params, rng.Float64)
	for _, ib := range m.ints {
		*ib.Value = 0
	}
}

// ConfigJSON returns the complete config as JSON (for checkpoint metadata).
func (m *Model) ConfigJSON() string {
	b, _ := json.Marshal(m.Config)
	return string(b)
}

type builder struct {
	defaults Config
	build    func(be tensor.Backend, c Config) (*Model, error)
}

var registry = map[string]builder{}

func register(name string, defaults Config, build func(be tensor.Backend, c Config) (*Model, error)) {
	registry[name] = builder{defaults, build}
}

// Names lists the known models.
func Names() []string {
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Defaults returns a model's default config, or an error for an unknown model.
func Defaults(name string) (Config, error) {
	b, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unknown model %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	out := Config{}
	for k, v := range b.defaults {
		out[k] = v
	}
	return out, nil
}

// New builds model name on backend be. cfg may be nil (defaults); unknown
// keys and non-positive values are errors. Parameters are zero: call Init or
// load weights.
func New(be tensor.Backend, name string, cfg Config) (*Model, error) {
	full, err := Defaults(name)
	if err != nil {
		return nil, err
	}
	for k, v := range cfg {
		if _, ok := full[k]; !ok {
			keys := make([]string, 0, len(full))
			for k := range full {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return nil, fmt.Errorf("model %s: unknown config key %q (known: %s)", name, k, strings.Join(keys, ", "))
		}
		if v <= 0 {
			return nil, fmt.Errorf("model %s: config %s must be positive, got %d", name, k, v)
		}
		full[k] = v
	}
	m, err := registry[name].build(be, full)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	m.Name, m.Config, m.Backend = name, full, be
	m.params = m.net.Params()
	m.ints = nn.CollectIntBuffers(m.net)
	m.leafLo = leafOffsets(m.net)
	return m, nil
}

// EvalView is the model as attacks see it (attack.Model): evaluation-mode
// logits and the input gradient, nothing else.
type EvalView struct{ M *Model }

// Backend returns the model's backend.
func (v EvalView) Backend() tensor.Backend { return v.M.Backend }

// Logits runs an evaluation-mode forward pass.
func (v EvalView) Logits(x *tensor.Tensor) *tensor.Tensor { return v.M.Forward(x, false) }

// InputGrad back-propagates to the input only (no weight-gradient GEMMs).
func (v EvalView) InputGrad(dlogits *tensor.Tensor) *tensor.Tensor {
	return v.M.Backward(dlogits, nn.Grad{Input: true})
}

// ConfigFlag is a command-line flag (pflag.Value) holding a model Config
// given as a JSON object of integers, e.g. '{"classes": 200, "image_size": 64}'.
type ConfigFlag struct{ P *Config }

func (f ConfigFlag) String() string {
	if f.P == nil || len(*f.P) == 0 {
		return ""
	}
	b, _ := json.Marshal(*f.P)
	return string(b)
}

// Set parses s; anything but a JSON object of integers is an error.
func (f ConfigFlag) Set(s string) error {
	var mc Config
	if err := json.Unmarshal([]byte(s), &mc); err != nil {
		return fmt.Errorf("want a JSON object of integers: %w", err)
	}
	*f.P = mc
	return nil
}

// Type names the flag's value in help texts.
func (ConfigFlag) Type() string { return "json" }
