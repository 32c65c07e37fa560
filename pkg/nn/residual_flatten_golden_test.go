package nn_test

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/safetensors"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// loadNNGolden reads pkg/nn/testdata/golden/layers/<name>.safetensors, the
// stand-alone residual-add and flatten fixtures that scripts/gen-golden.py
// (residual_flatten_cases, PyTorch 1.13) writes beside this package.
func loadNNGolden(t *testing.T, name string) *nntest.Golden {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "testdata", "golden", "layers", name+".safetensors")
	f, err := safetensors.ReadFile(p)
	if err != nil {
		t.Fatalf("golden fixture: %v", err)
	}
	return &nntest.Golden{T: t, F: f, Path: p}
}

// TestResidualAndFlattenMatchPyTorch compares nn.Residual and nn.Flatten
// with their own PyTorch fixtures (not only inside the model fixtures):
// residual add around a 3×3 'same' conv + ReLU (ResNet-9's block) and around
// a fixed scale (dx = 1.5·dy: the skip path's gradient alone), flatten alone
// (C, H, W order, forward and the reshape of dy back) and flatten + dense
// (madry-mnist's pool2 → fc1). Forward output, input gradient and every
// parameter gradient within nntest.RelTol on every backend; then the
// input-gradient-only backward gives the same dx and leaves the parameter
// gradients alone.
func TestResidualAndFlattenMatchPyTorch(t *testing.T) {
	build := func(t *testing.T, be tensor.Backend, g *nntest.Golden, name string) nn.Layer {
		switch name {
		case "residual_conv_relu":
			_, ws := g.F32("param.conv.weight")
			l := nn.NewResidual(be, nn.NewSequential(nn.NewConv2D(be, "conv", ws[1], ws[0], ws[2], ws[3], nn.Same(3, 1), true), nn.NewReLU(be)))
			loadParams(t, be, g, l.Params())
			return l
		case "residual_identity_branch":
			return nn.NewResidual(be, nn.NewScale(be, 0.5))
		case "flatten":
			return nn.NewFlatten()
		case "flatten_dense":
			var c layerConfig
			g.Config(&c)
			l := nn.NewSequential(nn.NewFlatten(), nn.NewDense(be, "fc", c.In, c.Out, c.Bias))
			loadParams(t, be, g, l.Params())
			return l
		}
		t.Fatalf("unknown fixture %s", name)
		return nil
	}
	wantLayer := map[string]string{"residual_conv_relu": "residual", "residual_identity_branch": "residual", "flatten": "flatten", "flatten_dense": "flatten_dense"}
	for _, be := range nntest.Backends() {
		for _, name := range []string{"residual_conv_relu", "residual_identity_branch", "flatten", "flatten_dense"} {
			t.Run(nntest.Name(be)+"/"+name, func(t *testing.T) {
				g := loadNNGolden(t, name)
				if got := g.F.Metadata["layer"]; got != wantLayer[name] {
					t.Fatalf("fixture layer %q, want %q", got, wantLayer[name])
				}
				l := build(t, be, g, name)
				x := g.Tensor(be, "x")
				y := l.Forward(x, true)
				_, ys := g.F32("y")
				if !y.Shape().Equal(tensor.Shape(ys)) {
					t.Fatalf("y shape %v, PyTorch %v", y.Shape(), ys)
				}
				nntest.Close(t, "y", nntest.Host(be, y), first(g.F32("y")), nntest.RelTol)
				dy := g.Tensor(be, "dy")
				dx := l.Backward(dy, nn.Grad{Params: true, Input: true})
				if !dx.Shape().Equal(x.Shape()) {
					t.Fatalf("dx shape %v, x %v", dx.Shape(), x.Shape())
				}
				nntest.Close(t, "dx", nntest.Host(be, dx), first(g.F32("dx")), nntest.RelTol)
				params := nn.Trainable(l.Params())
				for _, p := range params {
					nntest.Close(t, "grad."+p.Name, nntest.Host(be, p.Grad), first(g.F32("grad."+p.Name)), nntest.RelTol)
				}
				if want := map[string]int{"residual_conv_relu": 2, "flatten_dense": 2}[name]; len(params) != want {
					t.Fatalf("%d trainable parameters, fixture has %d", len(params), want)
				}
				for _, p := range params {
					be.Fill(p.Grad, 7)
				}
				l.Forward(x, true)
				dx2 := l.Backward(dy, nn.Grad{Input: true})
				nntest.Close(t, "dx (input only)", nntest.Host(be, dx2), first(g.F32("dx")), nntest.RelTol)
				for _, p := range params {
					for _, v := range nntest.Host(be, p.Grad) {
						if v != 7 {
							t.Fatalf("input-only backward wrote %s", p.Name)
						}
					}
				}
			})
		}
	}
}
