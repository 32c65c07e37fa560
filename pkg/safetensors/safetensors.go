// Package safetensors reads and writes the safetensors tensor-container format
// (https://github.com/huggingface/safetensors), used by logitpair for model
// checkpoints and for the golden fixtures produced by scripts/gen-golden.py.
//
// A file is laid out as:
//
//	bytes [0, 8)        N, the header length, a little-endian uint64
//	bytes [8, 8+N)      a UTF-8 JSON object, padded with spaces
//	bytes [8+N, EOF)    the data section: raw little-endian tensor bytes
//
// The header maps each tensor name to
//
//	{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
//
// where the offsets are relative to the start of the data section, plus an
// optional "__metadata__" entry holding a string→string map. The tensors'
// byte ranges must tile the data section exactly: no gaps, no overlaps, no
// trailing bytes, and end−begin must equal the element count times the dtype
// size. Encode writes spec-conformant files: the header is padded with spaces
// so the data section starts at a multiple of 8, tensors are laid out in
// sorted-name order, and "__metadata__" appears only when non-empty.
//
// Errors caused by the data (a corrupt or truncated file, a wrong dtype) are
// returned as *FormatError values naming the file and, where it applies, the
// byte offset of the problem.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"
)

// MaxHeaderLen caps the JSON header length accepted by Read (100 MB, as the
// reference implementation).
const MaxHeaderLen = 100 << 20

// DType names a tensor element type as spelled in the header.
type DType string

// The element types of the safetensors format.
const (
	BOOL DType = "BOOL"
	U8   DType = "U8"
	I8   DType = "I8"
	I16  DType = "I16"
	U16  DType = "U16"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I32  DType = "I32"
	U32  DType = "U32"
	F32  DType = "F32"
	F64  DType = "F64"
	I64  DType = "I64"
	U64  DType = "U64"
)

// Size returns the element size in bytes, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case F64, I64, U64:
		return 8
	}
	return 0
}

// Tensor is one named tensor: its raw little-endian bytes and its shape.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// ErrNotSafetensors is wrapped by the *FormatError for data that is not a
// safetensors file at all (empty, text, JSON, another format), as opposed to
// a damaged one: its first header byte is not '{'.
var ErrNotSafetensors = errors.New("not a safetensors file")

// FormatError reports invalid data: a malformed file, or a tensor that is not
// what the caller asked for.
type FormatError struct {
	File   string // file path, "" if unknown
	Offset int64  // absolute byte offset in the file, -1 if not applicable
	Msg    string
	Err    error // ErrNotSafetensors, or nil
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("safetensors: ")
	if e.Err == ErrNotSafetensors {
		name := e.File
		if name == "" {
			name = "the input"
		}
		fmt.Fprintf(&b, "%s is not a safetensors file (%s)", name, e.Msg)
		return b.String()
	}
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, "at byte %d: ", e.Offset)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns ErrNotSafetensors for data that is not a safetensors file.
func (e *FormatError) Unwrap() error { return e.Err }

// File is a set of tensors in order plus string metadata.
type File struct {
	Metadata map[string]string
	// Tensors in file order (by data offset) after Read, insertion order
	// after Add*. Encode always lays them out sorted by name.
	Tensors []Tensor

	name  string // path, for error messages
	index map[string]int
}

// New returns an empty File.
func New() *File { return &File{Metadata: map[string]string{}} }

