package models

import (
	"fmt"
	"strconv"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// resnet-v2-50 and resnet-v2-101 are pre-activation bottleneck ResNets (He,
// Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual Networks"), as
// python/logitpair_torch/models.py's ResNetV2 defines them. resnet_v2_50 is
// the model of the released ALP code's 64×64 ImageNet setting; the paper's
// full-size ImageNet model is resnet_v2_101. w = width:
//
//	conv1     7×7 conv stride 2 padding 3, no bias, in→w (no BN or ReLU)
//	maxpool   3×3 stride 2 padding 1
//	layer1-4  [3,4,6,3] (50) or [3,4,23,3] (101) bottleneck blocks, planes
//	          w·[1,2,4,8], output 4·planes, stride [1,2,2,2] on the first
//	          block of a stage (torchvision-style, in the 3×3 conv)
//	bn        batch norm over 32w channels + ReLU
//	global average pool, flatten, fc 32w→classes with bias
//
// Block layerS.B: pre = relu(bn1(x)); shortcut = 1×1 conv (block stride)
// of pre when the stride or width changes, else x; out = conv3(relu(bn3(
// conv2(relu(bn2(conv1(pre))))))) + shortcut, every conv without bias.
//
// TF-slim's resnet_v2 (the released ALP code's) differs: it puts a stage's
// stride on its last block rather than its first (and keeps the last stage
// at stride 1), subsamples the identity shortcut of a strided block instead
// of giving it a conv, and pads with TF's 'SAME' rules (conv2d_same) rather
// than PyTorch's explicit padding. Ours follows the PyTorch definition so
// weights move to PyTorch with no conversion; TF-slim checkpoints do not map
// onto it one to one.
//
// Inputs (N, in_channels, image_size, image_size) in [0, 1]. Config keys:
// width, classes, in_channels (PyTorch kwargs) and image_size (the input
// size Forward checks; the network itself is fully convolutional).
func init() {
	defaults := Config{"width": 64, "classes": 1000, "in_channels": 3, "image_size": 224}
	for _, depth := range []int{50, 101} {
		register("resnet-v2-"+strconv.Itoa(depth), defaults, func(be tensor.Backend, c Config) (*Model, error) {
			return newResNetV2(be, depth, c)
		})
	}
}

var resNetV2Blocks = map[int][4]int{50: {3, 4, 6, 3}, 101: {3, 4, 23, 3}}

func newResNetV2(be tensor.Backend, depth int, c Config) (*Model, error) {
	blocks, ok := resNetV2Blocks[depth]
	if !ok {
		return nil, fmt.Errorf("unsupported depth %d", depth)
	}
	w := c["width"]
	layers := []nn.Layer{
		nn.NewConv2D(be, "conv1", c["in_channels"], w, 7, 7, nn.Pad(3, 2), false),
		nn.NewMaxPool(be, 3, 2, 1),
	}
	cin := w
	for s, n := range blocks {
		planes := w << s
		stride := 1
		if s > 0 {
			stride = 2
		}
		stage := nn.NewSequential()
		for b := 0; b < n; b++ {
			prefix := fmt.Sprintf("layer%d.%d", s+1, b)
			stage.Layers = append(stage.Layers, newPreActBlock(be, prefix, cin, planes, stride))
			cin = planes * preActExpansion
			stride = 1
		}
		layers = append(layers, stage)
	}
	layers = append(layers,
		nn.NewBatchNorm(be, "bn", cin),
		nn.NewReLU(be),
		nn.NewGlobalAvgPool(be),
		nn.NewFlatten(),
		nn.NewDense(be, "fc", cin, c["classes"], true),
	)
	size := c["image_size"]
	return &Model{Input: [3]int{c["in_channels"], size, size}, Classes: c["classes"], net: nn.NewSequential(layers...)}, nil
}

const preActExpansion = 4

// preActBlock is PyTorch's PreActBottleneck (see newResNetV2's comment):
//
//	pre = relu(bn1(x))
//	y   = conv3(relu(bn3(conv2(relu(bn2(conv1(pre))))))) + (shortcut(pre) or x)
//
// Backward sends dy down both paths: dpre = main'ᵀdy (+ shortcut'ᵀdy), and
// dx = (relu∘bn1)'ᵀdpre (+ dy for the identity shortcut).
type preActBlock struct {
	be       tensor.Backend
	bn1      *nn.BatchNorm
	pre      *nn.Sequential // bn1, ReLU
	conv1    *nn.Conv2D
	bn2      *nn.BatchNorm
	conv2    *nn.Conv2D
	bn3      *nn.BatchNorm
	conv3    *nn.Conv2D
	main     *nn.Sequential // conv1, bn2, ReLU, conv2, bn3, ReLU, conv3
	shortcut *nn.Conv2D     // nil: identity
	states   map[int]*preActState
	cur      *preActState
}

// preActState holds one batch size's buffers: y the output, dpre the sum of
// the two gradients reaching pre (projection shortcut only), dx the input
// gradient (identity shortcut only).
type preActState struct{ y, dpre, dx *tensor.Tensor }

func newPreActBlock(be tensor.Backend, prefix string, cin, planes, stride int) *preActBlock {
	cout := planes * preActExpansion
	b := &preActBlock{
		be:    be,
		bn1:   nn.NewBatchNorm(be, prefix+".bn1", cin),
		conv1: nn.NewConv2D(be, prefix+".conv1", cin, planes, 1, 1, nn.Pad(0, 1), false),
		bn2:   nn.NewBatchNorm(be, prefix+".bn2", planes),
		conv2: nn.NewConv2D(be, prefix+".conv2", planes, planes, 3, 3, nn.Pad(1, stride), false),
		bn3:   nn.NewBatchNorm(be, prefix+".bn3", planes),
		conv3: nn.NewConv2D(be, prefix+".conv3", planes, cout, 1, 1, nn.Pad(0, 1), false),
	}
	b.pre = nn.NewSequential(b.bn1, nn.NewReLU(be))
	b.main = nn.NewSequential(b.conv1, b.bn2, nn.NewReLU(be), b.conv2, b.bn3, nn.NewReLU(be), b.conv3)
	if stride != 1 || cin != cout {
		b.shortcut = nn.NewConv2D(be, prefix+".shortcut", cin, cout, 1, 1, nn.Pad(0, stride), false)
	}
	return b
}

// Forward implements nn.Layer.
func (b *preActBlock) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	pre := b.pre.Forward(x, train)
	sc := x
	if b.shortcut != nil {
		sc = b.shortcut.Forward(pre, train)
	}
	out := b.main.Forward(pre, train)
	if b.states == nil {
		b.states = map[int]*preActState{}
	}
	st, ok := b.states[x.Dim(0)]
	if !ok {
		st = &preActState{y: b.be.New(out.Shape()...)}
		b.states[x.Dim(0)] = st
	}
	b.cur = st
	b.be.Add(st.y, out, sc) // panics with ErrShape if the shortcut does not fit
	return st.y
}

