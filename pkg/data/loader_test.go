package data

import (
	"slices"
	"testing"
)

// toyDataset is a cifar-named 3×4×5 dataset with distinct pixels.
func toyDataset(name string, n int) *Dataset {
	d := &Dataset{Name: name, C: 3, H: 4, W: 5, Classes: 10, Images: make([]float32, n*60), Labels: make([]int32, n)}
	for i := range d.Images {
		d.Images[i] = float32(i%251) / 251
	}
	for i := range d.Labels {
		d.Labels[i] = int32(i % 10)
	}
	return d
}

func TestLoaderBatch(t *testing.T) {
	d := toyDataset("cifar10", 50)
	l := NewLoader(d, LoaderOptions{Seed: 11, Parallel: 1})
	if l.Augment != (Augment{Pad: 4, Flip: true}) {
		t.Fatalf("default augmentation %+v", l.Augment)
	}
	const batch = 6
	x := make([]float32, batch*60)
	y := make([]int32, batch)
	idx, err := l.Batch(7, 1, 3, batch, x, y)
	if err != nil {
		t.Fatal(err)
	}
	if want := l.Sampler.Batch(7, 1, 3, batch); !slices.Equal(idx, want) {
		t.Fatalf("indices %v, want %v", idx, want)
	}
	// Recompute by hand: example j is augmented with AugmentRNG(11, 7, 1, j).
	flips, shifts := 0, 0
	for j, i := range idx {
		if y[j] != d.Labels[i] {
			t.Errorf("label %d", j)
		}
		want := make([]float32, 60)
		dy, dx, flip := l.Augment.Draw(AugmentRNG(11, 7, 1, j))
		l.Augment.ApplyParams(want, d.Image(i), 3, 4, 5, dy, dx, flip)
		if !slices.Equal(x[j*60:(j+1)*60], want) {
			t.Errorf("example %d differs from its recomputation", j)
		}
		if flip {
			flips++
		}
		if dy != 4 || dx != 4 {
			shifts++
		}
	}
	if shifts == 0 {
		t.Error("no example was shifted")
	}
	// Same call, other parallelism, fresh loader: same bytes.
	l2 := NewLoader(d, LoaderOptions{Seed: 11, Parallel: 4})
	x2 := make([]float32, len(x))
	y2 := make([]int32, len(y))
	if _, err := l2.Batch(7, 1, 3, batch, x2, y2); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x, x2) || !slices.Equal(y, y2) {
		t.Error("batch not reproducible")
	}
	// NoAugment: raw images.
	l3 := NewLoader(d, LoaderOptions{Seed: 11, NoAugment: true})
	if _, err := l3.Batch(7, 1, 3, batch, x2, y2); err != nil {
		t.Fatal(err)
	}
	for j, i := range idx {
		if !slices.Equal(x2[j*60:(j+1)*60], d.Image(i)) {
			t.Errorf("NoAugment example %d is not the raw image", j)
		}
	}
	// MNIST has no default augmentation; an explicit one overrides.
	if a := NewLoader(toyDataset("mnist", 5), LoaderOptions{}).Augment; !a.IsZero() {
		t.Errorf("mnist augmentation %+v", a)
	}
	if a := NewLoader(toyDataset("mnist", 5), LoaderOptions{Augment: &Augment{Pad: 2}}).Augment; a.Pad != 2 {
		t.Errorf("override %+v", a)
	}
	// Errors: bad arguments and short buffers.
	if _, err := l.Batch(0, 3, 3, batch, x, y); err == nil {
		t.Error("worker out of range accepted")
	}
	if _, err := l.Batch(0, 0, 1, batch, x[:10], y); err == nil {
		t.Error("short buffer accepted")
	}
	// Examples: evaluation without augmentation.
	if err := l.Examples([]int{3, 4}, x, y); err != nil || !slices.Equal(x[:60], d.Image(3)) || y[1] != 4 {
		t.Errorf("Examples: %v", err)
	}
	if _, err := d.Example(50, x); err == nil {
		t.Error("out-of-range example accepted")
	}
}
