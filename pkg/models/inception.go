package models

import (
	"fmt"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// inception-v3 is torchvision's Inception3 (Szegedy et al. 2016, "Rethinking
// the Inception Architecture for Computer Vision"), the paper's ImageNet
// model at 299×299, with torchvision's module and state_dict names, so a
// torchvision state_dict (inception_v3(aux_logits=False)) loads strictly:
//
//	Conv2d_1a_3x3 (3→32, stride 2), Conv2d_2a_3x3 (32→32),
//	Conv2d_2b_3x3 (32→64, padding 1), max pool 3×3 stride 2,
//	Conv2d_3b_1x1 (64→80), Conv2d_4a_3x3 (80→192), max pool 3×3 stride 2,
//	Mixed_5b, 5c, 5d (InceptionA, pool features 32, 64, 64),
//	Mixed_6a (InceptionB), Mixed_6b…6e (InceptionC, 7×7 channels 128,
//	160, 160, 192), Mixed_7a (InceptionD), Mixed_7b, 7c (InceptionE),
//	global average pool (torchvision's AdaptiveAvgPool2d((1, 1))),
//	flatten, fc 2048→classes with bias.
//
// Every convolution is a BasicConv2d: prefix.conv (no bias), prefix.bn
// (BatchNorm2d, eps 0.001, momentum 0.1), ReLU. A mixed block runs its
// branches on the same input and concatenates them along channels
// (nn.Concat); the average-pool branches pool 3×3 at stride 1 with padding
// 1 counted in the divisor (F.avg_pool2d's count_include_pad=True). The
// 1×7, 7×1, 1×3 and 3×1 convolutions pad (0, 3), (3, 0), (0, 1), (1, 0).
//
// Differences from torchvision, all deliberate:
//   - No auxiliary classifier (AuxLogits): torchvision uses it only in
//     training mode, where the forward returns a second set of logits for an
//     extra loss term; logitpair's models have one logits output. A
//     torchvision state_dict saved with aux_logits=True loads after its
//     AuxLogits.* tensors are dropped (strict loading names them otherwise).
//   - No dropout: torchvision applies Dropout(0.5) before fc in training
//     mode (identity in evaluation mode, so evaluation-mode logits are the
//     same); logitpair's training is deterministic and has no dropout layer.
//   - transform_input is False: the input is used as given, in [0, 1] like
//     every logitpair model. torchvision's pretrained weights were trained
//     with transform_input=True, i.e. on inputs scaled to [−1, 1]: they load
//     by name and shape, but their accuracy holds only for such inputs.
//   - Weights start from PyTorch's default initialization (Model.Init), as
//     torchvision's init_weights=False, not its truncated-normal init.
//
// Config keys: classes (1000), image_size (299; the smallest input the
// network fits is 75×75, as torchvision's), width_div (1): every channel
// count c of a convolution becomes ceil(c/width_div), a width multiplier
// of 1/width_div for tiny test instances (config values are integers), and
// a block's input channels are the sum of the previous block's branch
// outputs. width_div 1 is torchvision's network: 23,834,568 trainable
// parameters at 1000 classes (torchvision's published 27,161,264 includes
// the 3,326,696 of the AuxLogits head).
func init() {
	register("inception-v3", Config{"classes": 1000, "image_size": 299, "width_div": 1}, newInceptionV3)
}

// InceptionMinImageSize is the smallest input height and width inception-v3
// fits: Mixed_7a's stride-2 3×3 convolution needs a 3×3 input.
const InceptionMinImageSize = 75

// incBuilder makes inception-v3's layers at one width.
type incBuilder struct {
	be  tensor.Backend
	div int
}

// ch is channel count c at the builder's width: ceil(c/div).
func (b incBuilder) ch(c int) int { return (c + b.div - 1) / b.div }

// basic is torchvision's BasicConv2d: conv (kh×kw, stride s, padding ph
// rows and pw columns each side, no bias) → BatchNorm2d(eps 0.001) → ReLU,
// named prefix.conv and prefix.bn. cin is the actual input channel count;
// cout is torchvision's, scaled here. It returns the layer and its actual
// output channels.
func (b incBuilder) basic(prefix string, cin, cout, kh, kw, s, ph, pw int) (*nn.Sequential, int) {
	co := b.ch(cout)
	p := tensor.ConvParams{StrideH: s, StrideW: s, PadTop: ph, PadBottom: ph, PadLeft: pw, PadRight: pw}
	bn := nn.NewBatchNorm(b.be, prefix+".bn", co)
	bn.Eps = 0.001
	return nn.NewSequential(nn.NewConv2D(b.be, prefix+".conv", cin, co, kh, kw, p, false), bn, nn.NewReLU(b.be)), co
}

// chain runs basic convs one after another, named prefix.<spec name> (or
// the spec name alone when prefix is empty). It returns the chain and its
// output channels.
func (b incBuilder) chain(prefix string, cin int, specs ...incConv) (*nn.Sequential, int) {
	seq := nn.NewSequential()
	for _, s := range specs {
		name := s.name
		if prefix != "" {
			name = prefix + "." + name
		}
		l, co := b.basic(name, cin, s.cout, s.kh, s.kw, s.stride, s.ph, s.pw)
		seq.Layers = append(seq.Layers, l)
		cin = co
	}
	return seq, cin
}

// incConv is one BasicConv2d of a chain: its name, torchvision's output
// channels, kernel, stride and padding (rows, columns each side).
type incConv struct {
	name           string
	cout, kh, kw   int
	stride, ph, pw int
}

func conv1x1(name string, cout int) incConv   { return incConv{name, cout, 1, 1, 1, 0, 0} }
func conv3x3(name string, cout int) incConv   { return incConv{name, cout, 3, 3, 1, 1, 1} } // padding 1
func conv3x3s2(name string, cout int) incConv { return incConv{name, cout, 3, 3, 2, 0, 0} } // stride 2, no padding
func conv1x7(name string, cout int) incConv   { return incConv{name, cout, 1, 7, 1, 0, 3} }
func conv7x1(name string, cout int) incConv   { return incConv{name, cout, 7, 1, 1, 3, 0} }

// poolBranch is avg_pool2d(3, stride 1, padding 1, count_include_pad) then
// a 1×1 BasicConv2d prefix.branch_pool.
func (b incBuilder) poolBranch(prefix string, cin, cout int) (nn.Layer, int) {
	conv, co := b.basic(prefix+".branch_pool", cin, cout, 1, 1, 1, 0, 0)
	return nn.NewSequential(nn.NewAvgPool(b.be, 3, 1, 1), conv), co
}

// concat joins branches whose output channels are chans.
func (b incBuilder) concat(branches []nn.Layer, chans []int) (nn.Layer, int) {
	total := 0
	for _, c := range chans {
		total += c
	}
	return nn.NewConcat(b.be, branches...), total
}

// inceptionA is torchvision's InceptionA (Mixed_5b–5d, 35×35 at 299).
func (b incBuilder) inceptionA(p string, cin, poolFeatures int) (nn.Layer, int) {
	b1, c1 := b.basic(p+".branch1x1", cin, 64, 1, 1, 1, 0, 0)
	b5, c5 := b.chain(p, cin, conv1x1("branch5x5_1", 48), incConv{"branch5x5_2", 64, 5, 5, 1, 2, 2})
	b3, c3 := b.chain(p, cin, conv1x1("branch3x3dbl_1", 64), conv3x3("branch3x3dbl_2", 96), conv3x3("branch3x3dbl_3", 96))
	bp, cp := b.poolBranch(p, cin, poolFeatures)
	return b.concat([]nn.Layer{b1, b5, b3, bp}, []int{c1, c5, c3, cp})
}

// inceptionB is torchvision's InceptionB (Mixed_6a: 35×35 → 17×17).
func (b incBuilder) inceptionB(p string, cin int) (nn.Layer, int) {
	b3, c3 := b.basic(p+".branch3x3", cin, 384, 3, 3, 2, 0, 0)
	bd, cd := b.chain(p, cin, conv1x1("branch3x3dbl_1", 64), conv3x3("branch3x3dbl_2", 96), conv3x3s2("branch3x3dbl_3", 96))
	return b.concat([]nn.Layer{b3, bd, nn.NewMaxPool(b.be, 3, 2, 0)}, []int{c3, cd, cin})
}

// inceptionC is torchvision's InceptionC (Mixed_6b–6e, 17×17 at 299).
func (b incBuilder) inceptionC(p string, cin, c7 int) (nn.Layer, int) {
	b1, c1 := b.basic(p+".branch1x1", cin, 192, 1, 1, 1, 0, 0)
	b7, cs7 := b.chain(p, cin, conv1x1("branch7x7_1", c7), conv1x7("branch7x7_2", c7), conv7x1("branch7x7_3", 192))
	bd, cd := b.chain(p, cin, conv1x1("branch7x7dbl_1", c7), conv7x1("branch7x7dbl_2", c7), conv1x7("branch7x7dbl_3", c7),
		conv7x1("branch7x7dbl_4", c7), conv1x7("branch7x7dbl_5", 192))
	bp, cp := b.poolBranch(p, cin, 192)
	return b.concat([]nn.Layer{b1, b7, bd, bp}, []int{c1, cs7, cd, cp})
}

// inceptionD is torchvision's InceptionD (Mixed_7a: 17×17 → 8×8).
func (b incBuilder) inceptionD(p string, cin int) (nn.Layer, int) {
	b3, c3 := b.chain(p, cin, conv1x1("branch3x3_1", 192), conv3x3s2("branch3x3_2", 320))
	b7, c7 := b.chain(p, cin, conv1x1("branch7x7x3_1", 192), conv1x7("branch7x7x3_2", 192), conv7x1("branch7x7x3_3", 192),
		conv3x3s2("branch7x7x3_4", 192))
	return b.concat([]nn.Layer{b3, b7, nn.NewMaxPool(b.be, 3, 2, 0)}, []int{c3, c7, cin})
}

// inceptionE is torchvision's InceptionE (Mixed_7b, 7c, 8×8 at 299). Its
// 3×3 branches end in a 1×3 and a 3×1 conv side by side on the same input,
// concatenated: a Concat nested in the block's Concat.
func (b incBuilder) inceptionE(p string, cin int) (nn.Layer, int) {
	b1, c1 := b.basic(p+".branch1x1", cin, 320, 1, 1, 1, 0, 0)

	s3, c := b.basic(p+".branch3x3_1", cin, 384, 1, 1, 1, 0, 0)
	a, ca := b.basic(p+".branch3x3_2a", c, 384, 1, 3, 1, 0, 1)
	bb, cb := b.basic(p+".branch3x3_2b", c, 384, 3, 1, 1, 1, 0)
	split3, c3 := b.concat([]nn.Layer{a, bb}, []int{ca, cb})
	b3 := nn.NewSequential(s3, split3)

	sd, c := b.chain(p, cin, conv1x1("branch3x3dbl_1", 448), conv3x3("branch3x3dbl_2", 384))
	a, ca = b.basic(p+".branch3x3dbl_3a", c, 384, 1, 3, 1, 0, 1)
	bb, cb = b.basic(p+".branch3x3dbl_3b", c, 384, 3, 1, 1, 1, 0)
	splitD, cd := b.concat([]nn.Layer{a, bb}, []int{ca, cb})
	sd.Layers = append(sd.Layers, splitD)

	bp, cp := b.poolBranch(p, cin, 192)
	return b.concat([]nn.Layer{b1, b3, sd, bp}, []int{c1, c3, cd, cp})
}

func newInceptionV3(be tensor.Backend, c Config) (*Model, error) {
	size := c["image_size"]
	if size < InceptionMinImageSize {
		return nil, fmt.Errorf("image_size %d is too small: inception-v3 needs at least %d×%d inputs", size, InceptionMinImageSize, InceptionMinImageSize)
	}
	b := incBuilder{be: be, div: c["width_div"]}
	stem, cin := b.chain("", 3,
		conv3x3s2("Conv2d_1a_3x3", 32),
		incConv{"Conv2d_2a_3x3", 32, 3, 3, 1, 0, 0},
		conv3x3("Conv2d_2b_3x3", 64))
	layers := append([]nn.Layer(nil), stem.Layers...)
	layers = append(layers, nn.NewMaxPool(be, 3, 2, 0)) // maxpool1
	s2, cin := b.chain("", cin, conv1x1("Conv2d_3b_1x1", 80), incConv{"Conv2d_4a_3x3", 192, 3, 3, 1, 0, 0})
	layers = append(layers, s2.Layers...)
	layers = append(layers, nn.NewMaxPool(be, 3, 2, 0)) // maxpool2
	add := func(l nn.Layer, c int) {
		layers = append(layers, l)
		cin = c
	}
	add(b.inceptionA("Mixed_5b", cin, 32))
	add(b.inceptionA("Mixed_5c", cin, 64))
	add(b.inceptionA("Mixed_5d", cin, 64))
	add(b.inceptionB("Mixed_6a", cin))
	add(b.inceptionC("Mixed_6b", cin, 128))
	add(b.inceptionC("Mixed_6c", cin, 160))
	add(b.inceptionC("Mixed_6d", cin, 160))
	add(b.inceptionC("Mixed_6e", cin, 192))
	add(b.inceptionD("Mixed_7a", cin))
	add(b.inceptionE("Mixed_7b", cin))
	add(b.inceptionE("Mixed_7c", cin))
	layers = append(layers,
		nn.NewGlobalAvgPool(be),
		nn.NewFlatten(),
		nn.NewDense(be, "fc", cin, c["classes"], true),
	)
	return &Model{Input: [3]int{3, size, size}, Classes: c["classes"], net: nn.NewSequential(layers...)}, nil
}
