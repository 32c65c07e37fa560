package data

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// MATLAB Level 5 MAT-file data types (the type field of a data element tag).
const (
	miINT8       = 1
	miUINT8      = 2
	miINT16      = 3
	miUINT16     = 4
	miINT32      = 5
	miUINT32     = 6
	miSINGLE     = 7
	miDOUBLE     = 9
	miINT64      = 12
	miUINT64     = 13
	miMATRIX     = 14
	miCOMPRESSED = 15
)

// MATLAB array classes (low byte of the array flags).
const (
	mxDOUBLE = 6
	mxSINGLE = 7
	mxINT8   = 8
	mxUINT8  = 9
	mxINT16  = 10
	mxUINT16 = 11
	mxINT32  = 12
	mxUINT32 = 13
	mxINT64  = 14
	mxUINT64 = 15
)

const matHeaderText = "MATLAB 5.0 MAT-file"

// matArray is a numeric MATLAB array read from a MAT file: its real part
// is kept in its stored type (which may be smaller than its class).
type matArray struct {
	name     string
	class    int
	dims     []int
	dataType uint32 // mi* type of the real part
	data     []byte // real part, dataType-encoded
	bo       binary.ByteOrder
	elemOff  int64 // file offset of the top-level element holding the array
	dataOff  int64 // offset of data[0]: in the file, or in the decompressed stream when compressed
	compr    bool
}

func (a *matArray) numel() int {
	n := 1
	for _, d := range a.dims {
		n *= d
	}
	return n
}

// value returns element i of the real part as float64.
func (a *matArray) value(i int) float64 {
	b := a.data
	switch a.dataType {
	case miINT8:
		return float64(int8(b[i]))
	case miUINT8:
		return float64(b[i])
	case miINT16:
		return float64(int16(a.bo.Uint16(b[2*i:])))
	case miUINT16:
		return float64(a.bo.Uint16(b[2*i:]))
	case miINT32:
		return float64(int32(a.bo.Uint32(b[4*i:])))
	case miUINT32:
		return float64(a.bo.Uint32(b[4*i:]))
	case miSINGLE:
		return float64(math.Float32frombits(a.bo.Uint32(b[4*i:])))
	case miDOUBLE:
		return math.Float64frombits(a.bo.Uint64(b[8*i:]))
	case miINT64:
		return float64(int64(a.bo.Uint64(b[8*i:])))
	case miUINT64:
		return float64(a.bo.Uint64(b[8*i:]))
	}
	return math.NaN()
}

// offsetOf is the offset and a note for element i of the real part, for
// error messages: the file offset for a plain element; for a compressed
// element, the element's file offset with the decompressed offset noted.
func (a *matArray) offsetOf(i int) (int64, string) {
	off := a.dataOff + int64(i)*int64(miSize(a.dataType))
	if a.compr {
		return a.elemOff, fmt.Sprintf(" (in the compressed element, at decompressed offset %d)", off)
	}
	return off, ""
}

// miSize is the byte size of one value of a numeric mi* type, 0 if not numeric.
func miSize(t uint32) int {
	switch t {
	case miINT8, miUINT8:
		return 1
	case miINT16, miUINT16:
		return 2
	case miINT32, miUINT32, miSINGLE:
		return 4
	case miDOUBLE, miINT64, miUINT64:
		return 8
	}
	return 0
}

// readMAT reads the numeric arrays whose names satisfy want from a MATLAB
// Level 5 MAT file (v6 plain or v7 with miCOMPRESSED elements, either byte
// order). Arrays of other names or of non-numeric classes are skipped. It
// also returns the file size.
func readMAT(path string, want func(name string) bool) (map[string]*matArray, int64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("data: %w", err)
	}
	if len(raw) < 128 {
		return nil, 0, formatErr(path, int64(len(raw)), nil, "truncated MAT-file header: %d of 128 bytes", len(raw))
	}
	if !bytes.HasPrefix(raw, []byte(matHeaderText)) {
		return nil, 0, formatErr(path, 0, nil, "not a MATLAB 5.0 MAT-file (header text %q)", printable(raw[:len(matHeaderText)]))
	}
	var bo binary.ByteOrder
	switch string(raw[126:128]) {
	case "IM":
		bo = binary.LittleEndian
	case "MI":
		bo = binary.BigEndian
	default:
		return nil, 0, formatErr(path, 126, nil, "bad MAT-file endian indicator %q, want \"IM\" or \"MI\"", printable(raw[126:128]))
	}
	if v := bo.Uint16(raw[124:]); v != 0x0100 {
		return nil, 0, formatErr(path, 124, nil, "unsupported MAT-file version 0x%04x, want 0x0100", v)
	}
	out := map[string]*matArray{}
	off := int64(128)
	for off < int64(len(raw)) {
		if int64(len(raw))-off < 8 {
			return nil, 0, formatErr(path, off, nil, "truncated data element tag: %d of 8 bytes", int64(len(raw))-off)
		}
		typ, nbytes, small := parseTag(bo, raw[off:])
		if small {
			off += 8 // a small element at top level carries no array
			continue
		}
		end := off + 8 + int64(nbytes)
		if end > int64(len(raw)) {
			return nil, 0, formatErr(path, off, nil, "truncated data element: type %d needs %d bytes, %d remain", typ, nbytes, int64(len(raw))-off-8)
		}
		content := raw[off+8 : end]
		switch typ {
		case miMATRIX:
			mr := &matReader{r: bytes.NewReader(content), bo: bo, base: off + 8}
			a, err := mr.matrix(int64(nbytes), want)
			if err != nil {
				return nil, 0, matErr(path, off, false, mr, err)
			}
			if a != nil {
				a.elemOff = off
				out[a.name] = a
			}
			end = off + 8 + pad8(int64(nbytes))
			if end > int64(len(raw)) {
				end = int64(len(raw)) // tolerate a missing final padding
			}
		case miCOMPRESSED:
			a, err := readCompressed(path, off, content, bo, want)
			if err != nil {
				return nil, 0, err
			}
			if a != nil {
				out[a.name] = a
			}
			// compressed elements are not padded
		default:
			end = off + 8 + pad8(int64(nbytes))
			if end > int64(len(raw)) {
				end = int64(len(raw))
			}
		}
		off = end
	}
	return out, int64(len(raw)), nil
}

