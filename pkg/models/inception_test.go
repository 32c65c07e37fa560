package models

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/safetensors"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// torchvisionInceptionV3Params is sum(p.numel() for p in
// torchvision.models.inception_v3(aux_logits=False, init_weights=False)
// .parameters()) (torchvision 0.14.1).
const torchvisionInceptionV3Params = 23834568

// torchvisionInceptionV3ParamsAux is the same with aux_logits=True: the
// 27,161,264 torchvision publishes for Inception_V3_Weights.
const torchvisionInceptionV3ParamsAux = 27161264

// TestInceptionV3MatchesTorchvision builds inception-v3 at its defaults
// (width_div 1, 1000 classes, 299×299) and checks it against torchvision's
// inception_v3(aux_logits=False): the trainable parameter count, and every
// state_dict entry's name, shape and order against the list
// scripts/gen-golden.py wrote from torchvision itself
// (testdata/golden/models/inception-v3.torchvision-state-dict.txt), so a
// torchvision state_dict loads strictly.
func TestInceptionV3MatchesTorchvision(t *testing.T) {
	be := nntest.Backends()[0]
	m, err := New(be, "inception-v3", nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Input != [3]int{3, 299, 299} || m.Classes != 1000 {
		t.Errorf("Input %v, Classes %d; want (3, 299, 299) and 1000", m.Input, m.Classes)
	}
	n := 0
	for _, p := range m.Trainable() {
		n += p.Value.Numel()
	}
	if n != torchvisionInceptionV3Params {
		t.Errorf("%d trainable parameters, torchvision's inception_v3(aux_logits=False) has %d", n, torchvisionInceptionV3Params)
	}
	// torchvision's published count includes the AuxLogits head (not built
	// here): conv0 1×1 768→128 + bn, conv1 5×5 128→768 + bn, fc 768→1000.
	aux := 768*128 + 2*128 + 128*768*25 + 2*768 + 768*1000 + 1000
	if n+aux != torchvisionInceptionV3ParamsAux {
		t.Errorf("%d + AuxLogits %d = %d, torchvision publishes %d", n, aux, n+aux, torchvisionInceptionV3ParamsAux)
	}

	// Ours in state_dict order: PyTorch puts num_batches_tracked after each
	// batch norm's running_var.
	var ours []string
	ints := m.IntBuffers()
	for _, p := range m.Params() {
		ours = append(ours, p.Name+" "+shapeString(p.Value.Shape()))
		if p.Role == nn.RunningVar {
			if len(ints) == 0 || ints[0].Name != strings.TrimSuffix(p.Name, "running_var")+"num_batches_tracked" {
				t.Fatalf("integer buffers out of order at %s", p.Name)
			}
			ours = append(ours, ints[0].Name+" ")
			ints = ints[1:]
		}
	}
	if len(ints) != 0 {
		t.Fatalf("%d integer buffers left over", len(ints))
	}
	path := filepath.Join(nntest.Root(), "models", "inception-v3.torchvision-state-dict.txt")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (written by scripts/gen-golden.py --only inception where torchvision is installed)", err)
	}
	defer f.Close()
	var want []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			want = append(want, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(want) != 566 {
		t.Fatalf("%s: %d entries, want torchvision's 566", path, len(want))
	}
	if len(ours) != len(want) {
		t.Fatalf("%d state_dict entries, torchvision has %d", len(ours), len(want))
	}
	for i := range want {
		if ours[i] != want[i] {
			t.Fatalf("state_dict entry %d is %q, torchvision's is %q", i, ours[i], want[i])
		}
	}
}

func shapeString(s tensor.Shape) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return strings.Join(parts, ",")
}

