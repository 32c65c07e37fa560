package data

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func pngBytes(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func jpegBytes(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// solid returns an h×w RGBA image of one color.
func solid(h, w int, c color.RGBA) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetRGBA(x, y, c)
		}
	}
	return m
}

// near reports whether the 3 channels of CHW image img (h×w) are all
// within tol of rgb (0..255).
func near(img []float32, h, w int, rgb [3]float32, tol float32) bool {
	for c := 0; c < 3; c++ {
		for i := 0; i < h*w; i++ {
			d := img[c*h*w+i] - rgb[c]/255
			if d > tol || d < -tol {
				return false
			}
		}
	}
	return true
}

func TestClassFolders(t *testing.T) {
	dir := t.TempDir()
	red, green := color.RGBA{200, 10, 10, 255}, color.RGBA{10, 200, 10, 255}
	// classes "b_cat" and "a_dog": sorted, a_dog is 0.
	writeFile(t, dir, "b_cat/1.png", pngBytes(t, solid(6, 8, red)))
	writeFile(t, dir, "b_cat/sub/2.JPEG", jpegBytes(t, solid(8, 8, red)))
	writeFile(t, dir, "b_cat/notes.txt", []byte("not an image"))
	gray := image.NewGray(image.Rect(0, 0, 7, 5))
	for i := range gray.Pix {
		gray.Pix[i] = 77
	}
	writeFile(t, dir, "a_dog/x.png", pngBytes(t, gray))
	writeFile(t, dir, "a_dog/y.jpg", jpegBytes(t, solid(5, 5, green)))

	f, err := OpenClassFolders(dir, FolderOptions{Name: "toy", H: 4, W: 4})
	if err != nil {
		t.Fatal(err)
	}
	info := f.Info()
	if info.Len != 4 || info.Classes != 2 || info.C != 3 || info.H != 4 || info.W != 4 || info.Name != "toy" {
		t.Fatalf("info %+v", info)
	}
	if strings.Join(f.ClassNames, ",") != "a_dog,b_cat" {
		t.Fatalf("classes %v", f.ClassNames)
	}
	d, err := Materialize(f, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	wantLabels := []int32{0, 0, 1, 1}
	for i, l := range wantLabels {
		if d.Labels[i] != l {
			t.Errorf("label %d = %d (%s)", i, d.Labels[i], f.Files[i])
		}
	}
	if !near(d.Image(0), 4, 4, [3]float32{77, 77, 77}, 1e-6) {
		t.Errorf("gray PNG not expanded to 3 equal channels: %v", d.Image(0)[:16])
	}
	if !near(d.Image(1), 4, 4, [3]float32{10, 200, 10}, 4.0/255) {
		t.Errorf("green JPEG: %v", d.Image(1))
	}
	if !near(d.Image(2), 4, 4, [3]float32{200, 10, 10}, 1e-6) {
		t.Errorf("red PNG: %v", d.Image(2))
	}
	if !near(d.Image(3), 4, 4, [3]float32{200, 10, 10}, 4.0/255) {
		t.Errorf("red JPEG: %v", d.Image(3))
	}

	// A symlinked class folder counts.
	linked := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "a_dog"), filepath.Join(linked, "dog")); err != nil {
		t.Fatal(err)
	}
	if fl, err := OpenClassFolders(linked, FolderOptions{H: 4, W: 4}); err != nil || fl.Info().Len != 2 || fl.ClassNames[0] != "dog" {
		t.Fatalf("symlinked class folder: %v %v", fl, err)
	}
	// An explicit class list selects and orders the classes.
	f2, err := OpenClassFolders(dir, FolderOptions{H: 4, W: 4, Classes: []string{"b_cat"}})
	if err != nil || f2.Info().Len != 2 || f2.Labels[0] != 0 {
		t.Fatalf("explicit classes: %v %v", f2, err)
	}
	if _, err := OpenClassFolders(dir, FolderOptions{H: 4, W: 4, Classes: []string{"zebra"}}); err == nil {
		t.Error("missing class folder accepted")
	}
	// Too small for the crop, resize too small for the crop, bad size.
	f3, _ := OpenClassFolders(dir, FolderOptions{H: 6, W: 6})
	if _, err := Materialize(f3, 1); err == nil || !strings.Contains(err.Error(), "smaller than crop") {
		t.Errorf("small image: %v", err)
	}
	if _, err := OpenClassFolders(dir, FolderOptions{H: 4, W: 4, Resize: 3}); err == nil {
		t.Error("resize < crop accepted")
	}
	if _, err := OpenClassFolders(dir, FolderOptions{}); err == nil {
		t.Error("zero size accepted")
	}
	// Resize up: every image becomes 16 on its shorter side, crop 12×12.
	f4, err := OpenClassFolders(dir, FolderOptions{H: 12, W: 12, Resize: 16})
	if err != nil {
		t.Fatal(err)
	}
	d4, err := Materialize(f4, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !near(d4.Image(2), 12, 12, [3]float32{200, 10, 10}, 1e-5) {
		t.Error("resized solid image is not solid")
	}
}

