package data

import "math/rand/v2"

// Augment is a training-time augmentation: a random crop of the image
// zero-padded by Pad pixels on each side back to its own size, then a random
// horizontal flip when Flip is set. The zero value does nothing.
type Augment struct {
	Pad  int
	Flip bool
}

// DefaultAugment is the training augmentation of a dataset: CIFAR-10 random
// 32×32 crops of the image padded by 4 and random horizontal flips; SVHN
// random crops with padding 4 and no flip (digits are not mirror
// symmetric); none for MNIST, Fashion-MNIST and anything else.
func DefaultAugment(name string) Augment {
	switch name {
	case "cifar10", "cifar-10":
		return Augment{Pad: 4, Flip: true}
	case "svhn":
		return Augment{Pad: 4}
	}
	return Augment{}
}

// IsZero reports whether a does nothing.
func (a Augment) IsZero() bool { return a.Pad <= 0 && !a.Flip }

// AugmentRNG returns the generator for the augmentation of worker's j-th
// example of step: ChaCha8 keyed by (seed, step, worker, j, tag "augment").
func AugmentRNG(seed uint64, step int64, worker, j int) *rand.ChaCha8 {
	return chachaKey(seed, step, uint32(worker), uint32(j), tagAugment)
}

// Draw draws the augmentation parameters from r, in this order: the crop
// offsets dy then dx, each uniform in [0, 2·Pad] (offsets into the padded
// image; Pad means no shift), when Pad > 0; then flip, the low bit of the
// next 64-bit output, when Flip is set.
func (a Augment) Draw(r *rand.ChaCha8) (dy, dx int, flip bool) {
	dy, dx = a.Pad, a.Pad
	if a.Pad > 0 {
		dy = int(uniform(r, uint64(2*a.Pad+1)))
		dx = int(uniform(r, uint64(2*a.Pad+1)))
	}
	if a.Flip {
		flip = r.Uint64()&1 == 1
	}
	return
}

// Apply draws parameters from r and applies them (see ApplyParams).
func (a Augment) Apply(dst, src []float32, c, h, w int, r *rand.ChaCha8) {
	dy, dx, flip := a.Draw(r)
	a.ApplyParams(dst, src, c, h, w, dy, dx, flip)
}

// ApplyParams writes into dst (c·h·w values, CHW) the h×w window at
// (dy, dx) of src zero-padded by a.Pad, mirrored left-right when flip:
//
//	dst[c][y][x] = src[c][y+dy-Pad][x'+dx-Pad], x' = w-1-x if flip else x,
//
// and 0 where that falls outside src. dst and src must not overlap.
func (a Augment) ApplyParams(dst, src []float32, c, h, w, dy, dx int, flip bool) {
	sy, sx := dy-a.Pad, dx-a.Pad
	for ch := 0; ch < c; ch++ {
		plane := src[ch*h*w : (ch+1)*h*w]
		for y := 0; y < h; y++ {
			out := dst[(ch*h+y)*w : (ch*h+y+1)*w]
			yy := y + sy
			if yy < 0 || yy >= h {
				clear(out)
				continue
			}
			row := plane[yy*w : (yy+1)*w]
			for x := range out {
				xx := x
				if flip {
					xx = w - 1 - x
				}
				xx += sx
				if xx < 0 || xx >= w {
					out[x] = 0
				} else {
					out[x] = row[xx]
				}
			}
		}
	}
}
