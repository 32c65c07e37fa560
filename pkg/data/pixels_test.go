package data

import (
	"encoding/binary"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// oldFloat is the conversion the loaders applied when they stored float32
// images (before datasets held bytes): float32(b)/255 per pixel.
func oldFloat(pix []byte) []float32 {
	out := make([]float32, len(pix))
	for i, b := range pix {
		out[i] = float32(b) / 255
	}
	return out
}

// sameBits reports whether a and b hold the same float32 bit patterns (==
// would equate -0 and +0).
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestPixelValueIsTheOldConversion(t *testing.T) {
	for b := 0; b < 256; b++ {
		if got, want := PixelValue(uint8(b)), float32(b)/255; math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("PixelValue(%d) = %v, want %v", b, got, want)
		}
	}
}

// twins returns a dataset of random bytes and its float32 twin built as the
// loaders did before (oldFloat).
func twins(name string, n, c, h, w int, seed uint64) (bytesDS, floatDS *Dataset) {
	rng := rand.New(rand.NewPCG(seed, 1))
	pix := make([]byte, n*c*h*w)
	for i := range pix {
		pix[i] = byte(rng.Uint32())
	}
	pix[0], pix[1] = 0, 255 // both ends of the range
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(rng.IntN(10))
	}
	bytesDS = &Dataset{Name: name, C: c, H: h, W: w, Classes: 10, Pixels: pix, Labels: labels}
	floatDS = &Dataset{Name: name, C: c, H: h, W: w, Classes: 10, Images: oldFloat(pix), Labels: labels}
	return bytesDS, floatDS
}