// Backward implements nn.Layer.
func (b *preActBlock) Backward(dy *tensor.Tensor, g nn.Grad) *tensor.Tensor {
	st := b.cur
	if st == nil {
		panic("models: preActBlock " + b.bn1.Gamma.Name + ": Backward before Forward")
	}
	tensor.SameShape("preActBlock "+b.bn1.Gamma.Name, dy, st.y)
	if !g.Params && !g.Input {
		return nil
	}
	// pre feeds the main path and the projection shortcut: its gradient is
	// needed for bn1's parameter gradients even when dx is not.
	inner := nn.Grad{Params: g.Params, Input: true}
	dpre := b.main.Backward(dy, inner)
	if b.shortcut != nil {
		dsc := b.shortcut.Backward(dy, inner)
		if st.dpre == nil {
			st.dpre = b.be.New(dpre.Shape()...)
		}
		b.be.Add(st.dpre, dpre, dsc)
		dpre = st.dpre
	}
	dx := b.pre.Backward(dpre, g)
	if !g.Input {
		return nil
	}
	if b.shortcut == nil {
		if st.dx == nil {
			st.dx = b.be.New(dx.Shape()...)
		}
		b.be.Add(st.dx, dx, dy)
		dx = st.dx
	}
	return dx
}

// Params implements nn.Layer in PyTorch's state_dict order (registration
// order in PreActBottleneck.__init__): bn1, conv1, bn2, conv2, bn3, conv3,
// shortcut.
func (b *preActBlock) Params() []*nn.Param {
	out := b.bn1.Params()
	for _, l := range []nn.Layer{b.conv1, b.bn2, b.conv2, b.bn3, b.conv3} {
		out = append(out, l.Params()...)
	}
	if b.shortcut != nil {
		out = append(out, b.shortcut.Params()...)
	}
	return out
}

// IntBuffers implements nn.IntBufferer: bn1, bn2, bn3's num_batches_tracked.
func (b *preActBlock) IntBuffers() []*nn.IntBuffer {
	return nn.CollectIntBuffers(b.bn1, b.bn2, b.bn3)
}
