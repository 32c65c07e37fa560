package models

import (
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// TestDefaultConfigs builds every model at its defaults and checks the
// trainable parameter count against PyTorch's sum(p.numel() for p in
// model.parameters()), the input geometry, and that every batch norm has
// its num_batches_tracked buffer.
func TestDefaultConfigs(t *testing.T) {
	be := nntest.Backends()[0]
	cases := []struct {
		name   string
		params int
		input  [3]int
	}{
		{"madry-mnist", 3274634, [3]int{1, 28, 28}},
		{"resnet9", 6573120, [3]int{3, 32, 32}},
		{"resnet-v2-50", 25549352, [3]int{3, 224, 224}},
		{"resnet-v2-101", 44541480, [3]int{3, 224, 224}},
	}
	known := strings.Join(Names(), ",")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(","+known+",", ","+c.name+",") {
				t.Errorf("Names() = %s lacks %s", known, c.name)
			}
			m, err := New(be, c.name, nil)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, p := range m.Trainable() {
				n += p.Value.Numel()
				if p.Grad == nil || !p.Grad.Shape().Equal(p.Value.Shape()) {
					t.Errorf("%s: gradient missing or misshapen", p.Name)
				}
			}
			if n != c.params {
				t.Errorf("%d trainable parameters, PyTorch has %d", n, c.params)
			}
			if m.Input != c.input {
				t.Errorf("Input = %v, want %v", m.Input, c.input)
			}
			def, _ := Defaults(c.name)
			if m.Classes != def["classes"] {
				t.Errorf("Classes = %d, want %d", m.Classes, def["classes"])
			}
			names := map[string]bool{}
			var bnNames []string
			for _, p := range m.Params() {
				if names[p.Name] {
					t.Errorf("duplicate tensor name %s", p.Name)
				}
				names[p.Name] = true
				if p.Role == nn.RunningVar {
					bnNames = append(bnNames, strings.TrimSuffix(p.Name, "running_var")+"num_batches_tracked")
				}
			}
			ints := m.IntBuffers()
			if len(ints) != len(bnNames) {
				t.Fatalf("%d int buffers for %d batch norms", len(ints), len(bnNames))
			}
			for i, ib := range ints {
				if ib.Name != bnNames[i] {
					t.Errorf("int buffer %d is %s, want %s (state_dict order)", i, ib.Name, bnNames[i])
				}
			}
		})
	}
}

// TestStateDictOrder checks parameter names and order against PyTorch's
// state_dict (module registration order) where it is not obvious.
func TestStateDictOrder(t *testing.T) {
	be := nntest.Backends()[0]
	m, err := New(be, "resnet-v2-50", Config{"width": 1, "classes": 2})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range m.Params() {
		got = append(got, p.Name)
	}
	bn := func(p string) []string {
		return []string{p + ".weight", p + ".bias", p + ".running_mean", p + ".running_var"}
	}
	var want []string
	want = append(want, "conv1.weight")
	want = append(want, bn("layer1.0.bn1")...)
	want = append(want, "layer1.0.conv1.weight")
	want = append(want, bn("layer1.0.bn2")...)
	want = append(want, "layer1.0.conv2.weight")
	want = append(want, bn("layer1.0.bn3")...)
	want = append(want, "layer1.0.conv3.weight", "layer1.0.shortcut.weight")
	want = append(want, bn("layer1.1.bn1")...)
	if strings.Join(got[:len(want)], " ") != strings.Join(want, " ") {
		t.Errorf("resnet-v2-50 starts\n%v\nwant\n%v", got[:len(want)], want)
	}
	tail := append(bn("bn"), "fc.weight", "fc.bias")
	if g := got[len(got)-len(tail):]; strings.Join(g, " ") != strings.Join(tail, " ") {
		t.Errorf("resnet-v2-50 ends %v, want %v", g, tail)
	}
	for _, p := range got {
		if strings.HasPrefix(p, "layer1.1.shortcut") || strings.HasPrefix(p, "layer2.1.shortcut") {
			t.Errorf("%s: identity blocks have no shortcut conv", p)
		}
	}

	m, err = New(be, "resnet9", Config{"width": 1})
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, p := range m.Params() {
		got = append(got, p.Name)
	}
	want = append([]string{"prep.conv.weight"}, bn("prep.bn")...)
	want = append(want, "layer1.conv.conv.weight")
	want = append(want, bn("layer1.conv.bn")...)
	want = append(want, "layer1.res1.conv.weight")
	if strings.Join(got[:len(want)], " ") != strings.Join(want, " ") {
		t.Errorf("resnet9 starts\n%v\nwant\n%v", got[:len(want)], want)
	}
	if last := got[len(got)-1]; last != "fc.weight" {
		t.Errorf("resnet9 ends with %s, want fc.weight (no bias)", last)
	}
}