// TestBytesBatchesBitIdentical: a dataset held as bytes gives the very
// batches (same float32 bits, same labels) as its float32 twin, with the
// default augmentation (CIFAR-10's crop and flip), without it, and for
// evaluation (Examples).
func TestBytesBatchesBitIdentical(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c, h, w int
		opts    LoaderOptions
	}{
		{"cifar10", 3, 32, 32, LoaderOptions{Seed: 5}},
		{"svhn", 3, 32, 32, LoaderOptions{Seed: 6, Parallel: 3}},
		{"mnist", 1, 28, 28, LoaderOptions{Seed: 7}},
		{"cifar10", 3, 32, 32, LoaderOptions{Seed: 8, NoAugment: true}},
	} {
		bd, fd := twins(tc.name, 40, tc.c, tc.h, tc.w, tc.opts.Seed)
		if err := bd.Validate(); err != nil {
			t.Fatal(err)
		}
		lb, lf := NewLoader(bd, tc.opts), NewLoader(fd, tc.opts)
		size := tc.c * tc.h * tc.w
		const batch = 7
		for step := int64(0); step < 4; step++ {
			for worker := 0; worker < 3; worker++ {
				xb, xf := make([]float32, batch*size), make([]float32, batch*size)
				yb, yf := make([]int32, batch), make([]int32, batch)
				ib, err := lb.Batch(step, worker, 3, batch, xb, yb)
				if err != nil {
					t.Fatal(err)
				}
				iff, err := lf.Batch(step, worker, 3, batch, xf, yf)
				if err != nil {
					t.Fatal(err)
				}
				if !sameBits(xb, xf) || !equalInts(ib, iff) || !equalInt32s(yb, yf) {
					t.Fatalf("%s %+v: step %d worker %d: the bytes dataset's batch differs from the float32 one", tc.name, tc.opts, step, worker)
				}
			}
		}
		idx := []int{0, 39, 17}
		xb, xf := make([]float32, len(idx)*size), make([]float32, len(idx)*size)
		yb, yf := make([]int32, len(idx)), make([]int32, len(idx))
		if err := lb.Examples(idx, xb, yb); err != nil {
			t.Fatal(err)
		}
		if err := lf.Examples(idx, xf, yf); err != nil {
			t.Fatal(err)
		}
		if !sameBits(xb, xf) || !equalInt32s(yb, yf) {
			t.Fatalf("%s: Examples differ between bytes and float32", tc.name)
		}
		if !sameBits(bd.Image(39), fd.Image(39)) {
			t.Fatalf("%s: Image differs between bytes and float32", tc.name)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalInt32s(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLoadersHoldBytes: MNIST (plain and gzip), CIFAR-10 and SVHN's uint8
// X load as bytes whose values are the file's, the float32 form as before;
// SVHN stored as doubles stays float32.
func TestLoadersHoldBytes(t *testing.T) {
	im, lb := mnistLike(300) // large enough that a doubling buffer would show
	payload := im[16:]
	for _, gz := range []bool{false, true} {
		dir := t.TempDir()
		i, l := im, lb
		if gz {
			i, l = gzipBytes(t, im), gzipBytes(t, lb)
		}
		d, err := LoadIDX(writeFile(t, dir, "i", i), writeFile(t, dir, "l", l), 10)
		if err != nil {
			t.Fatal(err)
		}
		if d.Images != nil || string(d.Pixels) != string(payload) {
			t.Fatalf("gzip=%v: MNIST not held as its file's bytes", gz)
		}
		// The decompressed buffer is the dataset's: sized once, not grown by
		// doubling (a few KB of allocator rounding are fine).
		if extra := cap(d.Pixels) - len(d.Pixels); extra > len(d.Pixels)/16 {
			t.Errorf("gzip=%v: the pixels keep %d spare bytes", gz, extra)
		}
		for k := 0; k < d.Len(); k++ {
			if !sameBits(d.Image(k), oldFloat(payload[k*784:(k+1)*784])) {
				t.Fatalf("gzip=%v: image %d differs from the old conversion", gz, k)
			}
		}
	}

	dir := t.TempDir()
	recs := cifarRecords(3, 0)
	c, err := LoadCIFARBatches(writeFile(t, dir, "b.bin", recs))
	if err != nil {
		t.Fatal(err)
	}
	if c.Images != nil || len(c.Pixels) != 3*3072 {
		t.Fatal("CIFAR-10 not held as bytes")
	}
	for k := 0; k < 3; k++ {
		if !sameBits(c.Image(k), oldFloat(recs[k*CIFARRecordSize+1:(k+1)*CIFARRecordSize])) {
			t.Fatalf("CIFAR image %d differs from the old conversion", k)
		}
	}

	x, y := svhnVars(2, []float64{1, 2}, miUINT8, binary.LittleEndian)
	b, _ := matFile(t, binary.LittleEndian, false, x, y)
	s, err := LoadSVHN(writeFile(t, dir, "s.mat", b))
	if err != nil {
		t.Fatal(err)
	}
	if s.Images != nil || len(s.Pixels) != 2*3072 {
		t.Fatal("SVHN (uint8) not held as bytes")
	}
	checkSVHN(t, s, 2, []int32{1, 2})

	// X stored as doubles: float32, values as before.
	xd := matVar{name: "X", class: mxDOUBLE, dims: x.dims, dataType: miDOUBLE}
	for _, v := range x.data {
		xd.data = binary.LittleEndian.AppendUint64(xd.data, math.Float64bits(float64(v)))
	}
	b, _ = matFile(t, binary.LittleEndian, false, xd, y)
	sd, err := LoadSVHN(writeFile(t, dir, "sd.mat", b))
	if err != nil {
		t.Fatal(err)
	}
	if sd.Pixels != nil || sd.Images == nil {
		t.Fatal("SVHN stored as doubles not held as float32")
	}
	checkSVHN(t, sd, 2, []int32{1, 2})
}

// TestMaterializeBytesWhenExact: an image folder whose decoded values are
// all k/255 (8-bit PNGs, no interpolation) materializes as bytes; resized
// (interpolated) it stays float32. Either way the values are src's, bit for
// bit.
func TestMaterializeBytesWhenExact(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 3))
	for k, name := range []string{"a/0.png", "a/1.png", "b/2.png"} {
		img := image.NewRGBA(image.Rect(0, 0, 5, 5))
		for p := 0; p < 25; p++ {
			img.Set(p%5, p/5, color.RGBA{byte(rng.Uint32()), byte(rng.Uint32()), byte(k), 255})
		}
		writeFile(t, dir, name, pngBytes(t, img))
	}
	for _, tc := range []struct {
		resize    int
		wantBytes bool
	}{{5, true}, {9, false}} {
		f, err := OpenClassFolders(dir, FolderOptions{H: 5, W: 5, Resize: tc.resize})
		if err != nil {
			t.Fatal(err)
		}
		d, err := Materialize(f, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := d.Pixels != nil && d.Images == nil; got != tc.wantBytes {
			t.Fatalf("resize %d: held as bytes = %v, want %v", tc.resize, got, tc.wantBytes)
		}
		want := make([]float32, 75)
		for i := 0; i < 3; i++ {
			l, err := f.Example(i, want)
			if err != nil {
				t.Fatal(err)
			}
			if !sameBits(d.Image(i), want) || d.Labels[i] != l {
				t.Fatalf("resize %d: example %d differs from the folder's", tc.resize, i)
			}
		}
	}
}

func TestFloatToBytesRejectsInexact(t *testing.T) {
	dst := make([]uint8, 1)
	for _, v := range []float32{float32(math.Copysign(0, -1)), 0.5, -0.1, 1.0001, float32(math.NaN()), PixelValue(7) + 1e-7} {
		if floatToBytes(dst, []float32{v}) {
			t.Errorf("%v (bits %08x) taken as a byte", v, math.Float32bits(v))
		}
	}
	for b := 0; b < 256; b++ {
		if !floatToBytes(dst, []float32{PixelValue(uint8(b))}) || dst[0] != uint8(b) {
			t.Fatalf("PixelValue(%d) not taken back as %d", b, b)
		}
	}
}

func TestValidateBytes(t *testing.T) {
	bd, fd := twins("mnist", 2, 1, 2, 2, 1)
	both := *bd
	both.Images = fd.Images
	short := *bd
	short.Pixels = short.Pixels[:7]
	for _, tc := range []struct {
		d    *Dataset
		want string
	}{{&both, "both Pixels"}, {&short, "7 pixel bytes for 2 labels"}} {
		if err := tc.d.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want an error containing %q", err, tc.want)
		}
	}
}

func TestGzipSizeHintBounded(t *testing.T) {
	forged := make([]byte, 100)
	binary.LittleEndian.PutUint32(forged[96:], math.MaxUint32) // ISIZE: 4 GiB
	if got := gzipSizeHint(forged); got > 1032*100 {
		t.Errorf("a 100-byte file with a forged trailer gets a %d-byte buffer", got)
	}
	if got := gzipSizeHint(forged[:10]); got != 0 {
		t.Errorf("a file too short for a trailer: hint %d", got)
	}
}
