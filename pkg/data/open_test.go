package data_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/data/datatest"
)

// classOf returns the class whose color img (CHW, h×w) is closest to on
// average, and that mean distance in [0,1] units.
func classOf(img []float32, h, w, classes int) (int, float64) {
	best, bestD := -1, math.Inf(1)
	for k := 0; k < classes; k++ {
		c := datatest.ClassColor(k)
		rgb := [3]float64{float64(c.R), float64(c.G), float64(c.B)}
		var d float64
		for ch := 0; ch < 3; ch++ {
			for i := 0; i < h*w; i++ {
				d += math.Abs(float64(img[ch*h*w+i]) - rgb[ch]/255)
			}
		}
		d /= float64(3 * h * w)
		if d < bestD {
			best, bestD = k, d
		}
	}
	return best, bestD
}

// checkSource checks shape, pixel range, and that every image's color is
// its label's (so the labels of a split agree with the file layout).
func checkSource(t *testing.T, what string, src data.Source, n, classes, h, w int) {
	t.Helper()
	info := src.Info()
	if info.Len != n || info.Classes != classes || info.C != 3 || info.H != h || info.W != w {
		t.Fatalf("%s: info %+v, want %d examples of 3×%d×%d, %d classes", what, info, n, h, w, classes)
	}
	buf := make([]float32, info.Size())
	for i := 0; i < n; i++ {
		l, err := src.Example(i, buf)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range buf {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("%s: pixel %v outside [0,1]", what, v)
			}
		}
		if k, d := classOf(buf, h, w, classes); k != int(l) || d > 12.0/255 {
			t.Fatalf("%s: example %d labelled %d looks like class %d (distance %v)", what, i, l, k, d)
		}
	}
}

