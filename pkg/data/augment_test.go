package data

import (
	"slices"
	"testing"
)

func TestAugmentApplyParams(t *testing.T) {
	// One channel 3×4: values 1..12 row-major; two channels to check planes.
	src := []float32{
		1, 2, 3, 4,
		5, 6, 7, 8,
		9, 10, 11, 12,
		-1, -2, -3, -4,
		-5, -6, -7, -8,
		-9, -10, -11, -12,
	}
	a := Augment{Pad: 1, Flip: true}
	dst := make([]float32, len(src))
	cases := []struct {
		dy, dx int
		flip   bool
		want   []float32 // channel 0 only
	}{
		{1, 1, false, src[:12]}, // centred, no flip: identity
		{0, 0, false, []float32{ // shifted down-right by 1 (window at -1,-1)
			0, 0, 0, 0,
			0, 1, 2, 3,
			0, 5, 6, 7}},
		{2, 2, false, []float32{ // window at (+1,+1)
			6, 7, 8, 0,
			10, 11, 12, 0,
			0, 0, 0, 0}},
		{1, 1, true, []float32{ // flip only
			4, 3, 2, 1,
			8, 7, 6, 5,
			12, 11, 10, 9}},
		{2, 0, true, []float32{ // window at (+1,-1), then flip
			7, 6, 5, 0,
			11, 10, 9, 0,
			0, 0, 0, 0}},
	}
	for _, c := range cases {
		a.ApplyParams(dst, src, 2, 3, 4, c.dy, c.dx, c.flip)
		if !slices.Equal(dst[:12], c.want) {
			t.Errorf("dy=%d dx=%d flip=%v: %v, want %v", c.dy, c.dx, c.flip, dst[:12], c.want)
		}
		for i, v := range dst[12:] { // channel 1 is channel 0 negated
			if v != -c.want[i] {
				t.Fatalf("channel 1 differs: %v", dst[12:])
			}
		}
	}
}

func TestAugmentDrawDeterministic(t *testing.T) {
	a := Augment{Pad: 4, Flip: true}
	seen := map[[3]int]bool{}
	for step := int64(0); step < 50; step++ {
		for j := 0; j < 60; j++ {
			dy, dx, flip := a.Draw(AugmentRNG(5, step, 1, j))
			dy2, dx2, flip2 := a.Draw(AugmentRNG(5, step, 1, j))
			if dy != dy2 || dx != dx2 || flip != flip2 {
				t.Fatal("same key, different draws")
			}
			if dy < 0 || dy > 8 || dx < 0 || dx > 8 {
				t.Fatalf("offsets %d,%d out of [0,8]", dy, dx)
			}
			f := 0
			if flip {
				f = 1
			}
			seen[[3]int{dy, dx, f}] = true
		}
	}
	// 3000 draws over 9·9·2 = 162 outcomes: all of them appear.
	if len(seen) != 162 {
		t.Errorf("%d of 162 outcomes seen", len(seen))
	}
	// Different worker, step, position or seed: different streams.
	base := AugmentRNG(5, 3, 1, 2).Uint64()
	for _, r := range []uint64{AugmentRNG(6, 3, 1, 2).Uint64(), AugmentRNG(5, 4, 1, 2).Uint64(),
		AugmentRNG(5, 3, 0, 2).Uint64(), AugmentRNG(5, 3, 1, 3).Uint64()} {
		if r == base {
			t.Error("distinct keys gave the same stream")
		}
	}
	// No flip without Flip; no shift without Pad.
	svhn := DefaultAugment("svhn")
	for j := 0; j < 100; j++ {
		if _, _, flip := svhn.Draw(AugmentRNG(1, 0, 0, j)); flip {
			t.Fatal("SVHN augmentation flipped")
		}
	}
	if dy, dx, _ := (Augment{Flip: true}).Draw(AugmentRNG(1, 0, 0, 0)); dy != 0 || dx != 0 {
		t.Fatal("shift without padding")
	}
}

func TestDefaultAugment(t *testing.T) {
	for name, want := range map[string]Augment{
		"cifar10": {4, true}, "svhn": {4, false}, "mnist": {}, "fashion-mnist": {}, "imagenet": {},
	} {
		if got := DefaultAugment(name); got != want {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	if !(Augment{}).IsZero() || (Augment{Pad: 1}).IsZero() {
		t.Error("IsZero")
	}
}