func TestPreprocessBilinearAndCrop(t *testing.T) {
	// 4×8 gray image, pixel (y,x) = 10y + x (in 1/255 units). Resize to
	// shorter side 2 → 2×4 (scale 2: each output averages a 2×2 block),
	// then center-crop 2×2 → columns 1,2 of the resized image.
	m := image.NewGray(image.Rect(0, 0, 8, 4))
	for y := 0; y < 4; y++ {
		for x := 0; x < 8; x++ {
			m.SetGray(x, y, color.Gray{uint8(10*y + x)})
		}
	}
	dst := make([]float32, 3*2*2)
	if err := PreprocessImage(m, 2, 2, 2, dst); err != nil {
		t.Fatal(err)
	}
	block := func(by, bx int) float32 { // mean of the 2×2 block
		return float32(10*(2*by)+2*bx+10*(2*by+1)+2*bx+1+10*(2*by)+2*bx+1+10*(2*by+1)+2*bx) / 4 / 255
	}
	want := []float32{block(0, 1), block(0, 2), block(1, 1), block(1, 2)}
	for c := 0; c < 3; c++ {
		if !equalF(dst[c*4:(c+1)*4], want, 1e-6) {
			t.Fatalf("channel %d = %v, want %v", c, dst[c*4:(c+1)*4], want)
		}
	}
	// No resize: an exact center crop; with an odd margin, round half to
	// even: 8-3 = 5 → left 2 (2.5 rounds to 2), 4-1 = 3 → top 2 (1.5 → 2).
	dst = make([]float32, 3*1*3)
	if err := PreprocessImage(m, 1, 3, 0, dst); err != nil {
		t.Fatal(err)
	}
	if want := []float32{22. / 255, 23. / 255, 24. / 255}; !equalF(dst[:3], want, 1e-7) {
		t.Fatalf("crop %v, want %v", dst[:3], want)
	}
	// Upscaling by 2 of a 1×2 row [0, 255] at half-pixel centers:
	// x' = 0..3 → src -0.25(→0), 0.25, 0.75, 1.25(→1).
	r := image.NewGray(image.Rect(0, 0, 2, 1))
	r.Pix[1] = 255
	dst = make([]float32, 3*2*4)
	if err := PreprocessImage(r, 2, 4, 2, dst); err != nil {
		t.Fatal(err)
	}
	if want := []float32{0, 0.25, 0.75, 1}; !equalF(dst[:4], want, 1e-6) {
		t.Fatalf("upscale %v, want %v", dst[:4], want)
	}
	// Sub-image with a non-zero origin and NRGBA with alpha (ignored).
	n := image.NewNRGBA(image.Rect(0, 0, 4, 4))
	for i := 0; i < len(n.Pix); i += 4 {
		copy(n.Pix[i:], []byte{100, 150, 200, 7})
	}
	sub := n.SubImage(image.Rect(1, 1, 3, 3))
	dst = make([]float32, 3*2*2)
	if err := PreprocessImage(sub, 2, 2, 0, dst); err != nil {
		t.Fatal(err)
	}
	if !near(dst, 2, 2, [3]float32{100, 150, 200}, 1e-6) {
		t.Fatalf("NRGBA %v", dst)
	}
}

