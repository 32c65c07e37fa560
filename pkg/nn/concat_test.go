package nn_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// asym is stride 1 with ph rows and pw columns of padding on each side
// (PyTorch's padding=(ph, pw)).
func asym(ph, pw int) tensor.ConvParams {
	return tensor.ConvParams{StrideH: 1, StrideW: 1, PadTop: ph, PadBottom: ph, PadLeft: pw, PadRight: pw}
}

// goldenConcat builds the layer of testdata/golden/concat/concat_branches
// (scripts/gen-golden.py's concat_cases): four branches, the last a 1×1 conv
// feeding a nested Concat of a 1×3 and a 3×1 conv.
func goldenConcat(be tensor.Backend) *nn.Concat {
	b3 := nn.NewSequential(
		nn.NewConv2D(be, "b3", 3, 2, 1, 1, nn.Pad(0, 1), false),
		nn.NewConcat(be,
			nn.NewConv2D(be, "b3a", 2, 2, 1, 3, asym(0, 1), false),
			nn.NewConv2D(be, "b3b", 2, 3, 3, 1, asym(1, 0), true)))
	return nn.NewConcat(be,
		nn.NewConv2D(be, "b0", 3, 4, 1, 3, asym(0, 1), true),
		nn.NewSequential(nn.NewConv2D(be, "b1", 3, 2, 3, 1, asym(1, 0), false), nn.NewReLU(be)),
		nn.NewSequential(nn.NewAvgPool(be, 3, 1, 1), nn.NewConv2D(be, "b2", 3, 3, 1, 1, nn.Pad(0, 1), false)),
		b3)
}

// TestConcatMatchesPyTorch checks Concat (with 1×3 and 3×1 convolutions,
// padding (0, 1) and (1, 0), and a nested Concat) against torch.cat of the
// same branches: output, input gradient (the sum over branches) and every
// parameter gradient, on every backend; then the input-gradient-only
// backward gives the same dx and leaves parameter gradients alone.
func TestConcatMatchesPyTorch(t *testing.T) {
	for _, be := range nntest.Backends() {
		t.Run(nntest.Name(be), func(t *testing.T) {
			g := nntest.Load(t, "concat", "concat_branches")
			l := goldenConcat(be)
			var names []string
			if err := json.Unmarshal([]byte(g.F.Metadata["params"]), &names); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range l.Params() {
				got = append(got, p.Name)
			}
			if strings.Join(got, " ") != strings.Join(names, " ") {
				t.Fatalf("parameters %v, fixture has %v", got, names)
			}
			loadParams(t, be, g, l.Params())
			x, dy := g.Tensor(be, "x"), g.Tensor(be, "dy")
			y := l.Forward(x, true)
			if want := []int{2, 4 + 2 + 3 + 5, 5, 6}; !y.Shape().Equal(want) {
				t.Fatalf("output shape %v, want %v", y.Shape(), want)
			}
			nntest.Close(t, "y", nntest.Host(be, y), first(g.F32("y")), nntest.RelTol)
			dx := l.Backward(dy, nn.Grad{Params: true, Input: true})
			nntest.Close(t, "dx", nntest.Host(be, dx), first(g.F32("dx")), nntest.RelTol)
			for _, p := range l.Params() {
				nntest.Close(t, "grad."+p.Name, nntest.Host(be, p.Grad), first(g.F32("grad."+p.Name)), nntest.RelTol)
				be.Fill(p.Grad, 7)
			}
			dx2 := l.Backward(dy, nn.Grad{Input: true})
			nntest.Close(t, "dx (input only)", nntest.Host(be, dx2), first(g.F32("dx")), nntest.RelTol)
			for _, p := range l.Params() {
				for _, v := range nntest.Host(be, p.Grad) {
					if v != 7 {
						t.Fatalf("input-only backward wrote %s", p.Name)
					}
				}
			}
			if l.Backward(dy, nn.Grad{Params: true}) != nil {
				t.Error("parameters-only backward returned a dx")
			}
			for _, p := range l.Params() {
				nntest.Close(t, "grad."+p.Name+" (parameters only)", nntest.Host(be, p.Grad), first(g.F32("grad."+p.Name)), nntest.RelTol)
			}
		})
	}
}

