package nn_test

import (
	"math"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/tensor"
)

type layerConfig struct {
	Stride    []int   `json:"stride"`
	Pad       []int   `json:"pad"`
	Kernel    []int   `json:"kernel"`
	Bias      bool    `json:"bias"`
	In        int     `json:"in"`
	Out       int     `json:"out"`
	Momentum  float32 `json:"momentum"`
	Eps       float32 `json:"eps"`
	Smoothing float32 `json:"smoothing"`
}

// buildLayer makes the layer a fixture describes, with the fixture's
// parameters loaded.
func buildLayer(t *testing.T, be tensor.Backend, g *nntest.Golden, name string) nn.Layer {
	var c layerConfig
	g.Config(&c)
	_, xs := g.F32("x")
	switch g.F.Metadata["layer"] {
	case "conv2d":
		_, ws := g.F32("param.weight")
		p := tensor.ConvParams{StrideH: c.Stride[0], StrideW: c.Stride[1], PadTop: c.Pad[0], PadBottom: c.Pad[1], PadLeft: c.Pad[2], PadRight: c.Pad[3]}
		l := nn.NewConv2D(be, "", ws[1], ws[0], ws[2], ws[3], p, c.Bias)
		loadParams(t, be, g, l.Params())
		return l
	case "dense":
		l := nn.NewDense(be, "", c.In, c.Out, c.Bias)
		loadParams(t, be, g, l.Params())
		return l
	case "maxpool2d", "avgpool2d":
		if name == "avgpool_global" {
			return nn.NewGlobalAvgPool(be)
		}
		p := &nn.Pool{}
		if g.F.Metadata["layer"] == "maxpool2d" {
			p = nn.NewMaxPool(be, c.Kernel[0], c.Stride[0], c.Pad[0])
		} else {
			p = nn.NewAvgPool(be, c.Kernel[0], c.Stride[0], c.Pad[0])
		}
		p.P = tensor.PoolParams{KernelH: c.Kernel[0], KernelW: c.Kernel[1], StrideH: c.Stride[0], StrideW: c.Stride[1], PadH: c.Pad[0], PadW: c.Pad[1]}
		return p
	case "relu":
		return nn.NewReLU(be)
	case "batchnorm":
		l := nn.NewBatchNorm(be, "", xs[1])
		l.Momentum, l.Eps = c.Momentum, c.Eps
		loadParams(t, be, g, []*nn.Param{l.Gamma, l.Beta})
		be.Upload(l.Mean.Value, first(g.F32("buffer.running_mean")))
		be.Upload(l.Var.Value, first(g.F32("buffer.running_var")))
		return l
	}
	t.Fatalf("%s: unknown layer %q", name, g.F.Metadata["layer"])
	return nil
}

func first(d []float32, _ []int) []float32 { return d }

func loadParams(t *testing.T, be tensor.Backend, g *nntest.Golden, ps []*nn.Param) {
	for _, p := range ps {
		be.Upload(p.Value, first(g.F32("param."+p.Name)))
	}
}