// readCompressed decompresses a miCOMPRESSED element (at file offset off,
// content = its compressed bytes) and parses the miMATRIX inside it.
func readCompressed(path string, off int64, content []byte, bo binary.ByteOrder, want func(string) bool) (*matArray, error) {
	br := bytes.NewReader(content)
	zr, err := zlib.NewReader(br)
	if err != nil {
		return nil, formatErr(path, off+8+(br.Size()-int64(br.Len())), err, "corrupt zlib data in compressed element at offset %d", off)
	}
	rec := &errRecorder{r: zr}
	mr := &matReader{r: rec, bo: bo}
	fail := func(err error) error {
		if rec.err != nil && rec.err != io.EOF {
			return formatErr(path, off+8+(br.Size()-int64(br.Len())), rec.err,
				"corrupt zlib data in compressed element at offset %d (after %d decompressed bytes)", off, mr.off)
		}
		return matErr(path, off, true, mr, err)
	}
	tag, err := mr.read(8)
	if err != nil {
		return nil, fail(err)
	}
	typ, nbytes, small := parseTag(bo, tag)
	if small || typ != miMATRIX {
		return nil, fail(fmt.Errorf("compressed element holds data type %d, want miMATRIX (14)", typ))
	}
	a, err := mr.matrix(int64(nbytes), want)
	if err != nil {
		return nil, fail(err)
	}
	if a == nil {
		return nil, nil
	}
	a.elemOff, a.compr = off, true
	// Read to the end so that the zlib checksum is verified.
	if _, err := mr.skip(pad8(int64(nbytes)) - int64(nbytes)); err != nil && rec.err != io.EOF {
		return nil, fail(err)
	}
	extra, err := io.Copy(io.Discard, rec)
	if err != nil {
		return nil, fail(err)
	}
	if extra != 0 {
		return nil, fail(fmt.Errorf("%d bytes of decompressed data after the array", extra))
	}
	return a, nil
}

// matErr turns a parse error into a FormatError: at the reader's offset for
// a plain element, at the element's offset with the decompressed offset in
// the message for a compressed one.
func matErr(path string, elemOff int64, compressed bool, mr *matReader, err error) error {
	var fe *FormatError
	if errors.As(err, &fe) {
		return err
	}
	msg := err.Error()
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		msg = "truncated data"
	}
	if compressed {
		return formatErr(path, elemOff, nil, "in compressed element: decompressed offset %d: %s", mr.off, msg)
	}
	return formatErr(path, mr.base+mr.off, nil, "%s", msg)
}

// errRecorder remembers the last error of the underlying reader, to tell a
// corrupt zlib stream from a well-formed but short one.
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// parseTag parses a data element tag; small is true for the small data
// element format (type and size packed in 4 bytes, data in the next 4).
func parseTag(bo binary.ByteOrder, b []byte) (typ, nbytes uint32, small bool) {
	w := bo.Uint32(b)
	if w>>16 != 0 {
		return w & 0xffff, w >> 16, true
	}
	return w, bo.Uint32(b[4:]), false
}

func pad8(n int64) int64 { return (n + 7) &^ 7 }

func printable(b []byte) string {
	r := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '.'
		}
		r[i] = c
	}
	return string(r)
}

// matReader reads a MAT element stream, tracking the offset.
type matReader struct {
	r    io.Reader
	bo   binary.ByteOrder
	base int64 // file offset of the stream start (plain elements)
	off  int64 // bytes consumed
}