// TestNewErrors checks that bad names and configs are clear errors.
func TestNewErrors(t *testing.T) {
	be := nntest.Backends()[0]
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"resnet-v2-152", nil, []string{"unknown model", "resnet-v2-152", "resnet-v2-50"}},
		{"", nil, []string{"unknown model"}},
		{"resnet-v2-50", Config{"depth": 50}, []string{"resnet-v2-50", "unknown config key", "depth", "image_size"}},
		{"resnet9", Config{"image_size": 32}, []string{"resnet9", "unknown config key", "image_size"}},
		{"resnet9", Config{"width": 0}, []string{"resnet9", "width", "must be positive", "0"}},
		{"resnet-v2-101", Config{"classes": -3}, []string{"resnet-v2-101", "classes", "must be positive", "-3"}},
		{"resnet-v2-50", Config{"image_size": 0}, []string{"resnet-v2-50", "image_size", "must be positive"}},
	}
	for _, c := range cases {
		m, err := New(be, c.name, c.cfg)
		if err == nil {
			t.Errorf("New(%q, %v) = %v, want an error", c.name, c.cfg, m.Name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("New(%q, %v): error %q does not mention %q", c.name, c.cfg, err, w)
			}
		}
	}
	if _, err := Defaults("nope"); err == nil {
		t.Error("Defaults(nope) succeeded")
	}
}

// TestWrongInputSize checks that a misshapen input is a shape panic naming
// the model, before any layer runs.
func TestWrongInputSize(t *testing.T) {
	be := nntest.Backends()[0]
	cases := []struct {
		name  string
		cfg   Config
		input [3]int // a wrong example shape
	}{
		{"resnet9", Config{"width": 1}, [3]int{3, 28, 28}},
		{"resnet9", Config{"width": 1, "in_channels": 1}, [3]int{3, 32, 32}},
		{"resnet-v2-50", Config{"width": 1, "image_size": 32}, [3]int{3, 64, 64}},
		{"resnet-v2-101", Config{"width": 1, "image_size": 64}, [3]int{3, 64, 32}},
		{"resnet-v2-50", Config{"width": 1, "image_size": 32}, [3]int{1, 32, 32}},
		{"madry-mnist", nil, [3]int{1, 32, 32}},
	}
	for _, c := range cases {
		m, err := New(be, c.name, c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		x := be.New(2, c.input[0], c.input[1], c.input[2])
		err = tensor.Maybe(func() { m.Forward(x, false) })
		if !errors.Is(err, tensor.ErrShape) {
			t.Errorf("%s %v on input %v: got %v, want a tensor.ErrShape error", c.name, c.cfg, c.input, err)
			continue
		}
		if !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s: error %q does not name the model", c.name, err)
		}
	}
	// The configured image size is the one accepted.
	m, err := New(be, "resnet-v2-50", Config{"width": 1, "classes": 3, "image_size": 32})
	if err != nil {
		t.Fatal(err)
	}
	if err := tensor.Maybe(func() { m.Forward(be.New(1, 3, 32, 32), false) }); err != nil {
		t.Errorf("image_size 32: %v", err)
	}
}

// randomizeForTest gives params PyTorch-default-like random weights and
// random batch-norm parameters and statistics (γ, running_var in [0.5, 1.5),
// β, running_mean ~ N(0, 0.2²)), as scripts/gen-golden.py does.
func randomizeForTest(be tensor.Backend, params []*nn.Param, rng *rand.Rand) {
	nn.InitDefault(be, params, rng.Float64)
	for _, p := range params {
		v := make([]float32, p.Value.Numel())
		switch p.Role {
		case nn.Gamma, nn.RunningVar:
			for i := range v {
				v[i] = float32(0.5 + rng.Float64())
			}
		case nn.Beta, nn.RunningMean:
			for i := range v {
				v[i] = float32(0.2 * rng.NormFloat64())
			}
		default:
			continue
		}
		be.Upload(p.Value, v)
	}
}

// tinyResNetV2 returns resnet-v2-50 at width 2 on size×size inputs with
// random weights and batch-norm parameters, a batch x of n and its labels.
func tinyResNetV2(t *testing.T, be tensor.Backend, n, size int, seed int64) (*Model, *tensor.Tensor, []int32) {
	t.Helper()
	m, err := New(be, "resnet-v2-50", Config{"width": 2, "classes": 5, "image_size": size})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(seed))
	randomizeForTest(be, m.Params(), rng)
	x := nntest.Random(be, rng, 1, n, 3, size, size)
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(rng.Intn(5))
	}
	return m, x, labels
}