// TestOpenTinyImageNet: the train and val splits of Tiny ImageNet's layout
// at the model's size (64×48 JPEGs resized to a shorter side of 16 and
// center-cropped to 16×16), labels in sorted-WNID order in both, decoded
// into memory when small and on demand otherwise.
func TestOpenTinyImageNet(t *testing.T) {
	dir := t.TempDir()
	datatest.WriteTinyImageNet(t, dir, []string{"n03", "n01", "n02"}, 2, 2, 48, 64)
	opts := data.OpenOptions{H: 16, W: 16}
	train, err := data.Open("tiny-imagenet", dir, "train", opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := train.(*data.Dataset); !ok {
		t.Errorf("a small folder is not decoded into memory: %T", train)
	}
	checkSource(t, "train", train, 6, 3, 16, 16)
	if d := train.(*data.Dataset); strings.Join(d.ClassNames, ",") != "n01,n02,n03" || d.Name != "tiny-imagenet" {
		t.Errorf("classes %v, name %s", d.ClassNames, d.Name)
	}
	test, err := data.Open("tiny-imagenet", dir, "test", data.OpenOptions{H: 16, W: 16, MaxInMemory: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := test.(*data.ImageFolder); !ok {
		t.Errorf("MaxInMemory < 0 decoded into memory: %T", test)
	}
	checkSource(t, "val", test, 6, 3, 16, 16)

	// A class of wnids.txt without its training folder.
	os.RemoveAll(filepath.Join(dir, "train", "n02"))
	if _, err := data.Open("tiny-imagenet", dir, "train", opts); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "train", "n02")) {
		t.Errorf("missing class folder: %v", err)
	}
	// A missing label file names it.
	os.Remove(filepath.Join(dir, "val", "val_annotations.txt"))
	if _, err := data.Open("tiny-imagenet", dir, "test", opts); err == nil || !strings.Contains(err.Error(), "val_annotations.txt") {
		t.Errorf("missing annotations: %v", err)
	}
	// No train/ at all: the layout is explained.
	if _, err := data.Open("tiny-imagenet", t.TempDir(), "train", opts); err == nil || !strings.Contains(err.Error(), "wnids.txt") {
		t.Errorf("empty dir: %v", err)
	}
}

// TestOpenImageFolder: train/ and val/ (or test/) class folders; the test
// split's labels are train/'s even when it lacks a class; a test class
// without a training folder and a corrupt image are errors naming the path.
func TestOpenImageFolder(t *testing.T) {
	dir := t.TempDir()
	datatest.WriteImageFolder(t, dir, []string{"train"}, []string{"ant", "bee", "cat"}, 2, 20, 20, false)
	datatest.WriteImageFolder(t, dir, []string{"test"}, []string{"ant", "bee", "cat"}, 1, 20, 20, true)
	opts := data.OpenOptions{H: 8, W: 8}
	train, err := data.Open("imagefolder", dir, "train", opts)
	if err != nil {
		t.Fatal(err)
	}
	checkSource(t, "train", train, 6, 3, 8, 8)
	test, err := data.Open("imagefolder", dir, "test", opts) // test/ when there is no val/
	if err != nil {
		t.Fatal(err)
	}
	checkSource(t, "test", test, 3, 3, 8, 8)

	// val/ wins over test/; a val/ with only "cat" keeps cat's label 2.
	datatest.WriteFile(t, dir, "val/cat/x.png", datatest.Encode(t, datatest.Image(2, 0, 9, 9), false))
	val, err := data.Open("imagefolder", dir, "test", opts)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]float32, 3*64)
	if l, err := val.Example(0, buf); err != nil || l != 2 || val.Info().Len != 1 || val.Info().Classes != 3 {
		t.Fatalf("val with one class: label %d, %+v, %v", l, val.Info(), err)
	}
	// A val class unknown to train/.
	datatest.WriteFile(t, dir, "val/dog/x.png", datatest.Encode(t, datatest.Image(0, 0, 9, 9), false))
	if _, err := data.Open("imagefolder", dir, "test", opts); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "val", "dog")) {
		t.Errorf("unknown val class: %v", err)
	}
	// A corrupt image: named, when opened (small) and when read (on demand).
	bad := datatest.WriteFile(t, dir, "train/bee/broken.png", datatest.Encode(t, datatest.Image(1, 0, 9, 9), false)[:40])
	_, err = data.Open("imagefolder", dir, "train", opts)
	var fe *data.FormatError
	if !errors.As(err, &fe) || fe.File != bad {
		t.Fatalf("corrupt image: %v", err)
	}
	lazy, err := data.Open("imagefolder", dir, "train", data.OpenOptions{H: 8, W: 8, MaxInMemory: -1})
	if err != nil {
		t.Fatal(err)
	}
	var readErr error
	for i := 0; i < lazy.Info().Len && readErr == nil; i++ {
		_, readErr = lazy.Example(i, buf)
	}
	if readErr == nil || !strings.Contains(readErr.Error(), bad) {
		t.Fatalf("corrupt image read on demand: %v", readErr)
	}
	// An image smaller than the model's input (no upscaling below Resize).
	if _, err := data.Open("imagefolder", dir, "train", data.OpenOptions{H: 8, W: 8, Resize: 4}); err == nil {
		t.Error("resize smaller than the crop accepted")
	}
}