func (m *matReader) read(n int64) ([]byte, error) {
	var buf bytes.Buffer
	// Grow as data arrives beyond 1 MiB, so that a corrupt size in a short
	// stream cannot make us allocate gigabytes up front.
	buf.Grow(int(min(n, 1<<20)))
	k, err := io.CopyN(&buf, m.r, n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		m.off += k
		return nil, err
	}
	m.off += k
	return buf.Bytes(), nil
}

func (m *matReader) skip(n int64) (int64, error) {
	k, err := io.CopyN(io.Discard, m.r, n)
	m.off += k
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return k, err
}

// sub reads a subelement (normal or small format, with its padding) of at
// most limit bytes and returns its type, data and the offset of the data.
func (m *matReader) sub(limit int64) (uint32, []byte, int64, error) {
	start := m.off
	if limit < 8 {
		return 0, nil, 0, fmt.Errorf("subelement tag needs 8 bytes, %d remain in the array", limit)
	}
	tag, err := m.read(8)
	if err != nil {
		return 0, nil, 0, err
	}
	typ, nbytes, small := parseTag(m.bo, tag)
	if small {
		if nbytes > 4 {
			m.off = start
			return 0, nil, 0, fmt.Errorf("small data element with %d bytes (at most 4)", nbytes)
		}
		return typ, tag[4 : 4+nbytes], start + 4, nil
	}
	if int64(nbytes)+8 > limit {
		m.off = start
		return 0, nil, 0, fmt.Errorf("subelement of %d bytes overruns its array (%d bytes remain)", nbytes, limit-8)
	}
	dataOff := m.off
	data, err := m.read(int64(nbytes))
	if err != nil {
		return 0, nil, 0, err
	}
	// Padding to 8 bytes; a final subelement may lack it if the array does.
	p := pad8(int64(nbytes)) - int64(nbytes)
	if p > limit-8-int64(nbytes) {
		p = limit - 8 - int64(nbytes)
	}
	if _, err := m.skip(p); err != nil {
		return 0, nil, 0, err
	}
	return typ, data, dataOff, nil
}

// matrix parses the content of a miMATRIX element of nbytes bytes. It
// returns nil (and stops reading) for an array that want rejects or that is
// not numeric.
func (m *matReader) matrix(nbytes int64, want func(string) bool) (*matArray, error) {
	start := m.off
	left := func() int64 { return nbytes - (m.off - start) }
	if nbytes == 0 {
		return nil, nil // empty array
	}
	flagsOff := m.off
	typ, flags, _, err := m.sub(left())
	if err != nil {
		return nil, err
	}
	if typ != miUINT32 || len(flags) != 8 {
		m.off = flagsOff
		return nil, fmt.Errorf("array flags subelement has type %d and %d bytes, want miUINT32 (6) and 8", typ, len(flags))
	}
	w := m.bo.Uint32(flags)
	class := int(w & 0xff)
	complexFlag := w&0x0800 != 0
	dimsOff := m.off
	typ, db, _, err := m.sub(left())
	if err != nil {
		return nil, err
	}
	if typ != miINT32 || len(db) < 8 || len(db)%4 != 0 {
		m.off = dimsOff
		return nil, fmt.Errorf("dimensions subelement has type %d and %d bytes, want miINT32 and a multiple of 4 of at least 8", typ, len(db))
	}
	dims := make([]int, len(db)/4)
	numel := int64(1)
	for i := range dims {
		v := int32(m.bo.Uint32(db[4*i:]))
		if v < 0 {
			m.off = dimsOff
			return nil, fmt.Errorf("negative dimension %d", v)
		}
		dims[i] = int(v)
		if v != 0 && numel > maxDecompressed/int64(v) {
			m.off = dimsOff
			return nil, fmt.Errorf("array dimensions %v too large", dims[:i+1])
		}
		numel *= int64(v)
	}
	nameOff := m.off
	typ, nb, _, err := m.sub(left())
	if err != nil {
		return nil, err
	}
	if typ != miINT8 && typ != miUINT8 && typ != 16 /* miUTF8 */ {
		m.off = nameOff
		return nil, fmt.Errorf("array name subelement has type %d, want miINT8 (1)", typ)
	}
	name := string(nb)
	if class < mxDOUBLE || class > mxUINT64 || !want(name) {
		return nil, nil
	}
	if complexFlag {
		m.off = flagsOff
		return nil, fmt.Errorf("array %q is complex; only real arrays are supported", name)
	}
	realOff := m.off
	typ, data, dataOff, err := m.sub(left())
	if err != nil {
		return nil, err
	}
	sz := miSize(typ)
	if sz == 0 {
		m.off = realOff
		return nil, fmt.Errorf("array %q: real part has non-numeric data type %d", name, typ)
	}
	if int64(len(data)) != numel*int64(sz) {
		m.off = realOff
		return nil, fmt.Errorf("array %q: real part has %d bytes, dimensions %v need %d", name, len(data), dims, numel*int64(sz))
	}
	return &matArray{name: name, class: class, dims: dims, dataType: typ, data: data, bo: m.bo, dataOff: m.base + dataOff}, nil
}
