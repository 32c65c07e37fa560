package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/internal/fuzzcheck"
)

// The fuzz targets write each input to a file in a directory made once per
// process (the fuzz function runs one input at a time) and load it with the
// loader the commands use.

// gunzipped bounds the bytes a file decompresses to: deflate expands at
// most 1032-fold, and only a file with the gzip magic is decompressed.
func gunzipped(b []byte) uint64 {
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		return 1032 * uint64(len(b))
	}
	return uint64(len(b))
}

func mustWrite(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantFormatErr fails unless err is a *FormatError naming one of files.
func wantFormatErr(t *testing.T, err error, files ...string) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	if !slices.Contains(files, fe.File) {
		t.Fatalf("error %v names %q, want one of %v", err, fe.File, files)
	}
}

// datasetBytes returns d's pixels as bytes (value·255), and false when a
// pixel is not k/255 for an integer k (then a uint8 file cannot hold it).
func datasetBytes(d *Dataset) ([]byte, bool) {
	if d.Pixels != nil {
		return slices.Clone(d.Pixels), true
	}
	out := make([]byte, len(d.Images))
	for i, v := range d.Images {
		k := math.Round(float64(v) * 255)
		if !(k >= 0 && k <= 255) || float32(k)/255 != v {
			return nil, false
		}
		out[i] = byte(k)
	}
	return out, true
}

// checkDataset asserts the invariants every loader promises: the shape
// fields agree with the slices, labels are below Classes, and pixels are
// finite and in [0, 1].
func checkDataset(t *testing.T, d *Dataset, c, h, w, classes int) {
	t.Helper()
	if d.C != c || d.H <= 0 || d.W <= 0 || (h > 0 && (d.H != h || d.W != w)) || d.Classes != classes {
		t.Fatalf("dataset %dx%dx%d with %d classes, want C=%d, %dx%d, %d classes", d.C, d.H, d.W, d.Classes, c, h, w, classes)
	}
	if n := len(d.Images) + len(d.Pixels); n != len(d.Labels)*d.C*d.H*d.W || (d.Images != nil && d.Pixels != nil) {
		t.Fatalf("%d pixel values (%d float32, %d bytes) for %d images of %dx%dx%d", n, len(d.Images), len(d.Pixels), len(d.Labels), d.C, d.H, d.W)
	}
	for i, l := range d.Labels {
		if l < 0 || int(l) >= d.Classes {
			t.Fatalf("label %d of example %d out of [0,%d)", l, i, d.Classes)
		}
	}
	for i, v := range d.Images {
		if !(v >= 0 && v <= 1) {
			t.Fatalf("pixel %d is %v, outside [0,1]", i, v)
		}
	}
}

func sameDataset(t *testing.T, got, want *Dataset) {
	t.Helper()
	if got.C != want.C || got.H != want.H || got.W != want.W || got.Classes != want.Classes ||
		!slices.Equal(got.Labels, want.Labels) || !slices.Equal(got.Images, want.Images) || !slices.Equal(got.Pixels, want.Pixels) {
		t.Fatalf("dataset changed in the round trip")
	}
}

// FuzzLoadIDX loads an IDX image file and an IDX label file (plain or
// gzip). LoadIDX must fail with a *FormatError naming one of them, or
// return N images of H×W (both > 0) whose pixel bytes re-encode to the
// input (for a plain file) and load again to the same dataset; a header
// claiming more data than the file holds must not be allocated.
func FuzzLoadIDX(f *testing.F) {
	im, lb := mnistLike(2)
	f.Add(im, lb)
	f.Add(gzipBytes(f, im), lb)
	f.Add(idxBytes(IDXImagesMagic, []uint32{1, 2, 3}, []byte{0, 1, 2, 253, 254, 255}), idxBytes(IDXLabelsMagic, []uint32{1}, []byte{9}))
	f.Add(idxBytes(IDXImagesMagic, []uint32{0, 28, 28}, nil), idxBytes(IDXLabelsMagic, []uint32{0}, nil))
	dir := f.TempDir()
	imPath, lbPath := filepath.Join(dir, "images"), filepath.Join(dir, "labels")
	f.Fuzz(func(t *testing.T, images, labels []byte) {
		mustWrite(t, imPath, images)
		mustWrite(t, lbPath, labels)
		var d *Dataset
		var err error
		limit := 16*(gunzipped(images)+gunzipped(labels)) + 1<<20
		if n := fuzzcheck.Allocated(limit, func() { d, err = LoadIDX(imPath, lbPath, 10) }); n > limit {
			t.Fatalf("loading %d+%d bytes allocated %d (limit %d)", len(images), len(labels), n, limit)
		}
		if err != nil {
			wantFormatErr(t, err, imPath, lbPath)
			return
		}
		checkDataset(t, d, 1, 0, 0, 10)
		pix, ok := datasetBytes(d)
		if !ok {
			t.Fatalf("IDX pixels are not bytes/255")
		}
		lab := make([]byte, len(d.Labels))
		for i, l := range d.Labels {
			lab[i] = byte(l)
		}
		n := uint32(len(d.Labels))
		im2 := idxBytes(IDXImagesMagic, []uint32{n, uint32(d.H), uint32(d.W)}, pix)
		lb2 := idxBytes(IDXLabelsMagic, []uint32{n}, lab)
		if len(images) > 1 && images[0] != 0x1f && !bytes.Equal(im2, images) {
			t.Fatalf("images re-encode to other bytes")
		}
		if len(labels) > 1 && labels[0] != 0x1f && !bytes.Equal(lb2, labels) {
			t.Fatalf("labels re-encode to other bytes")
		}
		mustWrite(t, imPath, im2)
		mustWrite(t, lbPath, lb2)
		again, err := LoadIDX(imPath, lbPath, 10)
		if err != nil {
			t.Fatalf("loading the re-encoded files: %v", err)
		}
		sameDataset(t, again, d)
	})
}