func TestTinyImageNetVal(t *testing.T) {
	root := t.TempDir()
	// wnids.txt not sorted; labels follow the sorted order.
	writeFile(t, root, "wnids.txt", []byte("n03\nn01\nn02\n"))
	colors := map[string]color.RGBA{"n01": {255, 0, 0, 255}, "n02": {0, 255, 0, 255}, "n03": {0, 0, 255, 255}}
	for w, c := range colors {
		writeFile(t, root, "train/"+w+"/images/"+w+"_0.JPEG", jpegBytes(t, solid(8, 8, c)))
		writeFile(t, root, "train/"+w+"/"+w+"_boxes.txt", []byte("x"))
	}
	ann := "val_0.JPEG\tn02\t0\t0\t7\t7\nval_1.JPEG\tn03\t1\t1\t6\t6\r\nval_2.JPEG\tn01\t0\t0\t8\t8\n\n"
	writeFile(t, root, "val/val_annotations.txt", []byte(ann))
	writeFile(t, root, "val/images/val_0.JPEG", jpegBytes(t, solid(8, 8, colors["n02"])))
	writeFile(t, root, "val/images/val_1.JPEG", jpegBytes(t, solid(8, 8, colors["n03"])))
	writeFile(t, root, "val/images/val_2.JPEG", pngBytes(t, solid(8, 8, colors["n01"]))) // PNG named .JPEG: told by magic

	train, err := OpenClassFolders(filepath.Join(root, "train"), FolderOptions{Name: "tiny-imagenet", H: 8, W: 8})
	if err != nil {
		t.Fatal(err)
	}
	val, err := OpenTinyImageNetVal(filepath.Join(root, "val"), FolderOptions{Name: "tiny-imagenet", H: 8, W: 8})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(val.ClassNames, ",") != strings.Join(train.ClassNames, ",") || strings.Join(val.ClassNames, ",") != "n01,n02,n03" {
		t.Fatalf("class lists differ: val %v train %v", val.ClassNames, train.ClassNames)
	}
	if got := val.Labels; len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 0 {
		t.Fatalf("val labels %v", got)
	}
	buf := make([]float32, 3*64)
	for i := 0; i < 3; i++ {
		l, err := val.Example(i, buf)
		if err != nil {
			t.Fatal(err)
		}
		want := colors[val.ClassNames[l]]
		if !near(buf, 8, 8, [3]float32{float32(want.R), float32(want.G), float32(want.B)}, 6.0/255) {
			t.Errorf("val %d: color does not match class %s", i, val.ClassNames[l])
		}
	}
	// Without wnids.txt: the train folder names.
	os.Remove(filepath.Join(root, "wnids.txt"))
	val2, err := OpenTinyImageNetVal(filepath.Join(root, "val"), FolderOptions{H: 8, W: 8})
	if err != nil || strings.Join(val2.ClassNames, ",") != "n01,n02,n03" {
		t.Fatalf("from train folders: %v %v", val2, err)
	}
	// Explicit class list, used as given.
	val3, err := OpenTinyImageNetVal(filepath.Join(root, "val"), FolderOptions{H: 8, W: 8, Classes: []string{"n03", "n02", "n01"}})
	if err != nil || val3.Labels[0] != 1 || val3.Labels[1] != 0 || val3.Labels[2] != 2 {
		t.Fatalf("explicit list: %v %v", val3, err)
	}
	// Unknown class on line 2 → offset of line 2.
	bad := "val_0.JPEG\tn02\t0\t0\t7\t7\nval_1.JPEG\tn99\t0\t0\t7\t7\n"
	p := writeFile(t, root, "val/val_annotations.txt", []byte(bad))
	_, err = OpenTinyImageNetVal(filepath.Join(root, "val"), FolderOptions{H: 8, W: 8})
	wantFormatError(t, err, p, int64(strings.Index(bad, "val_1")), int64(strings.Index(bad, "val_1")), "n99")
	// Missing image.
	bad = "val_9.JPEG\tn02\n"
	writeFile(t, root, "val/val_annotations.txt", []byte(bad))
	_, err = OpenTinyImageNetVal(filepath.Join(root, "val"), FolderOptions{H: 8, W: 8})
	wantFormatError(t, err, p, 0, 0, "val_9.JPEG")
	// Too few fields.
	writeFile(t, root, "val/val_annotations.txt", []byte("val_0.JPEG n02\n"))
	_, err = OpenTinyImageNetVal(filepath.Join(root, "val"), FolderOptions{H: 8, W: 8})
	wantFormatError(t, err, p, 0, 0, "fields")
}