// TestLayersMatchPyTorch runs every layer fixture written by
// scripts/gen-golden.py (PyTorch 1.13): forward output, input gradient and
// every parameter gradient within nntest.RelTol, on every backend; then the
// input-gradient-only backward gives the same dx.
func TestLayersMatchPyTorch(t *testing.T) {
	for _, be := range nntest.Backends() {
		for _, name := range nntest.List(t, "layers") {
			t.Run(nntest.Name(be)+"/"+name, func(t *testing.T) {
				g := nntest.Load(t, "layers", name)
				switch g.F.Metadata["layer"] {
				case "softmax_ce":
					checkSoftmaxCE(t, be, g)
					return
				case "l2pair":
					checkL2Pair(t, be, g)
					return
				}
				l := buildLayer(t, be, g, name)
				x := g.Tensor(be, "x")
				train := g.F.Metadata["train"] == "true"
				y := l.Forward(x, train)
				nntest.Close(t, "y", nntest.Host(be, y), first(g.F32("y")), nntest.RelTol)
				if bn, ok := l.(*nn.BatchNorm); ok {
					nntest.Close(t, "running_mean", nntest.Host(be, bn.Mean.Value), first(g.F32("buffer_after.running_mean")), nntest.RelTol)
					nntest.Close(t, "running_var", nntest.Host(be, bn.Var.Value), first(g.F32("buffer_after.running_var")), nntest.RelTol)
				}
				dy := g.Tensor(be, "dy")
				dx := l.Backward(dy, nn.Grad{Params: true, Input: true})
				nntest.Close(t, "dx", nntest.Host(be, dx), first(g.F32("dx")), nntest.RelTol)
				for _, p := range nn.Trainable(l.Params()) {
					nntest.Close(t, "grad."+p.Name, nntest.Host(be, p.Grad), first(g.F32("grad."+p.Name)), nntest.RelTol)
				}
				// Input-gradient-only mode: same dx, parameter gradients untouched.
				for _, p := range nn.Trainable(l.Params()) {
					be.Fill(p.Grad, 7)
				}
				dx2 := l.Backward(dy, nn.Grad{Input: true})
				nntest.Close(t, "dx (input only)", nntest.Host(be, dx2), first(g.F32("dx")), nntest.RelTol)
				for _, p := range nn.Trainable(l.Params()) {
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

func checkSoftmaxCE(t *testing.T, be tensor.Backend, g *nntest.Golden) {
	var c layerConfig
	g.Config(&c)
	z := g.Tensor(be, "z")
	dz := be.New(z.Shape()...)
	loss := nn.SoftmaxCrossEntropy(be, dz, z, g.Labels("labels"), c.Smoothing)
	nntest.Close(t, "loss", []float32{float32(loss)}, first(g.F32("loss")), nntest.RelTol)
	nntest.Close(t, "dz", nntest.Host(be, dz), first(g.F32("dz")), nntest.RelTol)
}

func checkL2Pair(t *testing.T, be tensor.Backend, g *nntest.Golden) {
	a, b := g.Tensor(be, "a"), g.Tensor(be, "b")
	da, db, scratch := be.New(a.Shape()...), be.New(a.Shape()...), be.New(a.Shape()...)
	loss := nn.SquaredL2Pair(be, da, db, a, b, scratch)
	nntest.Close(t, "loss", []float32{float32(loss)}, first(g.F32("loss")), nntest.RelTol)
	nntest.Close(t, "da", nntest.Host(be, da), first(g.F32("da")), nntest.RelTol)
	nntest.Close(t, "db", nntest.Host(be, db), first(g.F32("db")), nntest.RelTol)
}

// TestLayersFiniteDifferences checks every layer's Backward (input and
// parameter gradients) against central differences of its own Forward, in
// both batch-norm modes, on inputs chosen away from ReLU and max-pool kinks
// by the fixed seed.
func TestLayersFiniteDifferences(t *testing.T) {
	be := nntest.Backends()[0]
	rngLayer := func(l nn.Layer, seed int64) nn.Layer {
		rng := newRand(seed)
		nn.InitDefault(be, l.Params(), rng.Float64)
		for _, p := range nn.Trainable(l.Params()) { // non-trivial γ, β, biases
			if p.Role != nn.Weight {
				be.Upload(p.Value, nntest.Host(be, nntest.Random(be, rng, 0.5, p.Value.Shape()...)))
			}
		}
		return l
	}
	cases := []struct {
		name  string
		l     nn.Layer
		shape []int
		train bool
	}{
		{"conv5x5same", nn.NewConv2D(be, "c", 3, 4, 5, 5, nn.Same(5, 1), true), []int{2, 3, 7, 6}, true},
		{"conv3x3s2", nn.NewConv2D(be, "c", 3, 4, 3, 3, nn.Pad(1, 2), true), []int{2, 3, 7, 6}, true},
		{"conv3x3tfsame", nn.NewConv2D(be, "c", 2, 3, 3, 3, tensor.ConvParams{StrideH: 2, StrideW: 2, PadBottom: 1, PadRight: 1}, false), []int{2, 2, 8, 6}, true},
		{"conv5x5same-fused-relu", nn.NewConv2D(be, "c", 3, 4, 5, 5, nn.Same(5, 1), true).WithReLU(), []int{2, 3, 7, 6}, true},
		{"conv1x1-fused-relu", nn.NewConv2D(be, "c", 3, 5, 1, 1, nn.Pad(0, 1), true).WithReLU(), []int{2, 3, 4, 4}, true},
		{"conv1x1", nn.NewConv2D(be, "c", 3, 5, 1, 1, nn.Pad(0, 1), false), []int{2, 3, 4, 4}, true},
		{"dense", nn.NewDense(be, "d", 7, 5, true), []int{3, 7}, true},
		{"relu", nn.NewReLU(be), []int{2, 3, 4, 5}, true},
		{"maxpool", nn.NewMaxPool(be, 3, 2, 1), []int{2, 3, 7, 6}, true},
		{"avgpool", nn.NewAvgPool(be, 3, 2, 1), []int{2, 3, 7, 6}, true},
		{"globalavg", nn.NewGlobalAvgPool(be), []int{2, 3, 5, 4}, true},
		{"globalmax", nn.NewGlobalMaxPool(be), []int{2, 3, 5, 4}, true},
		{"bn2d-train", nn.NewBatchNorm(be, "bn", 3), []int{4, 3, 3, 2}, true},
		{"bn2d-eval", nn.NewBatchNorm(be, "bn", 3), []int{4, 3, 3, 2}, false},
		{"bn1d-train", nn.NewBatchNorm(be, "bn", 5), []int{6, 5}, true},
		{"scale", nn.NewScale(be, 0.125), []int{3, 4}, true},
		{"residual", nn.NewResidual(be, nn.NewSequential(nn.NewConv2D(be, "r", 3, 3, 3, 3, nn.Same(3, 1), true), nn.NewReLU(be))), []int{2, 3, 5, 5}, true},
		{"flatten-dense", nn.NewSequential(nn.NewFlatten(), nn.NewDense(be, "d", 12, 4, true)), []int{2, 3, 2, 2}, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := rngLayer(c.l, int64(100+i))
			x := nntest.Random(be, newRand(int64(200+i)), 1, c.shape...)
			nntest.GradCheck(t, be, l, x, c.train, 12, 1e-3, 1e-2, int64(300+i))
		})
	}
}

func TestShapeErrorsAreClear(t *testing.T) {
	be := nntest.Backends()[0]
	conv := nn.NewConv2D(be, "conv1", 3, 4, 3, 3, nn.Same(3, 1), true)
	err := tensor.Maybe(func() { conv.Forward(be.New(2, 2, 5, 5), true) })
	if err == nil || !errorsIs(err, tensor.ErrShape) {
		t.Fatalf("wrong channel count: got %v, want a shape error", err)
	}
	dense := nn.NewDense(be, "fc1", 8, 2, true)
	err = tensor.Maybe(func() { dense.Forward(be.New(2, 9), true) })
	if err == nil || !contains(err.Error(), "fc1.weight") {
		t.Fatalf("dense shape error should name the layer, got %v", err)
	}
	if !math.IsNaN(float64(nanOf())) {
		t.Fatal("unreachable")
	}
}

// TestFusedConvReLUEqualsConvThenReLU compares the fused plan with a conv
// followed by a ReLU layer, on the golden conv fixtures' weights.
func TestFusedConvReLUEqualsConvThenReLU(t *testing.T) {
	for _, be := range nntest.Backends() {
		for _, name := range []string{"conv_5x5_same", "conv_3x3_s2_p1", "conv_cin1_5x5_same"} {
			g := nntest.Load(t, "layers", name)
			plain := buildLayer(t, be, g, name).(*nn.Conv2D)
			fused := buildLayer(t, be, g, name).(*nn.Conv2D).WithReLU()
			ref := nn.NewSequential(plain, nn.NewReLU(be))
			x, dy := g.Tensor(be, "x"), g.Tensor(be, "dy")
			y1, y2 := nntest.Host(be, ref.Forward(x, true)), nntest.Host(be, fused.Forward(x, true))
			nntest.Close(t, name+" y", y2, y1, 1e-6)
			dx1 := nntest.Host(be, ref.Backward(dy, nn.Grad{Params: true, Input: true}))
			dw1 := nntest.Host(be, plain.W.Grad)
			dx2 := nntest.Host(be, fused.Backward(dy, nn.Grad{Params: true, Input: true}))
			nntest.Close(t, name+" dx", dx2, dx1, 1e-6)
			nntest.Close(t, name+" dw", nntest.Host(be, fused.W.Grad), dw1, 1e-6)
		}
	}
}