// FuzzLoadCIFAR loads a CIFAR-10 batch file: LoadCIFARBatches must fail
// with a *FormatError, or return len/3073 images of 3×32×32 that re-encode
// to exactly the input.
func FuzzLoadCIFAR(f *testing.F) {
	f.Add(cifarRecords(1, 0))
	f.Add(cifarRecords(2, 9))
	path := filepath.Join(f.TempDir(), "data_batch_1.bin")
	f.Fuzz(func(t *testing.T, b []byte) {
		mustWrite(t, path, b)
		var d *Dataset
		var err error
		limit := 16*uint64(len(b)) + 1<<20
		if n := fuzzcheck.Allocated(limit, func() { d, err = LoadCIFARBatches(path) }); n > limit {
			t.Fatalf("loading %d bytes allocated %d (limit %d)", len(b), n, limit)
		}
		if err != nil {
			wantFormatErr(t, err, path)
			return
		}
		checkDataset(t, d, 3, 32, 32, 10)
		if len(d.Labels) != len(b)/CIFARRecordSize {
			t.Fatalf("%d records from %d bytes", len(d.Labels), len(b))
		}
		pix, ok := datasetBytes(d)
		if !ok {
			t.Fatalf("CIFAR pixels are not bytes/255")
		}
		const px = CIFARRecordSize - 1
		var enc []byte
		for i, l := range d.Labels {
			enc = append(enc, byte(l))
			enc = append(enc, pix[i*px:(i+1)*px]...)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("the dataset re-encodes to other bytes")
		}
	})
}

// svhnFile encodes d (pixels pix, one byte each) as an SVHN .mat file: X
// uint8 32×32×3×N in MATLAB's column-major order, y double N×1 with 10 for
// the digit 0.
func svhnFile(t *testing.T, d *Dataset, pix []byte, compress bool) []byte {
	n := len(d.Labels)
	x := make([]byte, len(pix))
	for k := 0; k < n*3; k++ { // CHW plane k → MATLAB (h, w) column-major
		for h := 0; h < 32; h++ {
			for w := 0; w < 32; w++ {
				x[k*1024+w*32+h] = pix[k*1024+h*32+w]
			}
		}
	}
	var y []byte
	for _, l := range d.Labels {
		if l == 0 {
			l = 10
		}
		y = binary.LittleEndian.AppendUint64(y, math.Float64bits(float64(l)))
	}
	b, _ := matFile(t, binary.LittleEndian, compress,
		matVar{name: "X", class: mxUINT8, dims: []int32{32, 32, 3, int32(n)}, dataType: miUINT8, data: x},
		matVar{name: "y", class: mxDOUBLE, dims: []int32{int32(n), 1}, dataType: miDOUBLE, data: y})
	return b
}

// FuzzLoadSVHN loads an SVHN .mat file (MATLAB Level 5, plain or with
// zlib-compressed elements). LoadSVHN must fail with a *FormatError, or
// return N images of 3×32×32 with labels 0…9; when every pixel is a byte
// value the dataset, written back as a .mat file, loads to itself. A
// header claiming more than the file holds must not be allocated.
func FuzzLoadSVHN(f *testing.F) {
	for _, bo := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
		x, y := svhnVars(1, []float64{10}, miDOUBLE, bo)
		plain, _ := matFile(f, bo, false, x, y)
		f.Add(plain)
	}
	x, y := svhnVars(2, []float64{3, 7}, miUINT8, binary.LittleEndian)
	z, _ := matFile(f, binary.LittleEndian, true, x, y)
	f.Add(z)
	path := filepath.Join(f.TempDir(), "train_32x32.mat")
	f.Fuzz(func(t *testing.T, b []byte) {
		mustWrite(t, path, b)
		var d *Dataset
		var err error
		limit := 32*1032*uint64(len(b)) + 1<<20 // zlib-compressed elements
		if n := fuzzcheck.Allocated(limit, func() { d, err = LoadSVHN(path) }); n > limit {
			t.Fatalf("loading %d bytes allocated %d (limit %d)", len(b), n, limit)
		}
		if err != nil {
			wantFormatErr(t, err, path)
			return
		}
		checkDataset(t, d, 3, 32, 32, 10)
		pix, ok := datasetBytes(d)
		if !ok {
			return // X of another type holds values a uint8 file cannot
		}
		for _, compress := range []bool{false, true} {
			mustWrite(t, path, svhnFile(t, d, pix, compress))
			again, err := LoadSVHN(path)
			if err != nil {
				t.Fatalf("loading the re-encoded file (compressed %v): %v", compress, err)
			}
			sameDataset(t, again, d)
		}
	})
}

