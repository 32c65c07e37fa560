package models_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// loadGoldenModel builds the fixture's model and loads its PyTorch state_dict
// strictly: every tensor of the model must be in the fixture with the same
// shape, and every param.* entry of the fixture must belong to the model.
func loadGoldenModel(t *testing.T, be tensor.Backend, g *nntest.Golden) *models.Model {
	t.Helper()
	var cfg models.Config
	if err := json.Unmarshal([]byte(g.F.Metadata["config"]), &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	m, err := models.New(be, g.F.Metadata["model"], cfg)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range m.Params() {
		d, s := g.F32("param." + p.Name)
		if !tensor.Shape(s).Equal(p.Value.Shape()) {
			t.Fatalf("%s: PyTorch shape %v, ours %v", p.Name, s, p.Value.Shape())
		}
		be.Upload(p.Value, d)
		seen["param."+p.Name] = true
	}
	for _, ib := range m.IntBuffers() {
		v, _, err := g.F.I64("param." + ib.Name)
		if err != nil {
			t.Fatalf("%s: %v", ib.Name, err)
		}
		*ib.Value = v[0]
		seen["param."+ib.Name] = true
	}
	for _, name := range g.F.Names() {
		if strings.HasPrefix(name, "param.") && !seen[name] {
			t.Errorf("PyTorch tensor %s has no counterpart in our %s", name, m.Name)
		}
	}
	return m
}

// TestModelsMatchPyTorch checks every model fixture (tiny configs of each
// architecture, weights and batch-norm statistics random, reference computed
// by PyTorch in float64): eval-mode logits, loss and input gradient (what PGD
// uses) and every parameter gradient; train-mode logits, loss, input gradient,
// every parameter gradient and the updated batch-norm buffers.
func TestModelsMatchPyTorch(t *testing.T) {
	for _, be := range nntest.Backends() {
		for _, name := range nntest.List(t, "models") {
			t.Run(nntest.Name(be)+"/"+name, func(t *testing.T) {
				g := nntest.Load(t, "models", name)
				m := loadGoldenModel(t, be, g)
				smoothing, err := strconv.ParseFloat(g.F.Metadata["smoothing"], 32)
				if err != nil {
					t.Fatal(err)
				}
				x := g.Tensor(be, "x")
				labels := g.Labels("labels")
				// Per-tensor tolerance: 1e-4, or 3× PyTorch's own float32 error
				// against the float64 reference where that is larger (sums that
				// cancel in deep train-mode batch norm; see scripts/gen-golden.py).
				var f32err map[string]float64
				if err := json.Unmarshal([]byte(g.F.Metadata["torch_f32_error"]), &f32err); err != nil {
					t.Fatalf("torch_f32_error metadata: %v", err)
				}
				tol := func(name string) float64 { return max(nntest.RelTol, 3*f32err[name]) }
				close := func(name string, got []float32) {
					t.Helper()
					nntest.Close(t, name, got, first(g.F32(name)), tol(name))
				}

				logits := m.Forward(x, false)
				close("logits_eval", nntest.Host(be, logits))
				dz := be.New(logits.Shape()...)
				loss := nn.SoftmaxCrossEntropy(be, dz, logits, labels, float32(smoothing))
				close("loss_eval", []float32{float32(loss)})
				dx := m.Backward(dz, nn.Grad{Params: true, Input: true})
				close("dx_eval", nntest.Host(be, dx))
				for _, p := range m.Trainable() {
					close("grad_eval."+p.Name, nntest.Host(be, p.Grad))
				}

				logits = m.Forward(x, true)
				close("logits", nntest.Host(be, logits))
				loss = nn.SoftmaxCrossEntropy(be, dz, logits, labels, float32(smoothing))
				close("loss", []float32{float32(loss)})
				dx = m.Backward(dz, nn.Grad{Params: true, Input: true})
				if g.F.Metadata["chaotic_train_grads"] == "true" {
					// PyTorch's own float32 runs (1 vs 2 threads) disagree with
					// float64 by over 1e-3 here: train-mode batch norm over few
					// values per channel in a deep random net amplifies rounding.
					// Parameter gradients are checked in eval mode below instead.
					t.Logf("%s: train-mode gradients are chaotic at this size (sensitivity %s); checking eval-mode parameter gradients", name, g.F.Metadata["sensitivity"])
				} else {
					close("dx", nntest.Host(be, dx))
					for _, p := range m.Trainable() {
						close("grad."+p.Name, nntest.Host(be, p.Grad))
					}
				}
				for _, p := range nn.Buffers(m.Params()) {
					close("buffer_after."+p.Name, nntest.Host(be, p.Value))
				}
				for _, ib := range m.IntBuffers() {
					v, _, err := g.F.I64("buffer_after." + ib.Name)
					if err != nil || v[0] != *ib.Value {
						t.Errorf("%s = %d, PyTorch %v (%v)", ib.Name, *ib.Value, v, err)
					}
				}
			})
		}
	}
}

func first(d []float32, _ []int) []float32 { return d }
