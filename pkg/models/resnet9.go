package models

import (
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/tensor"
)

// resnet9 is the paper's SVHN model, David Page's DAWNBench ResNet-9
// ("myrtle", as in python/logitpair_torch/models.py's ResNet9). Every conv_bn
// is a 3×3 conv, padding 1, no bias (child "conv"), batch norm (child "bn")
// and ReLU; w = width:
//
//	prep      conv_bn in→w
//	layer1    conv_bn w→2w, max-pool 2, x + res2(res1(x)) (conv_bn 2w→2w each)
//	layer2    conv_bn 2w→4w, max-pool 2
//	layer3    conv_bn 4w→8w, max-pool 2, x + res2(res1(x)) (conv_bn 8w→8w each)
//	global max pool, flatten, fc 8w→classes (no bias), logits × 0.125
//
// Inputs (N, in_channels, 32, 32) in [0, 1], no normalization. Config keys
// (PyTorch kwargs): width, classes, in_channels.
func init() {
	register("resnet9", Config{"width": 64, "classes": 10, "in_channels": 3}, func(be tensor.Backend, c Config) (*Model, error) {
		w := c["width"]
		// convBN is ConvBN: prefix.conv, prefix.bn, ReLU.
		convBN := func(prefix string, cin, cout int) *nn.Sequential {
			return nn.NewSequential(
				nn.NewConv2D(be, prefix+".conv", cin, cout, 3, 3, nn.Same(3, 1), false),
				nn.NewBatchNorm(be, prefix+".bn", cout),
				nn.NewReLU(be),
			)
		}
		// layer is _Res9Layer: conv_bn and max-pool 2, then the optional
		// residual pair res1, res2.
		layer := func(prefix string, cin, cout int, residual bool) *nn.Sequential {
			s := nn.NewSequential(convBN(prefix+".conv", cin, cout), nn.NewMaxPool(be, 2, 2, 0))
			if residual {
				s.Layers = append(s.Layers, nn.NewResidual(be, nn.NewSequential(
					convBN(prefix+".res1", cout, cout),
					convBN(prefix+".res2", cout, cout),
				)))
			}
			return s
		}
		net := nn.NewSequential(
			convBN("prep", c["in_channels"], w),
			layer("layer1", w, 2*w, true),
			layer("layer2", 2*w, 4*w, false),
			layer("layer3", 4*w, 8*w, true),
			nn.NewGlobalMaxPool(be),
			nn.NewFlatten(),
			nn.NewDense(be, "fc", 8*w, c["classes"], false),
			nn.NewScale(be, 0.125),
		)
		return &Model{Input: [3]int{c["in_channels"], 32, 32}, Classes: c["classes"], net: net}, nil
	})
}