// TestConcatFiniteDifferences checks Concat's Backward (dy split per branch,
// branch input gradients summed) and the non-square, asymmetrically padded
// convolutions Inception uses (1×7 padding (0, 3), 7×1 padding (3, 0), 1×3,
// 3×1, and a kernel with different top/bottom padding) against central
// differences, with batch-norm branches in both modes.
func TestConcatFiniteDifferences(t *testing.T) {
	be := nntest.Backends()[0]
	bn := func(name string, c int) *nn.BatchNorm { b := nn.NewBatchNorm(be, name, c); b.Eps = 0.001; return b }
	cases := []struct {
		name  string
		l     nn.Layer
		shape []int
		train bool
	}{
		{"conv1x7-pad0,3", nn.NewConv2D(be, "c", 3, 4, 1, 7, asym(0, 3), true), []int{2, 3, 5, 6}, true},
		{"conv7x1-pad3,0", nn.NewConv2D(be, "c", 3, 4, 7, 1, asym(3, 0), false), []int{2, 3, 6, 5}, true},
		{"conv1x3-pad0,1", nn.NewConv2D(be, "c", 2, 3, 1, 3, asym(0, 1), false), []int{2, 2, 4, 4}, true},
		{"conv3x1-pad1,0-stride2", nn.NewConv2D(be, "c", 2, 3, 3, 1, tensor.ConvParams{StrideH: 2, StrideW: 2, PadTop: 1, PadBottom: 1}, true), []int{2, 2, 7, 5}, true},
		{"conv2x5-uneven-pad", nn.NewConv2D(be, "c", 2, 3, 2, 5, tensor.ConvParams{StrideH: 1, StrideW: 2, PadTop: 0, PadBottom: 1, PadLeft: 2, PadRight: 1}, true), []int{2, 2, 5, 7}, true},
		{"concat-convs", nn.NewConcat(be,
			nn.NewConv2D(be, "a", 3, 2, 1, 1, nn.Pad(0, 1), true),
			nn.NewConv2D(be, "b", 3, 3, 1, 3, asym(0, 1), false),
			nn.NewConv2D(be, "c", 3, 1, 3, 1, asym(1, 0), true)), []int{2, 3, 4, 5}, true},
		{"concat-pool-branches", nn.NewConcat(be,
			nn.NewConv2D(be, "a", 3, 4, 3, 3, nn.Pad(0, 2), true),
			nn.NewMaxPool(be, 3, 2, 0),
			nn.NewSequential(nn.NewAvgPool(be, 3, 2, 0), nn.NewConv2D(be, "p", 3, 2, 1, 1, nn.Pad(0, 1), false))), []int{2, 3, 7, 7}, true},
		{"concat-bn-train", nn.NewConcat(be,
			nn.NewSequential(nn.NewConv2D(be, "a.conv", 3, 3, 1, 1, nn.Pad(0, 1), false), bn("a.bn", 3), nn.NewReLU(be)),
			nn.NewSequential(nn.NewConv2D(be, "b.conv", 3, 2, 3, 3, nn.Same(3, 1), false), bn("b.bn", 2))), []int{3, 3, 4, 4}, true},
		{"concat-bn-eval", nn.NewConcat(be,
			nn.NewSequential(nn.NewConv2D(be, "a.conv", 3, 3, 1, 1, nn.Pad(0, 1), false), bn("a.bn", 3), nn.NewReLU(be)),
			nn.NewSequential(nn.NewConv2D(be, "b.conv", 3, 2, 3, 3, nn.Same(3, 1), false), bn("b.bn", 2))), []int{3, 3, 4, 4}, false},
		{"concat-nested", nn.NewSequential(nn.NewConv2D(be, "s", 2, 3, 1, 1, nn.Pad(0, 1), false), nn.NewConcat(be,
			nn.NewConcat(be, nn.NewConv2D(be, "x", 3, 2, 1, 3, asym(0, 1), false), nn.NewConv2D(be, "y", 3, 2, 3, 1, asym(1, 0), false)),
			nn.NewConv2D(be, "z", 3, 1, 1, 1, nn.Pad(0, 1), true))), []int{2, 2, 3, 3}, true},
		{"concat-single-branch", nn.NewConcat(be, nn.NewConv2D(be, "a", 2, 3, 3, 3, nn.Same(3, 1), true)), []int{2, 2, 3, 4}, true},
		{"concat-rank2", nn.NewConcat(be, nn.NewDense(be, "d1", 5, 3, true), nn.NewDense(be, "d2", 5, 2, false)), []int{4, 5}, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := newRand(int64(400 + i))
			nn.InitDefault(be, c.l.Params(), rng.Float64)
			for _, p := range nn.Trainable(c.l.Params()) {
				if p.Role != nn.Weight {
					be.Upload(p.Value, nntest.Host(be, nntest.Random(be, rng, 0.5, p.Value.Shape()...)))
				}
			}
			x := nntest.Random(be, newRand(int64(500+i)), 1, c.shape...)
			nntest.GradCheck(t, be, c.l, x, c.train, 12, 1e-3, 1e-2, int64(600+i))
		})
	}
}

