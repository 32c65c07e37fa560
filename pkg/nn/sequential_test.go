package nn_test

import (
	"math"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// nestedNet is a Sequential with Sequentials nested two deep, a
// parameter-free leaf between parameterized ones, and a Residual (a leaf:
// BackwardEach does not look inside it).
func nestedNet(be tensor.Backend) *nn.Sequential {
	return nn.NewSequential(
		nn.NewSequential(nn.NewDense(be, "a", 6, 5, true), nn.NewReLU(be)),
		nn.NewSequential(
			nn.NewSequential(nn.NewDense(be, "b", 5, 4, false)),
			nn.NewResidual(be, nn.NewSequential(nn.NewDense(be, "c", 4, 4, true), nn.NewReLU(be))),
		),
		nn.NewScale(be, 0.5),
		nn.NewDense(be, "d", 4, 3, true),
	)
}

// TestBackwardEachReportsEveryLeafInBackwardOrder: BackwardEach returns the
// same input gradient and parameter gradients as Backward, bit for bit, and
// calls done once per leaf from the last to the first, each time with that
// leaf's gradients final and the earlier leaves' not yet written (their
// gradients hold a NaN sentinel until their own Backward runs).
func TestBackwardEachReportsEveryLeafInBackwardOrder(t *testing.T) {
	be := nntest.Backends()[0]
	s := nestedNet(be)
	leaves := s.Leaves()
	if len(leaves) != 6 {
		t.Fatalf("%d leaves, want 6 (a, ReLU, b, the residual, the scale, d)", len(leaves))
	}
	var all []string
	for _, l := range leaves {
		for _, p := range l.Params() {
			all = append(all, p.Name)
		}
	}
	var want []string
	for _, p := range s.Params() {
		want = append(want, p.Name)
	}
	if len(all) != len(want) {
		t.Fatalf("leaves' parameters %v, Params %v", all, want)
	}
	for i := range all {
		if all[i] != want[i] {
			t.Fatalf("leaves' parameters %v, Params %v", all, want)
		}
	}
	rng := newRand(3)
	nn.InitDefault(be, s.Params(), rng.Float64)
	x, dy := be.New(2, 6), be.New(2, 3)
	xs, dys := make([]float32, 12), make([]float32, 6)
	for i := range xs {
		xs[i] = float32(rng.NormFloat64())
	}
	for i := range dys {
		dys[i] = float32(rng.NormFloat64())
	}
	be.Upload(x, xs)
	be.Upload(dy, dys)
	s.Forward(x, true)
	download := func(t *tensor.Tensor) []float32 {
		out := make([]float32, t.Numel())
		be.Download(out, t)
		return out
	}
	refDx := download(s.Backward(dy, nn.Grad{Params: true, Input: true}))
	ref := map[string][]float32{}
	for _, p := range nn.Trainable(s.Params()) {
		ref[p.Name] = download(p.Grad)
		nan := make([]float32, p.Grad.Numel())
		for i := range nan {
			nan[i] = float32(math.NaN())
		}
		be.Upload(p.Grad, nan)
	}
	same := func(a, b []float32) bool {
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				return false
			}
		}
		return len(a) == len(b)
	}
	var order []int
	dx := s.BackwardEach(dy, nn.Grad{Params: true, Input: true}, func(leaf int) {
		order = append(order, leaf)
		for i, l := range leaves {
			for _, p := range nn.Trainable(l.Params()) {
				g := download(p.Grad)
				switch {
				case i >= leaf && !same(g, ref[p.Name]):
					t.Errorf("done(%d): %s (leaf %d) is not final", leaf, p.Name, i)
				case i < leaf && !math.IsNaN(float64(g[0])):
					t.Errorf("done(%d): %s (leaf %d) was already written", leaf, p.Name, i)
				}
			}
		}
	})
	if !same(download(dx), refDx) {
		t.Error("BackwardEach's input gradient differs from Backward's")
	}
	if len(order) != len(leaves) {
		t.Fatalf("done called for %v, want every one of %d leaves", order, len(leaves))
	}
	for k, leaf := range order {
		if leaf != len(leaves)-1-k {
			t.Fatalf("done called for %v, want %d … 0", order, len(leaves)-1)
		}
	}
}
