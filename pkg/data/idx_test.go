package data

import (
	"fmt"
	"testing"
)

func TestLoadMNISTPlainAndGzip(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprint("gzip=", gz), func(t *testing.T) {
			dir := t.TempDir()
			im, lb := mnistLike(5)
			imt, lbt := mnistLike(3)
			if gz {
				im, lb, imt, lbt = gzipBytes(t, im), gzipBytes(t, lb), gzipBytes(t, imt), gzipBytes(t, lbt)
				// names with .gz: the loader finds them
				writeFile(t, dir, MNISTTrainImages+".gz", im)
				writeFile(t, dir, MNISTTrainLabels+".gz", lb)
				writeFile(t, dir, MNISTTestImages+".gz", imt)
				writeFile(t, dir, MNISTTestLabels+".gz", lbt)
			} else {
				writeFile(t, dir, MNISTTrainImages, im)
				writeFile(t, dir, MNISTTrainLabels, lb)
				writeFile(t, dir, MNISTTestImages, imt)
				writeFile(t, dir, MNISTTestLabels, lbt)
			}
			for _, name := range []string{"mnist", "fashion-mnist"} {
				d, err := Load(name, dir, "train")
				if err != nil {
					t.Fatal(err)
				}
				if d.Name != name || d.Len() != 5 || d.C != 1 || d.H != 28 || d.W != 28 || d.Classes != 10 {
					t.Fatalf("got %s %d examples %dx%dx%d %d classes", d.Name, d.Len(), d.C, d.H, d.W, d.Classes)
				}
				if err := d.Validate(); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 5; i++ {
					if d.Labels[i] != int32(i%10) {
						t.Errorf("label %d = %d", i, d.Labels[i])
					}
				}
				// pixel (i=2, y=3, x=4) = (2*7 + 3*28+4) % 256 / 255
				if got, want := d.Image(2)[3*28+4], float32(byte(2*7+3*28+4))/255; got != want {
					t.Errorf("pixel = %v, want %v", got, want)
				}
				te, err := Load(name, dir, "test")
				if err != nil || te.Len() != 3 {
					t.Fatalf("test split: %v, %v", te, err)
				}
			}
		})
	}
}

func TestLoadGzipDetectedByMagicNotName(t *testing.T) {
	dir := t.TempDir()
	im, lb := mnistLike(2)
	// gzip content under the plain name, plain content under the .gz name
	ip := writeFile(t, dir, "imgs", gzipBytes(t, im))
	lp := writeFile(t, dir, "labs.gz", lb)
	d, err := LoadIDX(ip, lp, 10)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 {
		t.Fatalf("len %d", d.Len())
	}
}

func TestLoadUnknownAndMissing(t *testing.T) {
	if _, err := Load("imagenet", t.TempDir(), "train"); err == nil {
		t.Error("unknown dataset accepted")
	}
	if _, err := Load("mnist", t.TempDir(), "val"); err == nil {
		t.Error("bad split accepted")
	}
	if _, err := Load("mnist", t.TempDir(), "train"); err == nil {
		t.Error("missing files accepted")
	}
}