// TestConcatLayout checks the concatenation order against the branches run
// alone, at two batch sizes in turn (per-batch-size buffers), and that
// integer buffers and parameters are collected in branch order.
func TestConcatLayout(t *testing.T) {
	be := nntest.Backends()[1] // two threads
	a := nn.NewConv2D(be, "a", 2, 3, 3, 3, nn.Same(3, 1), true)
	b := nn.NewSequential(nn.NewConv2D(be, "b.conv", 2, 2, 1, 1, nn.Pad(0, 1), false), nn.NewBatchNorm(be, "b.bn", 2))
	rng := newRand(7)
	nn.InitDefault(be, append(a.Params(), b.Params()...), rng.Float64)
	l := nn.NewConcat(be, a, b)
	for _, n := range []int{3, 2, 3} {
		x := nntest.Random(be, rng, 1, n, 2, 4, 5)
		y := nntest.Host(be, l.Forward(x, false))
		ya, yb := nntest.Host(be, a.Forward(x, false)), nntest.Host(be, b.Forward(x, false))
		hw := 4 * 5
		for e := 0; e < n; e++ {
			row := y[e*5*hw : (e+1)*5*hw]
			nntest.Close(t, "branch a", row[:3*hw], ya[e*3*hw:(e+1)*3*hw], 0)
			nntest.Close(t, "branch b", row[3*hw:], yb[e*2*hw:(e+1)*2*hw], 0)
		}
	}
	var names []string
	for _, p := range l.Params() {
		names = append(names, p.Name)
	}
	if want := "a.weight a.bias b.conv.weight b.bn.weight b.bn.bias b.bn.running_mean b.bn.running_var"; strings.Join(names, " ") != want {
		t.Errorf("params %v, want %s", names, want)
	}
	if ib := l.IntBuffers(); len(ib) != 1 || ib[0].Name != "b.bn.num_batches_tracked" {
		t.Errorf("int buffers %v", ib)
	}
}

// TestConcatShapeErrors checks that branches whose outputs cannot be
// concatenated, and a dy of the wrong shape, are shape errors naming Concat.
func TestConcatShapeErrors(t *testing.T) {
	be := nntest.Backends()[0]
	l := nn.NewConcat(be,
		nn.NewConv2D(be, "a", 2, 3, 3, 3, nn.Same(3, 1), false),
		nn.NewConv2D(be, "b", 2, 3, 3, 3, nn.Pad(0, 1), false)) // 2 rows and columns smaller
	err := tensor.Maybe(func() { l.Forward(be.New(2, 2, 5, 5), false) })
	if !errors.Is(err, tensor.ErrShape) || !strings.Contains(err.Error(), "Concat") || !strings.Contains(err.Error(), "branch 1") {
		t.Errorf("mismatched branches: got %v, want a shape error naming Concat and branch 1", err)
	}
	ok := nn.NewConcat(be, nn.NewConv2D(be, "a", 2, 3, 1, 1, nn.Pad(0, 1), false), nn.NewConv2D(be, "b", 2, 1, 1, 1, nn.Pad(0, 1), false))
	ok.Forward(be.New(2, 2, 3, 3), true)
	err = tensor.Maybe(func() { ok.Backward(be.New(2, 3, 3, 3), nn.Grad{Input: true}) })
	if !errors.Is(err, tensor.ErrShape) || !strings.Contains(err.Error(), "Concat") {
		t.Errorf("wrong dy: got %v, want a shape error naming Concat", err)
	}
	fresh := nn.NewConcat(be, nn.NewReLU(be))
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "Concat") {
			t.Errorf("Backward before Forward: got %v", r)
		}
	}()
	fresh.Backward(be.New(1, 1), nn.Grad{Input: true})
}