// TestInputOnlyBackward checks that a dL/dx-only backward (what PGD runs)
// gives the full backward's dx and leaves parameter gradients alone, and
// that a parameters-only backward gives the full backward's parameter
// gradients and no dx, in both batch-norm modes.
func TestInputOnlyBackward(t *testing.T) {
	be := nntest.Backends()[0]
	m, x, labels := tinyResNetV2(t, be, 2, 32, 1)
	const sentinel = 12345.5
	for _, train := range []bool{false, true} {
		step := func(g nn.Grad) *tensor.Tensor {
			logits := m.Forward(x, train)
			dz := be.New(logits.Shape()...)
			nn.SoftmaxCrossEntropy(be, dz, logits, labels, 0)
			return m.Backward(dz, g)
		}
		dxFull := nntest.Host(be, step(nn.Grad{Params: true, Input: true}))
		gradsFull := map[string][]float32{}
		for _, p := range m.Trainable() {
			gradsFull[p.Name] = nntest.Host(be, p.Grad)
			be.Fill(p.Grad, sentinel)
		}
		dx := nntest.Host(be, step(nn.Grad{Input: true}))
		for i := range dx {
			if dx[i] != dxFull[i] {
				t.Fatalf("train=%v: input-only dx[%d] = %v, full backward %v", train, i, dx[i], dxFull[i])
			}
		}
		for _, p := range m.Trainable() {
			for i, v := range nntest.Host(be, p.Grad) {
				if v != sentinel {
					t.Fatalf("train=%v: input-only backward wrote %s[%d] = %v", train, p.Name, i, v)
				}
			}
		}
		if got := step(nn.Grad{Params: true}); got != nil {
			t.Errorf("train=%v: parameters-only backward returned a dx", train)
		}
		for _, p := range m.Trainable() {
			for i, v := range nntest.Host(be, p.Grad) {
				if v != gradsFull[p.Name][i] {
					t.Fatalf("train=%v: parameters-only %s[%d] = %v, full backward %v", train, p.Name, i, v, gradsFull[p.Name][i])
				}
			}
		}
	}
}

// TestPreActBlockGradCheck compares preActBlock's Backward (the two paths
// into pre and, for the identity shortcut, into x) with finite differences,
// for the three kinds of block (strided projection, projection for a width
// change, identity) in both batch-norm modes.
func TestPreActBlockGradCheck(t *testing.T) {
	be := nntest.Backends()[0]
	cases := []struct{ cin, planes, stride int }{
		{8, 2, 2}, // projection shortcut, strided (first block of layer2-4)
		{4, 2, 1}, // projection shortcut for the width change (layer1.0)
		{8, 2, 1}, // identity shortcut
	}
	for i, c := range cases {
		b := newPreActBlock(be, "b", c.cin, c.planes, c.stride)
		if (b.shortcut == nil) != (c.stride == 1 && c.cin == 4*c.planes) {
			t.Fatalf("%+v: shortcut conv %v", c, b.shortcut != nil)
		}
		rng := rand.New(rand.NewSource(int64(40 + i)))
		randomizeForTest(be, b.Params(), rng)
		x := nntest.Random(be, rng, 1, 3, c.cin, 6, 6)
		for _, train := range []bool{false, true} {
			nntest.GradCheck(t, be, b, x, train, 6, 1e-3, 1e-2, int64(50+i))
		}
		if n := len(b.IntBuffers()); n != 3 {
			t.Errorf("%+v: %d int buffers, want 3", c, n)
		}
	}
}

// TestBackwardReadyOfAnotherNetworkReportsOnceAtTheEnd: a network that is
// not a Sequential cannot tell which gradients are final before its
// Backward returns, so BackwardReady calls ready(0) once, after it, with
// every gradient written.
func TestBackwardReadyOfAnotherNetworkReportsOnceAtTheEnd(t *testing.T) {
	be := nntest.Backends()[0]
	net := nn.NewResidual(be, nn.NewSequential(nn.NewDense(be, "a", 4, 4, true), nn.NewReLU(be), nn.NewDense(be, "b", 4, 4, false)))
	m := &Model{Name: "residual", Backend: be, net: net, params: net.Params(), leafLo: leafOffsets(net)}
	nn.InitDefault(be, m.params, rand.New(rand.NewSource(1)).Float64)
	x := nntest.Random(be, rand.New(rand.NewSource(2)), 1, 2, 4)
	dy := nntest.Random(be, rand.New(rand.NewSource(3)), 1, 2, 4)
	m.net.Forward(x, true)
	ref := make([]float32, m.FlatLayout().Total)
	m.Backward(dy, nn.Grad{Params: true})
	nn.Gather(be, m.Trainable(), ref, true)
	for _, p := range m.Trainable() {
		be.Upload(p.Grad, make([]float32, p.Grad.Numel()))
	}
	var los []int
	m.BackwardReady(dy, nn.Grad{Params: true}, func(lo int) {
		los = append(los, lo)
		got := make([]float32, len(ref))
		nn.Gather(be, m.Trainable(), got, true)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(ref[i]) {
				t.Fatalf("ready(%d): gradient element %d is %v, want %v", lo, i, got[i], ref[i])
			}
		}
	})
	if len(los) != 1 || los[0] != 0 {
		t.Fatalf("ready offsets %v, want [0]", los)
	}
}