func TestIDXCorruption(t *testing.T) {
	im, lb := mnistLike(4)
	dir := t.TempDir()
	goodLabels := writeFile(t, dir, "labels", lb)
	goodImages := writeFile(t, dir, "images", im)

	// Truncation of the image file at several offsets: header and payload.
	for _, n := range []int{0, 3, 4, 9, 15, 16, 17, 100, len(im) - 1} {
		p := writeFile(t, dir, fmt.Sprint("trunc", n), im[:n])
		_, err := LoadIDX(p, goodLabels, 10)
		wantFormatError(t, err, p, int64(n), int64(n), "truncated")
	}
	// Trailing garbage.
	p := writeFile(t, dir, "trailing", append(append([]byte(nil), im...), 1, 2, 3))
	_, err := LoadIDX(p, goodLabels, 10)
	wantFormatError(t, err, p, int64(len(im)), int64(len(im)), "trailing")

	// Wrong magic: a label file given as images, and garbage.
	_, err = LoadIDX(goodLabels, goodLabels, 10)
	wantFormatError(t, err, goodLabels, 0, 0, "magic")
	bad := append([]byte(nil), im...)
	bad[2] = 0x09
	p = writeFile(t, dir, "badmagic", bad)
	_, err = LoadIDX(p, goodLabels, 10)
	wantFormatError(t, err, p, 0, 0, "0x00000903")

	// Count mismatch: 3 labels for 4 images.
	_, lb3 := mnistLike(3)
	p = writeFile(t, dir, "labels3", lb3)
	_, err = LoadIDX(goodImages, p, 10)
	wantFormatError(t, err, p, 4, 4, "3 labels for 4 images")

	// Label out of range at example 2 → offset 8+2.
	badl := append([]byte(nil), lb...)
	badl[8+2] = 10
	p = writeFile(t, dir, "badlabel", badl)
	_, err = LoadIDX(goodImages, p, 10)
	wantFormatError(t, err, p, 10, 10, "label 10 of example 2")

	// MNIST must be 28×28.
	sq := idxBytes(IDXImagesMagic, []uint32{4, 2, 2}, make([]byte, 16))
	d2 := t.TempDir()
	ip := writeFile(t, d2, MNISTTrainImages, sq)
	writeFile(t, d2, MNISTTrainLabels, lb)
	_, err = Load("mnist", d2, "train")
	wantFormatError(t, err, ip, 8, 8, "28x28")
}

func TestIDXGzipCorruption(t *testing.T) {
	im, lb := mnistLike(4)
	dir := t.TempDir()
	goodLabels := writeFile(t, dir, "labels", lb)
	gz := gzipBytes(t, im)

	// Truncated compressed stream at several offsets: the offset is where
	// the decompressor stopped, within the compressed file.
	for _, n := range []int{2, 10, 20, len(gz) / 2, len(gz) - 4, len(gz) - 1} {
		p := writeFile(t, dir, fmt.Sprint("gz", n), gz[:n])
		_, err := LoadIDX(p, goodLabels, 10)
		wantFormatError(t, err, p, 0, int64(n), "gzip")
	}
	// Corrupt deflate data / checksum.
	bad := append([]byte(nil), gz...)
	for i := 20; i < 40; i++ {
		bad[i] ^= 0x5a
	}
	p := writeFile(t, dir, "corrupt.gz", bad)
	_, err := LoadIDX(p, goodLabels, 10)
	wantFormatError(t, err, p, 0, int64(len(bad)), "gzip")
	bad = append([]byte(nil), gz...)
	bad[len(bad)-6] ^= 0xff // CRC-32
	p = writeFile(t, dir, "crc.gz", bad)
	_, err = LoadIDX(p, goodLabels, 10)
	wantFormatError(t, err, p, int64(len(bad)-8), int64(len(bad)), "gzip")

	// A valid gzip of a truncated IDX: the offset is in the decompressed
	// stream, and the message says so.
	p = writeFile(t, dir, "short.gz", gzipBytes(t, im[:500]))
	_, err = LoadIDX(p, goodLabels, 10)
	wantFormatError(t, err, p, 500, 500, "decompressed")

	// Labels in a gzip with a bad label: decompressed offset.
	badl := append([]byte(nil), lb...)
	badl[8+3] = 200
	p = writeFile(t, dir, "badlabel.gz", gzipBytes(t, badl))
	_, err = LoadIDX(writeFile(t, dir, "im", im), p, 10)
	wantFormatError(t, err, p, 11, 11, "decompressed")
}

func TestLoadIDXGenericShape(t *testing.T) {
	dir := t.TempDir()
	pix := []byte{0, 255, 51, 102, 0, 0}
	ip := writeFile(t, dir, "i", idxBytes(IDXImagesMagic, []uint32{1, 2, 3}, pix))
	lp := writeFile(t, dir, "l", idxBytes(IDXLabelsMagic, []uint32{1}, []byte{1}))
	d, err := LoadIDX(ip, lp, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{0, 1, 0.2, 0.4, 0, 0}
	if d.H != 2 || d.W != 3 || !equalF(d.Image(0), want, 1e-7) {
		t.Fatalf("got %dx%d %v", d.H, d.W, d.Image(0))
	}
}

func equalF(a, b []float32, tol float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		d := a[i] - b[i]
		if d > tol || d < -tol {
			return false
		}
	}
	return true
}
