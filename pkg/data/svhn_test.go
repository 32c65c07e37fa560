package data

import (
	"encoding/binary"
	"fmt"
	"testing"
)

func checkSVHN(t *testing.T, d *Dataset, n int, labels []int32) {
	t.Helper()
	if d.Len() != n || d.C != 3 || d.H != 32 || d.W != 32 || d.Classes != 10 || d.Name != "svhn" {
		t.Fatalf("got %d examples %dx%dx%d", d.Len(), d.C, d.H, d.W)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	for i, l := range labels {
		if d.Labels[i] != l {
			t.Errorf("label %d = %d, want %d", i, d.Labels[i], l)
		}
	}
	// CHW (c,h,w) of example k holds MATLAB (h,w,c,k) = h+2w+5c+11k.
	for k := 0; k < n; k++ {
		for _, p := range [][3]int{{0, 0, 0}, {2, 31, 0}, {1, 3, 17}, {2, 30, 29}} {
			c, h, w := p[0], p[1], p[2]
			got := d.Image(k)[c*1024+h*32+w]
			want := float32(byte(h+2*w+5*c+11*k)) / 255
			if got != want {
				t.Errorf("example %d (c%d,h%d,w%d) = %v, want %v", k, c, h, w, got, want)
			}
		}
	}
}

func TestLoadSVHN(t *testing.T) {
	labels := []float64{10, 1, 9, 5}
	want := []int32{0, 1, 9, 5}
	for _, compress := range []bool{false, true} {
		for _, yType := range []uint32{miUINT8, miDOUBLE} {
			for _, bo := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
				t.Run(fmt.Sprintf("compress=%v/y=%d/%v", compress, yType, bo), func(t *testing.T) {
					x, y := svhnVars(4, labels, yType, bo)
					// an unrelated variable first, to be skipped
					other := matVar{name: "info", class: mxDOUBLE, dims: []int32{1, 1}, dataType: miDOUBLE, data: make([]byte, 8)}
					b, _ := matFile(t, bo, compress, other, x, y)
					dir := t.TempDir()
					writeFile(t, dir, "train_32x32.mat", b)
					d, err := Load("svhn", dir, "train")
					if err != nil {
						t.Fatal(err)
					}
					checkSVHN(t, d, 4, want)
				})
			}
		}
	}
	// N = 1: MATLAB drops the trailing singleton dimension.
	x, y := svhnVars(1, []float64{3}, miUINT8, binary.LittleEndian)
	x.dims = x.dims[:3]
	b, _ := matFile(t, binary.LittleEndian, true, x, y)
	dir := t.TempDir()
	writeFile(t, dir, "test_32x32.mat", b)
	d, err := Load("svhn", dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	checkSVHN(t, d, 1, []int32{3})
}

func TestSVHNCorruption(t *testing.T) {
	bo := binary.LittleEndian
	labels := []float64{10, 1, 9}
	dir := t.TempDir()
	write := func(name string, b []byte) string { return writeFile(t, dir, name, b) }

	for _, compress := range []bool{false, true} {
		x, y := svhnVars(3, labels, miUINT8, bo)
		good, lay := matFile(t, bo, compress, x, y)
		tag := fmt.Sprint("c", compress)

		// Truncation at several offsets: in the header, in a tag, in the
		// middle of X, in y. Offsets lie within the file.
		for _, n := range []int{0, 50, 127, 128, 131, 140, 200, int(lay[0].elemEnd) - 3, int(lay[1].elemOff) + 4, len(good) - 1} {
			p := write(fmt.Sprintf("%s-trunc%d", tag, n), good[:n])
			_, err := LoadSVHN(p)
			wantFormatError(t, err, p, 0, int64(n), "")
		}

		// Wrong header text, endian indicator, version.
		bad := append([]byte(nil), good...)
		copy(bad, "MATLAB 4.0")
		p := write(tag+"-text", bad)
		_, err := LoadSVHN(p)
		wantFormatError(t, err, p, 0, 0, "not a MATLAB 5.0 MAT-file")
		bad = append([]byte(nil), good...)
		bad[126], bad[127] = 'X', 'X'
		p = write(tag+"-endian", bad)
		_, err = LoadSVHN(p)
		wantFormatError(t, err, p, 126, 126, "endian")
		bad = append([]byte(nil), good...)
		bad[124] = 2
		p = write(tag+"-version", bad)
		_, err = LoadSVHN(p)
		wantFormatError(t, err, p, 124, 124, "version")

		// Label out of range (11, then 0): the offset is the label's (plain)
		// or the compressed element's.
		for _, l := range []float64{11, 0, 2.5} {
			x, y := svhnVars(3, []float64{10, l, 1}, miDOUBLE, bo)
			b, lay := matFile(t, bo, compress, x, y)
			p := write(fmt.Sprintf("%s-label%v", tag, l), b)
			_, err := LoadSVHN(p)
			off := lay[1].dataOff + 8 // label 1, doubles
			if compress {
				off = lay[1].elemOff
			}
			wantFormatError(t, err, p, off, off, "out of range")
		}

		// Count mismatch: 2 labels for 3 images.
		x2, y2 := svhnVars(3, []float64{1, 2}, miUINT8, bo)
		b, lay2 := matFile(t, bo, compress, x2, y2)
		p = write(tag+"-count", b)
		_, err = LoadSVHN(p)
		off := lay2[1].dataOff
		if compress {
			off = lay2[1].elemOff
		}
		wantFormatError(t, err, p, off, off, "for 3 images")

		// Bad X dimensions.
		x3, y3 := svhnVars(3, labels, miUINT8, bo)
		x3.dims = []int32{32, 96, 3}
		b, _ = matFile(t, bo, compress, x3, y3)
		p = write(tag+"-dims", b)
		_, err = LoadSVHN(p)
		wantFormatError(t, err, p, 128, int64(len(b)), "dimensions")

		// Missing y.
		b, _ = matFile(t, bo, compress, x)
		p = write(tag+"-noy", b)
		_, err = LoadSVHN(p)
		wantFormatError(t, err, p, int64(len(b)), int64(len(b)), "lacks")

		// Data size disagreeing with the dimensions.
		x4, y4 := svhnVars(3, labels, miUINT8, bo)
		x4.data = x4.data[:len(x4.data)-8]
		b, lay4 := matFile(t, bo, compress, x4, y4)
		p = write(tag+"-size", b)
		_, err = LoadSVHN(p)
		wantFormatError(t, err, p, lay4[0].elemOff, lay4[0].elemEnd, "real part")

		// Complex X.
		x5, y5 := svhnVars(1, []float64{1}, miUINT8, bo)
		x5.complex = true
		b, _ = matFile(t, bo, compress, x5, y5)
		p = write(tag+"-complex", b)
		_, err = LoadSVHN(p)
		wantFormatError(t, err, p, 128, int64(len(b)), "complex")
	}

	// Corrupt zlib data: the offset is inside the compressed element.
	x, y := svhnVars(3, labels, miUINT8, bo)
	good, lay := matFile(t, bo, true, x, y)
	for _, at := range []int64{lay[0].elemOff + 8, lay[0].elemOff + 30, lay[0].elemEnd - 2, lay[1].elemEnd - 3} {
		bad := append([]byte(nil), good...)
		bad[at] ^= 0xff
		bad[at+1] ^= 0x55
		p := write(fmt.Sprint("zlib", at), bad)
		_, err := LoadSVHN(p)
		el := lay[0]
		if at >= lay[1].elemOff {
			el = lay[1]
		}
		wantFormatError(t, err, p, el.elemOff, el.elemEnd, "")
	}
	// A compressed element holding something other than a matrix.
	bad := append([]byte(nil), good[:lay[0].elemOff]...)
	z := gzipBytes(t, []byte("x")) // not even zlib
	bad = bo.AppendUint32(bad, miCOMPRESSED)
	bad = bo.AppendUint32(bad, uint32(len(z)))
	bad = append(bad, z...)
	p := write("notzlib", bad)
	_, err := LoadSVHN(p)
	wantFormatError(t, err, p, lay[0].elemOff, int64(len(bad)), "zlib")
}

// TestSVHNFromSciPy reads files written by an independent writer, SciPy's
// scipy.io.savemat (testdata/gen_svhn_scipy.py), plain and compressed.
func TestSVHNFromSciPy(t *testing.T) {
	for _, name := range []string{"testdata/svhn_scipy_plain.mat", "testdata/svhn_scipy_zlib.mat"} {
		d, err := LoadSVHN(name)
		if err != nil {
			t.Fatal(err)
		}
		checkSVHN(t, d, 2, []int32{0, 3})
	}
}