// FuzzDecodeImageFile decodes a JPEG or PNG file into an 8×8 crop, with and
// without a resize to 12. It must fail (a *FormatError for what cannot be
// decoded) or write values in [0, 1]; an image whose header claims more
// than maxImagePixels must be refused before its pixels are allocated. The
// limit is lowered to 2^16 pixels here so that no input costs much.
func FuzzDecodeImageFile(f *testing.F) {
	defer func(old int64) { maxImagePixels = old }(maxImagePixels)
	maxImagePixels = 1 << 16
	img := image.NewRGBA(image.Rect(0, 0, 12, 10))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	var pb, jb, gb bytes.Buffer
	if err := png.Encode(&pb, img); err != nil {
		f.Fatal(err)
	}
	if err := jpeg.Encode(&jb, img, nil); err != nil {
		f.Fatal(err)
	}
	gray := image.NewGray(image.Rect(0, 0, 9, 9))
	gray.Set(4, 4, color.Gray{Y: 200})
	if err := png.Encode(&gb, gray); err != nil {
		f.Fatal(err)
	}
	f.Add(pb.Bytes())
	f.Add(jb.Bytes())
	f.Add(gb.Bytes())
	path := filepath.Join(f.TempDir(), "img")
	dst := make([]float32, 3*8*8)
	f.Fuzz(func(t *testing.T, b []byte) {
		mustWrite(t, path, b)
		// pixels as the header claims them; padded as a JPEG decoder
		// allocates them, each side rounded up to whole 16-pixel MCUs.
		var pixels, padded int64
		if cfg, _, err := image.DecodeConfig(bytes.NewReader(b)); err == nil {
			pixels = int64(cfg.Width) * int64(cfg.Height)
			padded = int64(cfg.Width+15) / 16 * 16 * (int64(cfg.Height+15) / 16 * 16)
		}
		if pixels > maxImagePixels {
			padded = 0 // refused before decoding
		}
		for _, resize := range []int{0, 12} {
			clear(dst)
			var err error
			// The decoded image (≤ 8 bytes a pixel, +16 for a progressive
			// JPEG's coefficients) and its float planes (12 bytes a pixel).
			limit := uint64(48*padded) + 64*uint64(len(b)) + 1<<20
			if n := fuzzcheck.Allocated(limit, func() { err = DecodeImageFile(path, 8, 8, resize, dst) }); n > limit {
				t.Fatalf("decoding a %d-byte file of %d pixels allocated %d (limit %d)", len(b), pixels, n, limit)
			}
			if err != nil {
				var fe *FormatError
				if !errors.As(err, &fe) && !strings.Contains(err.Error(), path) {
					t.Fatalf("error %v names neither a format problem nor the file", err)
				}
				continue
			}
			if pixels > maxImagePixels {
				t.Fatalf("an image of %d pixels was decoded", pixels)
			}
			for i, v := range dst {
				if !(v >= 0 && v <= 1) {
					t.Fatalf("value %d is %v, outside [0,1]", i, v)
				}
			}
		}
	})
}

// FuzzReadClassList reads a class list (wnids.txt): it must fail with a
// *FormatError or return distinct, non-empty names without white space, in
// file order, one per non-blank line.
func FuzzReadClassList(f *testing.F) {
	f.Add([]byte("n01443537\nn01629819\n"))
	f.Add([]byte("a 1\r\n\n  b\tx\n"))
	path := filepath.Join(f.TempDir(), "wnids.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		mustWrite(t, path, b)
		names, err := ReadClassList(path)
		if err != nil {
			wantFormatErr(t, err, path)
			return
		}
		var want []string
		for _, line := range strings.Split(string(b), "\n") {
			if fs := strings.Fields(line); len(fs) > 0 {
				want = append(want, fs[0])
			}
		}
		if !slices.Equal(names, want) {
			t.Fatalf("names %q, want the first field of each line %q", names, want)
		}
		seen := map[string]bool{}
		for _, n := range names {
			if n == "" || seen[n] || strings.ContainsFunc(n, func(r rune) bool { return strings.TrimSpace(string(r)) == "" }) {
				t.Fatalf("name %q empty, repeated or with white space", n)
			}
			seen[n] = true
		}
	})
}
