package data

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFile writes b to dir/name and returns the path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Name = "x" // as the originals, which carry a file name
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// idxBytes encodes an IDX file with the given magic and dimensions.
func idxBytes(magic uint32, dims []uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return append(b, payload...)
}

// mnistLike returns n 28×28 images whose pixel (i, y, x) is (i*7+y*28+x)%256
// and labels i%10, as IDX bytes.
func mnistLike(n int) (images, labels []byte) {
	pix := make([]byte, n*28*28)
	for i := range pix {
		pix[i] = byte((i/784)*7 + i%784)
	}
	lab := make([]byte, n)
	for i := range lab {
		lab[i] = byte(i % 10)
	}
	return idxBytes(IDXImagesMagic, []uint32{uint32(n), 28, 28}, pix), idxBytes(IDXLabelsMagic, []uint32{uint32(n)}, lab)
}

// wantFormatError asserts err is a *FormatError naming file, with an
// offset in [lo, hi] and a message containing substr (if not empty).
func wantFormatError(t *testing.T, err error, file string, lo, hi int64, substr string) *FormatError {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	if fe.File != file {
		t.Errorf("error %v names %q, want %q", err, fe.File, file)
	}
	if fe.Offset < lo || fe.Offset > hi {
		t.Errorf("error %v: offset %d, want in [%d,%d]", err, fe.Offset, lo, hi)
	}
	if substr != "" && !strings.Contains(err.Error(), substr) {
		t.Errorf("error %q does not contain %q", err, substr)
	}
	if !strings.Contains(err.Error(), file) {
		t.Errorf("error text %q does not name the file", err)
	}
	t.Logf("%v", err)
	return fe
}

// --- a writer of MATLAB Level 5 MAT-files, for the SVHN tests ---

type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

type matVar struct {
	name     string
	class    uint32
	dims     []int32
	dataType uint32
	data     []byte
	complex  bool
}

// matLayout records where a variable's real data landed: for plain
// elements a file offset; for compressed ones the element's offset and the
// data's offset in the decompressed stream.
type matLayout struct {
	elemOff, elemEnd int64
	dataOff          int64
}

func matSub(bo byteOrder, typ uint32, data []byte, allowSmall bool) []byte {
	if allowSmall && len(data) <= 4 {
		var b [8]byte
		bo.PutUint32(b[:], uint32(len(data))<<16|typ)
		copy(b[4:], data)
		return b[:]
	}
	b := bo.AppendUint32(nil, typ)
	b = bo.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

// matElement encodes v as a miMATRIX element; dataAt is the offset of the
// real data within the element.
func matElement(bo byteOrder, v matVar) (elem []byte, dataAt int64) {
	flags := v.class
	if v.complex {
		flags |= 0x0800
	}
	content := matSub(bo, miUINT32, bo.AppendUint32(bo.AppendUint32(nil, flags), 0), false)
	var dims []byte
	for _, d := range v.dims {
		dims = bo.AppendUint32(dims, uint32(d))
	}
	content = append(content, matSub(bo, miINT32, dims, false)...)
	content = append(content, matSub(bo, miINT8, []byte(v.name), true)...)
	dataAt = int64(8 + len(content) + 8)
	content = append(content, matSub(bo, v.dataType, v.data, false)...)
	if v.complex {
		content = append(content, matSub(bo, v.dataType, v.data, false)...)
	}
	elem = bo.AppendUint32(nil, miMATRIX)
	elem = bo.AppendUint32(elem, uint32(len(content)))
	return append(elem, content...), dataAt
}

func matFile(t testing.TB, bo byteOrder, compress bool, vars ...matVar) ([]byte, []matLayout) {
	t.Helper()
	hdr := []byte("MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024")
	hdr = append(hdr, bytes.Repeat([]byte{' '}, 116-len(hdr))...)
	hdr = append(hdr, make([]byte, 8)...) // subsystem data offset
	hdr = bo.AppendUint16(hdr, 0x0100)
	hdr = bo.AppendUint16(hdr, 'M'<<8|'I')
	out := hdr
	var lay []matLayout
	for _, v := range vars {
		elem, dataAt := matElement(bo, v)
		start := int64(len(out))
		if compress {
			var z bytes.Buffer
			zw := zlib.NewWriter(&z)
			zw.Write(elem)
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			out = bo.AppendUint32(out, miCOMPRESSED)
			out = bo.AppendUint32(out, uint32(z.Len()))
			out = append(out, z.Bytes()...)
			lay = append(lay, matLayout{start, int64(len(out)), dataAt})
		} else {
			out = append(out, elem...)
			lay = append(lay, matLayout{start, int64(len(out)), start + dataAt})
		}
	}
	return out, lay
}

// svhnVars returns X (32×32×3×n uint8, column-major, pixel (h,w,c,k) =
// (h+2w+5c+11k)%256) and y (labels 1..10, stored as yType with class
// double).
func svhnVars(n int, labels []float64, yType uint32, bo byteOrder) (matVar, matVar) {
	x := make([]byte, 32*32*3*n)
	for k := 0; k < n; k++ {
		for c := 0; c < 3; c++ {
			for w := 0; w < 32; w++ {
				for h := 0; h < 32; h++ {
					x[h+32*(w+32*(c+3*k))] = byte(h + 2*w + 5*c + 11*k)
				}
			}
		}
	}
	var y []byte
	for _, l := range labels {
		switch yType {
		case miUINT8:
			y = append(y, byte(l))
		case miDOUBLE:
			y = bo.AppendUint64(y, math.Float64bits(l))
		}
	}
	return matVar{name: "X", class: mxUINT8, dims: []int32{32, 32, 3, int32(n)}, dataType: miUINT8, data: x},
		matVar{name: "y", class: mxDOUBLE, dims: []int32{int32(len(labels)), 1}, dataType: yType, data: y}
}