// TestInceptionV3Config checks the config keys, the 75×75 minimum, the input
// check and the width divisor's channel arithmetic.
func TestInceptionV3Config(t *testing.T) {
	be := nntest.Backends()[0]
	cases := []struct {
		cfg  Config
		want []string
	}{
		{Config{"image_size": 74}, []string{"inception-v3", "image_size 74", "at least 75×75"}},
		{Config{"width": 2}, []string{"inception-v3", "unknown config key", "width", "width_div"}},
		{Config{"width_div": 0}, []string{"inception-v3", "width_div", "must be positive"}},
		{Config{"in_channels": 1}, []string{"inception-v3", "unknown config key", "in_channels"}},
	}
	for _, c := range cases {
		_, err := New(be, "inception-v3", c.cfg)
		if err == nil {
			t.Errorf("New(inception-v3, %v) succeeded", c.cfg)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("New(inception-v3, %v): error %q does not mention %q", c.cfg, err, w)
			}
		}
	}
	m, err := New(be, "inception-v3", Config{"width_div": 32, "classes": 3, "image_size": 75})
	if err != nil {
		t.Fatal(err)
	}
	if err := tensor.Maybe(func() { m.Forward(be.New(1, 3, 75, 75), false) }); err != nil {
		t.Fatalf("75×75: %v", err)
	}
	for _, shape := range [][]int{{1, 3, 76, 76}, {1, 1, 75, 75}, {1, 3, 75, 299}} {
		err := tensor.Maybe(func() { m.Forward(be.New(shape...), false) })
		if !errors.Is(err, tensor.ErrShape) || !strings.Contains(err.Error(), "inception-v3") {
			t.Errorf("input %v: got %v, want a shape error naming inception-v3", shape, err)
		}
	}
	// Channels: ceil(c/32) per conv; Mixed_5b's output is the sum of its
	// branches' (64, 64, 96, 32 → 2+2+3+1), Mixed_7c's of (320, 768, 768,
	// 192 → 10+24+24+6), which fc reads.
	if w := m.Param("Mixed_5c.branch1x1.conv.weight"); w == nil || !w.Value.Shape().Equal(tensor.Shape{2, 8, 1, 1}) {
		t.Errorf("Mixed_5c.branch1x1.conv.weight: %v, want (2, 8, 1, 1)", w)
	}
	if w := m.Param("fc.weight"); w == nil || !w.Value.Shape().Equal(tensor.Shape{3, 64}) {
		t.Errorf("fc.weight: %v, want (3, 64)", w)
	}
	if w := m.Param("Mixed_6b.branch7x7_2.conv.weight"); w == nil || !w.Value.Shape().Equal(tensor.Shape{4, 4, 1, 7}) {
		t.Errorf("Mixed_6b.branch7x7_2.conv.weight (1×7): %v, want (4, 4, 1, 7)", w)
	}
	if len(m.IntBuffers()) != 94 {
		t.Errorf("%d batch norms, torchvision's Inception3 has 94", len(m.IntBuffers()))
	}
}

// TestInceptionBlocksGradCheck compares each mixed block's Backward
// (InceptionA–E: concatenated branches, pooling branches, the nested
// concatenation of InceptionE, the 1×7/7×1/1×3/3×1 convolutions) with finite
// differences, in both batch-norm modes, at a small width.
func TestInceptionBlocksGradCheck(t *testing.T) {
	be := nntest.Backends()[0]
	b := incBuilder{be: be, div: 32}
	cases := []struct {
		name  string
		build func() (nn.Layer, int)
		cin   int
		size  int
	}{
		{"A", func() (nn.Layer, int) { return b.inceptionA("Mixed_5b", 6, 32) }, 6, 5},
		{"B", func() (nn.Layer, int) { return b.inceptionB("Mixed_6a", 9) }, 9, 7},
		{"C", func() (nn.Layer, int) { return b.inceptionC("Mixed_6b", 8, 128) }, 8, 5},
		{"D", func() (nn.Layer, int) { return b.inceptionD("Mixed_7a", 8) }, 8, 7},
		{"E", func() (nn.Layer, int) { return b.inceptionE("Mixed_7b", 10) }, 10, 3},
	}
	for i, c := range cases {
		for _, train := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/train=%v", c.name, train), func(t *testing.T) {
				l, cout := c.build()
				rng := rand.New(rand.NewSource(int64(70 + i)))
				randomizeForTest(be, l.Params(), rng)
				x := nntest.Random(be, rng, 1, 2, c.cin, c.size, c.size)
				if got := l.Forward(x, train).Dim(1); got != cout {
					t.Fatalf("%d output channels, builder says %d", got, cout)
				}
				nntest.GradCheck(t, be, l, x, train, 3, 1e-3, 1e-2, int64(80+i))
			})
		}
	}
}

// paramSubset exposes a layer with only some of its parameters, so a
// finite-difference check of a whole model probes a few tensors, not all.
type paramSubset struct {
	nn.Layer
	params []*nn.Param
}

func (p paramSubset) Params() []*nn.Param { return p.params }

// TestInceptionV3GradCheck compares the whole model's Backward with finite
// differences (evaluation mode, which is smooth; the golden test checks
// every gradient against PyTorch) on the input and on tensors spread over
// the network: the stem, 1×7 and 7×1 convs, an InceptionE 1×3 conv inside
// the nested concatenation, a pool branch, a batch norm and fc.
func TestInceptionV3GradCheck(t *testing.T) {
	be := nntest.Backends()[0]
	m, err := New(be, "inception-v3", Config{"width_div": 32, "classes": 4, "image_size": 75})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(90))
	randomizeForTest(be, m.Params(), rng)
	// He-normal conv and fc weights (variance 2/fan_in) keep the signal's
	// scale through up to 48 layers in evaluation mode; PyTorch's default
	// init shrinks it so much that the stem's gradients vanish below what
	// float32 differences resolve.
	for _, p := range m.Trainable() {
		if p.Role == nn.Weight {
			be.Upload(p.Value, nntest.Host(be, nntest.Random(be, rng, math.Sqrt(2/float64(p.FanIn)), p.Value.Shape()...)))
		}
	}
	var probe []*nn.Param
	for _, name := range []string{"Conv2d_1a_3x3.conv.weight", "Conv2d_4a_3x3.bn.weight", "Mixed_5d.branch_pool.conv.weight",
		"Mixed_6a.branch3x3.conv.weight", "Mixed_6e.branch7x7dbl_4.conv.weight", "Mixed_6c.branch7x7_2.conv.weight",
		"Mixed_7a.branch7x7x3_3.bn.bias", "Mixed_7c.branch3x3dbl_3a.conv.weight", "Mixed_7b.branch3x3_2b.bn.weight", "fc.weight", "fc.bias"} {
		p := m.Param(name)
		if p == nil {
			t.Fatalf("no parameter %s", name)
		}
		probe = append(probe, p)
	}
	x := nntest.Random(be, rng, 1, 2, 3, 75, 75)
	nntest.GradCheck(t, be, paramSubset{m.net, probe}, x, false, 4, 1e-3, 1e-2, 91)
}