// TestOpenImageNet: a flat val/ with the devkit's ground truth (ILSVRC2012
// IDs) and the ID → WNID list gets train/'s sorted-WNID labels; val/ class
// folders work as imagefolder's; a missing mapping file is named.
func TestOpenImageNet(t *testing.T) {
	dir := t.TempDir()
	wnids := []string{"n01", "n05", "n09"}
	datatest.WriteImageFolder(t, dir, []string{"train"}, wnids, 1, 12, 12, true)
	// ID order n09, n01, n05 (not sorted); val images: n05, n09, n01, n01.
	datatest.WriteFile(t, dir, data.ImageNetIDWNIDs, []byte("n09\nn01\nn05\n"))
	datatest.WriteFile(t, dir, data.ImageNetGroundTruth, []byte("3\n1\n2\n2\n"))
	for i, k := range []int{1, 2, 0, 0} {
		datatest.WriteFile(t, dir, fmt.Sprintf("val/ILSVRC2012_val_%08d.JPEG", i+1), datatest.Encode(t, datatest.Image(k, i, 12, 16), true))
	}
	opts := data.OpenOptions{H: 8, W: 8}
	val, err := data.Open("imagenet", dir, "test", opts)
	if err != nil {
		t.Fatal(err)
	}
	checkSource(t, "flat val", val, 4, 3, 8, 8)
	train, err := data.Open("imagenet", dir, "train", opts)
	if err != nil {
		t.Fatal(err)
	}
	checkSource(t, "train", train, 3, 3, 8, 8)
	os.Remove(filepath.Join(dir, data.ImageNetIDWNIDs))
	if _, err := data.Open("imagenet", dir, "test", opts); err == nil || !strings.Contains(err.Error(), data.ImageNetIDWNIDs) {
		t.Errorf("missing ID list: %v", err)
	}
	os.Remove(filepath.Join(dir, data.ImageNetGroundTruth))
	if _, err := data.Open("imagenet", dir, "test", opts); err == nil || !strings.Contains(err.Error(), data.ImageNetGroundTruth) {
		t.Errorf("missing ground truth: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		o    data.OpenOptions
		want string
	}{
		{"imagenet-22k", data.OpenOptions{H: 8, W: 8}, "unknown dataset"},
		{"imagefolder", data.OpenOptions{}, "image size"},
		{"imagefolder", data.OpenOptions{H: 8, W: 8}, "missing train/"},
	} {
		if _, err := data.Open(c.name, dir, "train", c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %+v: %v, want %q", c.name, c.o, err, c.want)
		}
	}
	if _, err := data.Load("tiny-imagenet", dir, "train"); err == nil || !strings.Contains(err.Error(), "data.Open") {
		t.Errorf("Load of an image folder: %v", err)
	}
}

func TestInfoFits(t *testing.T) {
	in := data.Info{Name: "tiny-imagenet", C: 3, H: 64, W: 64, Classes: 200}
	if err := in.Fits("resnet-v2-50", [3]int{3, 64, 64}, 1000); err != nil {
		t.Fatalf("fitting dataset: %v", err)
	}
	if err := in.Fits("resnet-v2-50", [3]int{3, 32, 32}, 1000); err == nil || !strings.Contains(err.Error(), "tiny-imagenet images are 3×64×64, model resnet-v2-50 expects 3×32×32") {
		t.Errorf("wrong size: %v", err)
	}
	if err := in.Fits("resnet-v2-50", [3]int{3, 64, 64}, 10); err == nil || !strings.Contains(err.Error(), "200 classes, model resnet-v2-50 has 10") {
		t.Errorf("too few classes: %v", err)
	}
	if o := data.ForInput([3]int{3, 48, 40}); o.H != 48 || o.W != 40 {
		t.Errorf("ForInput = %+v", o)
	}
}

func TestTailIsTheLastExamples(t *testing.T) {
	ds := &data.Dataset{Name: "toy", C: 1, H: 1, W: 2, Classes: 5,
		Images: []float32{0, 0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4}, Labels: []int32{0, 1, 2, 3, 4}}
	tl := data.Tail(ds, 2)
	if in := tl.Info(); in.Len != 2 || in.Name != "toy" || in.Classes != 5 {
		t.Fatalf("Info = %+v", in)
	}
	dst := make([]float32, 2)
	for i, want := range []int32{3, 4} {
		y, err := tl.Example(i, dst)
		if err != nil || y != want || dst[0] != float32(want)/10 {
			t.Errorf("example %d: label %d image %v (%v), want label %d", i, y, dst, err, want)
		}
	}
	if _, err := tl.Example(2, dst); err == nil || !strings.Contains(err.Error(), "example 2 of a 2-example tail of toy") {
		t.Errorf("out of range: %v", err)
	}
	if data.Tail(ds, 0) != data.Source(ds) || data.Tail(ds, 9) != data.Source(ds) {
		t.Error("a tail of all examples is the source itself")
	}
}