func (f *File) errorf(off int64, format string, args ...any) error {
	return &FormatError{File: f.name, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// ReadFile reads and validates the safetensors file at path.
func ReadFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	return read(fh, st.Size(), path, true)
}

// Read reads and validates a safetensors file of size bytes from r. size is
// not trusted for allocation: a reader that ends early gives a *FormatError
// after buffering only what it delivered.
func Read(r io.Reader, size int64) (*File, error) { return read(r, size, "", false) }

type headerEntry struct {
	DType       *DType   `json:"dtype"`
	Shape       *[]int   `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// readN reads exactly n bytes from r. With sized (n is a file's size from
// stat) the buffer is allocated at once; otherwise it grows as data arrives,
// so that a wrong size cannot allocate more than the reader holds plus 1 MiB.
func readN(r io.Reader, n int64, sized bool) ([]byte, int64, error) {
	if sized {
		b := make([]byte, n)
		k, err := io.ReadFull(r, b)
		return b, int64(k), err
	}
	var buf bytes.Buffer
	buf.Grow(int(min(n, 1<<20)))
	k, err := io.CopyN(&buf, r, n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return buf.Bytes(), k, err
}

// read decodes a file of size bytes from r; sized says size comes from the
// file system (ReadFile) rather than from the caller (Read).
func read(r io.Reader, size int64, name string, sized bool) (*File, error) {
	f := &File{Metadata: map[string]string{}, name: name}
	if size < 8 {
		head, _ := io.ReadAll(io.LimitReader(r, max(size, 0)))
		return nil, f.notSafetensors(head, size)
	}
	var lenBuf [8]byte
	if n, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, f.errorf(int64(n), "truncated header length: %v", err)
	}
	hlen := binary.LittleEndian.Uint64(lenBuf[:])
	// A safetensors header starts with '{'. A file whose first bytes, read
	// as a length, declare an impossible header and that has no '{' after
	// them is another kind of file (text, JSON, empty, another format), not
	// a damaged safetensors file: say so rather than report the length.
	if hlen > MaxHeaderLen || int64(hlen) > size-8 {
		var next [8]byte
		n, _ := io.ReadFull(io.LimitReader(r, min(size-8, 8)), next[:])
		// n == 0: 8 bytes in all; a sane length is a file cut after it.
		if (n > 0 && next[0] != '{') || (n == 0 && hlen > MaxHeaderLen) {
			return nil, f.notSafetensors(append(lenBuf[:], next[:n]...), size)
		}
	}
	if hlen > MaxHeaderLen {
		return nil, f.errorf(0, "header length %d exceeds the %d-byte cap", hlen, MaxHeaderLen)
	}
	if int64(hlen) > size-8 {
		return nil, f.errorf(0, "header length %d larger than the file (%d bytes after the length prefix)", hlen, size-8)
	}
	hdr, n, err := readN(r, int64(hlen), sized)
	if err != nil {
		return nil, f.errorf(8+n, "truncated header: read %d of %d bytes: %v", n, hlen, err)
	}
	dataStart := 8 + int64(hlen)
	data, n, err := readN(r, size-dataStart, sized)
	if err != nil {
		return nil, f.errorf(dataStart+n, "truncated data section: read %d of %d bytes: %v", n, size-dataStart, err)
	}

	entries, order, err := f.parseHeader(hdr)
	if err != nil {
		return nil, err
	}
	type span struct {
		name       string
		begin, end int64
	}
	spans := make([]span, 0, len(order))
	for _, nm := range order {
		e := entries[nm]
		if e.DType == nil || e.Shape == nil || e.DataOffsets == nil {
			return nil, f.errorf(8, "tensor %q: header entry needs dtype, shape and data_offsets", nm)
		}
		dt := *e.DType
		if dt.Size() == 0 {
			return nil, f.errorf(8, "tensor %q: unknown dtype %q", nm, string(dt))
		}
		offs := *e.DataOffsets
		if len(offs) != 2 {
			return nil, f.errorf(8, "tensor %q: data_offsets has %d entries, want 2", nm, len(offs))
		}
		b, end := offs[0], offs[1]
		if b < 0 || end < b || end > int64(len(data)) {
			return nil, f.errorf(dataStart+max(b, 0), "tensor %q: data_offsets [%d, %d] out of range for a %d-byte data section", nm, b, end, len(data))
		}
		numel, err := numElems(*e.Shape)
		if err != nil {
			return nil, f.errorf(8, "tensor %q: %v", nm, err)
		}
		if want := numel * int64(dt.Size()); want != end-b || numel > math.MaxInt64/int64(dt.Size()) {
			return nil, f.errorf(dataStart+b, "tensor %q: shape %v of %s needs %d bytes but data_offsets [%d, %d] span %d", nm, *e.Shape, dt, want, b, end, end-b)
		}
		spans = append(spans, span{nm, b, end})
		f.Tensors = append(f.Tensors, Tensor{Name: nm, DType: dt, Shape: append([]int{}, *e.Shape...), Data: data[b:end:end]})
	}
	// The byte ranges must tile the data section.
	sort.SliceStable(spans, func(i, j int) bool {
		if spans[i].begin != spans[j].begin {
			return spans[i].begin < spans[j].begin
		}
		return spans[i].end < spans[j].end
	})
	var pos int64
	for i, s := range spans {
		switch {
		case s.begin > pos:
			return nil, f.errorf(dataStart+pos, "gap of %d bytes before tensor %q (data_offsets [%d, %d])", s.begin-pos, s.name, s.begin, s.end)
		case s.begin < pos:
			return nil, f.errorf(dataStart+s.begin, "tensor %q (data_offsets [%d, %d]) overlaps tensor %q", s.name, s.begin, s.end, spans[i-1].name)
		}
		pos = s.end
	}
	if pos != int64(len(data)) {
		return nil, f.errorf(dataStart+pos, "%d trailing bytes after the last tensor", int64(len(data))-pos)
	}
	begin := make(map[string]int64, len(spans))
	for _, s := range spans {
		begin[s.name] = s.begin
	}
	sort.SliceStable(f.Tensors, func(i, j int) bool {
		bi, bj := begin[f.Tensors[i].Name], begin[f.Tensors[j].Name]
		if bi != bj {
			return bi < bj
		}
		return f.Tensors[i].Name < f.Tensors[j].Name
	})
	f.reindex()
	return f, nil
}

// notSafetensors is the error for data that is not a safetensors file;
// head is its first bytes (at most 16 of them are shown).
func (f *File) notSafetensors(head []byte, size int64) error {
	if size == 0 {
		return &FormatError{File: f.name, Offset: 0, Err: ErrNotSafetensors, Msg: "it is empty"}
	}
	head = head[:min(len(head), 16)]
	var what string
	switch t := bytes.TrimLeft(head, " \t\r\n"); {
	case len(t) > 0 && (t[0] == '{' || t[0] == '['):
		what = ": JSON?"
	case utf8.Valid(head) && !bytes.ContainsFunc(head, func(r rune) bool { return r < ' ' && r != '\n' && r != '\r' && r != '\t' }):
		what = ": text"
	}
	msg := fmt.Sprintf("it starts with %q%s, where a safetensors file starts with its header's length (8 bytes, little-endian) and then '{'", head, what)
	if size < 8 {
		msg = fmt.Sprintf("it is only %d bytes, %q%s: too short for a safetensors file's header length (8 bytes)", size, head, what)
	}
	return &FormatError{File: f.name, Offset: 0, Err: ErrNotSafetensors, Msg: msg}
}

// parseHeader decodes the JSON header, rejecting duplicate names.
func (f *File) parseHeader(hdr []byte) (map[string]headerEntry, []string, error) {
	dec := json.NewDecoder(bytes.NewReader(hdr))
	bad := func(err error) error {
		return f.errorf(8+dec.InputOffset(), "invalid JSON header: %v", err)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, bad(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, f.errorf(8, "invalid JSON header: want an object, got %v", tok)
	}
	entries := map[string]headerEntry{}
	var order []string
	seenMeta := false
	for dec.More() {
		off := 8 + dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, bad(err)
		}
		key := tok.(string) // object keys are always strings
		if key == "__metadata__" {
			if seenMeta {
				return nil, nil, f.errorf(off, "duplicate __metadata__ entry")
			}
			seenMeta = true
			var md map[string]string
			if err := dec.Decode(&md); err != nil {
				return nil, nil, f.errorf(off, "invalid __metadata__ (want a string→string object): %v", err)
			}
			for k, v := range md {
				f.Metadata[k] = v
			}
			continue
		}
		if key == "" {
			// Add and Encode refuse it too: a file must survive a round trip.
			return nil, nil, f.errorf(off, "empty tensor name")
		}
		if _, dup := entries[key]; dup {
			return nil, nil, f.errorf(off, "duplicate tensor name %q", key)
		}
		var e headerEntry
		if err := dec.Decode(&e); err != nil {
			return nil, nil, f.errorf(off, "invalid JSON header: tensor %q: %v", key, err)
		}
		entries[key] = e
		order = append(order, key)
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, nil, bad(err)
	}
	if rest := bytes.TrimLeft(hdr[dec.InputOffset():], " \t\r\n"); len(rest) != 0 {
		return nil, nil, f.errorf(8+dec.InputOffset(), "invalid JSON header: %d unexpected bytes after the object", len(rest))
	}
	return entries, order, nil
}

func numElems(shape []int) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d != 0 && n > math.MaxInt64/int64(d) {
			return 0, fmt.Errorf("shape %v overflows", shape)
		}
		n *= int64(d)
	}
	return n, nil
}

func (f *File) reindex() {
	f.index = make(map[string]int, len(f.Tensors))
	for i, t := range f.Tensors {
		f.index[t.Name] = i
	}
}

// Get returns the tensor called name.
func (f *File) Get(name string) (*Tensor, bool) {
	i, ok := f.index[name]
	if !ok || i >= len(f.Tensors) || f.Tensors[i].Name != name {
		f.reindex() // Tensors was edited directly
		if i, ok = f.index[name]; !ok {
			return nil, false
		}
	}
	return &f.Tensors[i], true
}

// Has reports whether the file holds a tensor called name.
func (f *File) Has(name string) bool { _, ok := f.Get(name); return ok }

// Names returns the tensor names in order.
func (f *File) Names() []string {
	out := make([]string, len(f.Tensors))
	for i, t := range f.Tensors {
		out[i] = t.Name
	}
	return out
}

func (f *File) typed(name string, dt DType) (*Tensor, error) {
	t, ok := f.Get(name)
	if !ok {
		return nil, f.errorf(-1, "no tensor %q", name)
	}
	if t.DType != dt {
		return nil, f.errorf(-1, "tensor %q has dtype %s, want %s", name, t.DType, dt)
	}
	n, err := numElems(t.Shape)
	if err != nil || n*int64(dt.Size()) != int64(len(t.Data)) {
		return nil, f.errorf(-1, "tensor %q: shape %v does not match its %d data bytes", name, t.Shape, len(t.Data))
	}
	return t, nil
}

// F32 decodes the F32 tensor called name and returns its values and shape.
func (f *File) F32(name string) ([]float32, []int, error) {
	t, err := f.typed(name, F32)
	if err != nil {
		return nil, nil, err
	}
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, append([]int{}, t.Shape...), nil
}

// I64 decodes the I64 tensor called name and returns its values and shape.
func (f *File) I64(name string) ([]int64, []int, error) {
	t, err := f.typed(name, I64)
	if err != nil {
		return nil, nil, err
	}
	out := make([]int64, len(t.Data)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
	}
	return out, append([]int{}, t.Shape...), nil
}

// Add appends a raw tensor after checking its name, dtype and data length.
func (f *File) Add(t Tensor) error {
	if err := checkTensor(t); err != nil {
		return err
	}
	if f.Has(t.Name) {
		return fmt.Errorf("safetensors: duplicate tensor name %q", t.Name)
	}
	t.Shape = append([]int{}, t.Shape...)
	f.Tensors = append(f.Tensors, t)
	if f.index == nil {
		f.reindex()
	}
	f.index[t.Name] = len(f.Tensors) - 1
	return nil
}

// AddF32 appends an F32 tensor; len(data) must equal the product of shape.
func (f *File) AddF32(name string, shape []int, data []float32) error {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return f.Add(Tensor{Name: name, DType: F32, Shape: shape, Data: b})
}

// AddI64 appends an I64 tensor; len(data) must equal the product of shape.
func (f *File) AddI64(name string, shape []int, data []int64) error {
	b := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
	}
	return f.Add(Tensor{Name: name, DType: I64, Shape: shape, Data: b})
}

func checkTensor(t Tensor) error {
	if t.Name == "" || t.Name == "__metadata__" {
		return fmt.Errorf("safetensors: invalid tensor name %q", t.Name)
	}
	if t.DType.Size() == 0 {
		return fmt.Errorf("safetensors: tensor %q: unknown dtype %q", t.Name, string(t.DType))
	}
	n, err := numElems(t.Shape)
	if err != nil {
		return fmt.Errorf("safetensors: tensor %q: %v", t.Name, err)
	}
	if n*int64(t.DType.Size()) != int64(len(t.Data)) {
		return fmt.Errorf("safetensors: tensor %q: shape %v of %s needs %d bytes, have %d",
			t.Name, t.Shape, t.DType, n*int64(t.DType.Size()), len(t.Data))
	}
	return nil
}

// Encode writes f in safetensors format. It validates every tensor before
// writing anything.
func (f *File) Encode(w io.Writer) error {
	ts := make([]Tensor, len(f.Tensors))
	copy(ts, f.Tensors)
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	for i, t := range ts {
		if err := checkTensor(t); err != nil {
			return err
		}
		if i > 0 && ts[i-1].Name == t.Name {
			return fmt.Errorf("safetensors: duplicate tensor name %q", t.Name)
		}
	}
	var h bytes.Buffer
	h.WriteByte('{')
	if len(f.Metadata) > 0 {
		var md bytes.Buffer
		enc := json.NewEncoder(&md) // keys sorted
		enc.SetEscapeHTML(false)
		if err := enc.Encode(f.Metadata); err != nil {
			return err
		}
		h.WriteString(`"__metadata__":`)
		h.Write(bytes.TrimRight(md.Bytes(), "\n"))
	}
	var off int64
	for i, t := range ts {
		if i > 0 || len(f.Metadata) > 0 {
			h.WriteByte(',')
		}
		name := jsonString(t.Name)
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		sh, _ := json.Marshal(shape)
		fmt.Fprintf(&h, `%s:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, name, string(t.DType), sh, off, off+int64(len(t.Data)))
		off += int64(len(t.Data))
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(h.Len()))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return err
	}
	if _, err := w.Write(h.Bytes()); err != nil {
		return err
	}
	for _, t := range ts {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// jsonString quotes s as a JSON string without HTML escaping, matching
// Python's json.dumps(ensure_ascii=False).
func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimRight(b.Bytes(), "\n")
}

// WriteFileAtomic encodes f to path atomically: it writes a temporary file in
// the same directory, fsyncs it, renames it over path and fsyncs the
// directory. On error an existing file at path is left untouched and the
// temporary file is removed.
func (f *File) WriteFileAtomic(path string) (err error) {
	var buf bytes.Buffer
	if err := f.Encode(&buf); err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("safetensors: writing %s: fsync: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("safetensors: %s written but directory fsync failed: %w", path, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("safetensors: %s written but directory fsync failed: %w", path, err)
	}
	return nil
}