// TestInceptionV3InputOnlyBackward checks that the input-gradient-only
// backward (what PGD runs) gives the full backward's dx and writes no
// parameter gradient, in both batch-norm modes.
func TestInceptionV3InputOnlyBackward(t *testing.T) {
	be := nntest.Backends()[1]
	m, err := New(be, "inception-v3", Config{"width_div": 32, "classes": 4, "image_size": 75})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(92))
	randomizeForTest(be, m.Params(), rng)
	x := nntest.Random(be, rng, 1, 3, 3, 75, 75)
	labels := []int32{0, 3, 1}
	const sentinel = 4321.5
	for _, train := range []bool{false, true} {
		step := func(g nn.Grad) []float32 {
			logits := m.Forward(x, train)
			dz := be.New(logits.Shape()...)
			nn.SoftmaxCrossEntropy(be, dz, logits, labels, 0)
			dx := m.Backward(dz, g)
			if dx == nil {
				return nil
			}
			return nntest.Host(be, dx)
		}
		full := step(nn.Grad{Params: true, Input: true})
		for _, p := range m.Trainable() {
			be.Fill(p.Grad, sentinel)
		}
		nntest.Close(t, fmt.Sprintf("train=%v input-only dx", train), step(nn.Grad{Input: true}), full, 0)
		for _, p := range m.Trainable() {
			for _, v := range nntest.Host(be, p.Grad) {
				if v != sentinel {
					t.Fatalf("train=%v: input-only backward wrote %s", train, p.Name)
				}
			}
		}
	}
}

// TestInceptionV3StateDictRoundTrip saves a model's state dict and loads it
// into a fresh model (same logits, same tensors), and checks that strict
// loading rejects a narrower model's file and a file with torchvision's
// AuxLogits head, naming the tensors.
func TestInceptionV3StateDictRoundTrip(t *testing.T) {
	be := nntest.Backends()[0]
	cfg := Config{"width_div": 32, "classes": 4, "image_size": 75}
	m, err := New(be, "inception-v3", cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(93))
	randomizeForTest(be, m.Params(), rng)
	for i, ib := range m.IntBuffers() {
		*ib.Value = int64(i)
	}
	x := nntest.Random(be, rng, 1, 2, 3, 75, 75)
	want := nntest.Host(be, m.Forward(x, false))
	path := filepath.Join(t.TempDir(), "inception.safetensors")
	if err := m.StateDict().WriteFileAtomic(path); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata[MetaModel] != "inception-v3" || !strings.Contains(f.Metadata[MetaConfig], `"width_div":32`) {
		t.Errorf("metadata %v", f.Metadata)
	}
	m2, _ := New(be, "inception-v3", cfg)
	if err := m2.LoadStateDict(f, path); err != nil {
		t.Fatal(err)
	}
	nntest.Close(t, "logits after reload", nntest.Host(be, m2.Forward(x, false)), want, 0)
	for i, p := range m.Params() {
		nntest.Close(t, p.Name, nntest.Host(be, m2.Params()[i].Value), nntest.Host(be, p.Value), 0)
	}
	for i, ib := range m2.IntBuffers() {
		if *ib.Value != int64(i) {
			t.Errorf("%s = %d, want %d", ib.Name, *ib.Value, i)
		}
	}

	narrow, _ := New(be, "inception-v3", Config{"width_div": 64, "classes": 4, "image_size": 75})
	err = narrow.LoadStateDict(f, path)
	if err == nil || !strings.Contains(err.Error(), "Conv2d_2b_3x3.conv.weight has shape [2 1 3 3], model inception-v3 wants (1, 1, 3, 3)") {
		t.Errorf("loading width_div 32 into width_div 64: %v", err)
	}
	if err := f.AddF32("AuxLogits.fc.bias", []int{4}, make([]float32, 4)); err != nil {
		t.Fatal(err)
	}
	err = m2.LoadStateDict(f, path)
	if err == nil || !strings.Contains(err.Error(), "unexpected tensors AuxLogits.fc.bias") {
		t.Errorf("a file with AuxLogits: %v", err)
	}
}