func TestImageNetVal(t *testing.T) {
	dir := t.TempDir()
	for i, c := range []uint8{10, 20, 30} {
		writeFile(t, dir, "val/ILSVRC2012_val_0000000"+string(rune('1'+i))+".JPEG", jpegBytes(t, solid(10, 12, color.RGBA{c, c, c, 255})))
	}
	gt := writeFile(t, dir, "ILSVRC2012_validation_ground_truth.txt", []byte("3\n1\n1000\n"))
	f, err := OpenImageNetVal(filepath.Join(dir, "val"), gt, FolderOptions{Name: "imagenet", H: 4, W: 4, Resize: 6})
	if err != nil {
		t.Fatal(err)
	}
	if info := f.Info(); info.Len != 3 || info.Classes != 1000 {
		t.Fatalf("info %+v", info)
	}
	if f.Labels[0] != 2 || f.Labels[1] != 0 || f.Labels[2] != 999 {
		t.Fatalf("labels %v", f.Labels)
	}
	buf := make([]float32, 3*16)
	if _, err := f.Example(1, buf); err != nil || !near(buf, 4, 4, [3]float32{20, 20, 20}, 3.0/255) {
		t.Fatalf("example 1: %v %v", buf, err)
	}

	// IDClasses: ID k is class IDClasses[k-1]; labels index the sorted list.
	gt2 := writeFile(t, dir, "gt2.txt", []byte("1\n2\n3\n"))
	f2, err := OpenImageNetVal(filepath.Join(dir, "val"), gt2, FolderOptions{H: 4, W: 4, IDClasses: []string{"n09", "n01", "n05"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(f2.ClassNames, ",") != "n01,n05,n09" || f2.Labels[0] != 2 || f2.Labels[1] != 0 || f2.Labels[2] != 1 {
		t.Fatalf("IDClasses: %v %v", f2.ClassNames, f2.Labels)
	}

	// Count mismatch, out-of-range and junk IDs.
	p := writeFile(t, dir, "short.txt", []byte("1\n2\n"))
	_, err = OpenImageNetVal(filepath.Join(dir, "val"), p, FolderOptions{H: 4, W: 4})
	wantFormatError(t, err, p, 4, 4, "2 ground-truth labels for 3 images")
	p = writeFile(t, dir, "long.txt", []byte("1\n2\n3\n4\n"))
	_, err = OpenImageNetVal(filepath.Join(dir, "val"), p, FolderOptions{H: 4, W: 4})
	wantFormatError(t, err, p, 6, 6, "more ground-truth lines")
	for _, bad := range []string{"0", "1001", "x7"} {
		p = writeFile(t, dir, "bad.txt", []byte("1\n"+bad+"\n3\n"))
		_, err = OpenImageNetVal(filepath.Join(dir, "val"), p, FolderOptions{H: 4, W: 4})
		wantFormatError(t, err, p, 2, 2, "line 2")
	}
	p = writeFile(t, dir, "bad4.txt", []byte("1\n4\n3\n"))
	_, err = OpenImageNetVal(filepath.Join(dir, "val"), p, FolderOptions{H: 4, W: 4, NumClasses: 3})
	wantFormatError(t, err, p, 2, 2, "1..3")
}

func TestCorruptImages(t *testing.T) {
	dir := t.TempDir()
	good := pngBytes(t, solid(8, 8, color.RGBA{1, 2, 3, 255}))
	gj := jpegBytes(t, solid(8, 8, color.RGBA{1, 2, 3, 255}))
	cases := map[string][]byte{
		"a/trunc.png":  good[:len(good)/2],
		"a/trunc.jpg":  gj[:len(gj)/2],
		"a/header.png": good[:10],
		"a/junk.jpg":   []byte("GIF89a not really"),
		"a/empty.png":  nil,
	}
	for name, b := range cases {
		p := writeFile(t, dir, name, b)
		err := DecodeImageFile(p, 8, 8, 0, make([]float32, 3*64))
		var fe *FormatError
		if !errors.As(err, &fe) || fe.File != p || fe.Offset < 0 || fe.Offset > int64(len(b)) {
			t.Errorf("%s: %v", name, err)
		} else {
			t.Logf("%v", err)
		}
	}
	// Through an ImageFolder, Materialize and a Loader.
	f, err := OpenClassFolders(dir, FolderOptions{H: 8, W: 8})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Materialize(f, 3); err == nil {
		t.Error("Materialize of corrupt images succeeded")
	}
}
