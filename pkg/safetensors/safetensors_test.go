package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func sample(t *testing.T) *File {
	t.Helper()
	f := New()
	f.Metadata["model"] = "resnet9"
	f.Metadata["config"] = `{"width":4}`
	if err := f.AddF32("w", []int{2, 3}, []float32{1, -2, 3.5, 0, 1e-8, -7}); err != nil {
		t.Fatal(err)
	}
	if err := f.AddI64("labels", []int{3}, []int64{-1 << 40, 0, 9}); err != nil {
		t.Fatal(err)
	}
	if err := f.AddF32("scalar", nil, []float32{2.5}); err != nil {
		t.Fatal(err)
	}
	if err := f.AddF32("empty", []int{0, 4}, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func encode(t *testing.T, f *File) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := f.Encode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	raw := encode(t, sample(t))
	n := binary.LittleEndian.Uint64(raw)
	if n%8 != 0 {
		t.Errorf("header length %d not a multiple of 8", n)
	}
	if !bytes.Contains(raw[8:8+n], []byte(`"__metadata__"`)) {
		t.Error("metadata missing from header")
	}
	g, err := Read(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"empty", "labels", "scalar", "w"}; !reflect.DeepEqual(g.Names(), want) {
		t.Errorf("Names() = %v, want sorted-name file order %v", g.Names(), want)
	}
	if g.Metadata["model"] != "resnet9" || g.Metadata["config"] != `{"width":4}` {
		t.Errorf("metadata = %v", g.Metadata)
	}
	w, shape, err := g.F32("w")
	if err != nil || !reflect.DeepEqual(shape, []int{2, 3}) || !reflect.DeepEqual(w, []float32{1, -2, 3.5, 0, 1e-8, -7}) {
		t.Errorf("F32(w) = %v %v %v", w, shape, err)
	}
	l, shape, err := g.I64("labels")
	if err != nil || !reflect.DeepEqual(shape, []int{3}) || !reflect.DeepEqual(l, []int64{-1 << 40, 0, 9}) {
		t.Errorf("I64(labels) = %v %v %v", l, shape, err)
	}
	s, shape, err := g.F32("scalar")
	if err != nil || len(shape) != 0 || len(s) != 1 || s[0] != 2.5 {
		t.Errorf("F32(scalar) = %v %v %v", s, shape, err)
	}
	if !g.Has("empty") || g.Has("nope") {
		t.Error("Has")
	}
	// Re-encoding is byte-identical.
	if raw2 := encode(t, g); !bytes.Equal(raw, raw2) {
		t.Error("re-encoding changed the bytes")
	}
	// No metadata: no __metadata__ key.
	f := New()
	if err := f.AddF32("a", []int{1}, []float32{1}); err != nil {
		t.Fatal(err)
	}
	if raw := encode(t, f); bytes.Contains(raw, []byte("__metadata__")) {
		t.Error("empty metadata should be omitted")
	}
}

// build assembles a file from a literal header and data section.
func build(header string, data []byte) []byte {
	var b bytes.Buffer
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(header)))
	b.Write(l[:])
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func TestReadErrors(t *testing.T) {
	hugeLen := make([]byte, 16)
	binary.LittleEndian.PutUint64(hugeLen, 200<<20)
	hugeLen[8] = '{' // a real-looking file declaring a huge header
	d8 := make([]byte, 8)
	cases := []struct {
		name, want string
		raw        []byte
		offset     int64
	}{
		{"header past EOF", "larger than the file", build(`{}`, nil)[:9], 0},
		{"header over cap", "cap", hugeLen, 0},
		{"invalid json", "invalid JSON", build(`{"a":`, nil), -1},
		{"not an object", "want an object", build(`[1,2]   `, nil), 8},
		{"trailing junk", "unexpected bytes", build(`{} x`, nil), -1},
		{"unknown dtype", `unknown dtype "Q8"`, build(`{"a":{"dtype":"Q8","shape":[2],"data_offsets":[0,8]}}`, d8), 8},
		{"missing field", "needs dtype", build(`{"a":{"dtype":"F32","shape":[2]}}`, d8), 8},
		{"shape mismatch", "needs 12 bytes", build(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, d8), -1},
		{"negative dim", "negative dimension", build(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, d8), 8},
		{"out of range", "out of range", build(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, d8), -1},
		{"reversed offsets", "out of range", build(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}`, d8), -1},
		{"overlap", "overlaps", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, d8), -1},
		{"gap", "gap of 4 bytes", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, d8), -1},
		{"trailing data", "trailing bytes", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, d8), -1},
		{"duplicate", `duplicate tensor name "a"`, build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, d8), -1},
		{"bad metadata", "invalid __metadata__", build(`{"__metadata__":{"k":1}}`, nil), 9},
	}
	for _, c := range cases {
		_, err := Read(bytes.NewReader(c.raw), int64(len(c.raw)))
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Errorf("%s: err = %v, want *FormatError", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %q, want it to mention %q", c.name, err, c.want)
		}
		if c.offset >= 0 && fe.Offset != c.offset {
			t.Errorf("%s: offset = %d, want %d (%v)", c.name, fe.Offset, c.offset, err)
		}
		if fe.Offset < 0 || !strings.Contains(err.Error(), "at byte") {
			t.Errorf("%s: error carries no byte offset: %v", c.name, err)
		}
	}
	// Specific offsets.
	raw := build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, d8)
	_, err := Read(bytes.NewReader(raw), int64(len(raw)))
	if fe := (*FormatError)(nil); errors.As(err, &fe) && fe.Offset != int64(len(raw)-8) {
		t.Errorf("gap offset = %d, want %d", fe.Offset, len(raw)-8)
	}
	// Size claims more bytes than the reader has.
	raw = encode(t, sample(t))
	if _, err := Read(bytes.NewReader(raw[:len(raw)-3]), int64(len(raw))); err == nil || !strings.Contains(err.Error(), "truncated data") {
		t.Errorf("short reader: err = %v", err)
	}
}

// TestReadNotSafetensors: data of another kind (empty, text, JSON, a file
// cut before its header length) is ErrNotSafetensors, saying what it starts
// with, instead of a "header length" error computed from its first bytes.
func TestReadNotSafetensors(t *testing.T) {
	textLen := []byte("{\"step\": 12, \"model\": \"ckpt-00000012.safetensors\"}\n")
	cases := []struct {
		name string
		raw  []byte
		want string
	}{
		{"empty", nil, "it is empty"},
		{"short", []byte{1, 2, 3}, `only 3 bytes, "\x01\x02\x03"`},
		{"short text", []byte("hello"), `only 5 bytes, "hello": text`},
		{"json", textLen, `starts with "{\"step\": 12, \"mo": JSON?`},
		{"json array", []byte("[1, 2, 3, 4, 5]"), `"[1, 2, 3, 4, 5]": JSON?`},
		{"text", []byte("step,loss\n1,0.5\n"), `"step,loss\n1,0.5\n": text`},
		{"gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 4}, `"\x1f\x8b\b\x00\x00\x00\x00\x00\x00\x03\x04",`},
		{"8 bytes of text", []byte("abcdefgh"), `"abcdefgh": text`},
	}
	for _, c := range cases {
		_, err := Read(bytes.NewReader(c.raw), int64(len(c.raw)))
		var fe *FormatError
		if !errors.As(err, &fe) || !errors.Is(err, ErrNotSafetensors) {
			t.Errorf("%s: err = %v, want a *FormatError wrapping ErrNotSafetensors", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), "is not a safetensors file") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %q, want it to say not a safetensors file and %q", c.name, err, c.want)
		}
	}
	// The file's path is named.
	path := filepath.Join(t.TempDir(), "latest.json")
	if err := os.WriteFile(path, textLen, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); !errors.Is(err, ErrNotSafetensors) || !strings.Contains(err.Error(), path+" is not a safetensors file") {
		t.Errorf("ReadFile: %v", err)
	}
	// Damaged real-looking files keep their specific errors.
	for _, raw := range [][]byte{build(`{}`, nil)[:9], build(`{}`, nil)[:8]} {
		if _, err := Read(bytes.NewReader(raw), int64(len(raw))); err == nil || errors.Is(err, ErrNotSafetensors) || !strings.Contains(err.Error(), "larger than the file") {
			t.Errorf("%d-byte cut file: err = %v, want a header length larger than the file", len(raw), err)
		}
	}
}

func TestTruncatedFileNamesPath(t *testing.T) {
	raw := encode(t, sample(t))
	path := filepath.Join(t.TempDir(), "cut.safetensors")
	for _, cut := range []int{5, 20, len(raw) - 1} {
		if err := os.WriteFile(path, raw[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadFile(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("cut at %d: err = %v, want it to name %s", cut, err, path)
		}
	}
}

func TestAccessorErrors(t *testing.T) {
	f := sample(t)
	if _, _, err := f.I64("w"); err == nil || !strings.Contains(err.Error(), "has dtype F32, want I64") {
		t.Errorf("I64 on F32: %v", err)
	}
	if _, _, err := f.F32("labels"); err == nil || !strings.Contains(err.Error(), "has dtype I64, want F32") {
		t.Errorf("F32 on I64: %v", err)
	}
	if _, _, err := f.F32("missing"); err == nil || !strings.Contains(err.Error(), `no tensor "missing"`) {
		t.Errorf("missing: %v", err)
	}
	if err := f.AddF32("w", []int{1}, []float32{1}); err == nil {
		t.Error("duplicate Add accepted")
	}
	if err := f.AddF32("x", []int{2, 2}, []float32{1}); err == nil {
		t.Error("wrong-length Add accepted")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt.safetensors")
	if err := sample(t).WriteFileAtomic(path); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := ReadFile(path)
	if err != nil || !g.Has("w") {
		t.Fatalf("ReadFile after write: %v", err)
	}

	// A tensor whose data length is wrong: Encode fails before touching disk.
	bad := sample(t)
	bad.Tensors = append(bad.Tensors, Tensor{Name: "broken", DType: F32, Shape: []int{3}, Data: make([]byte, 5)})
	if err := bad.WriteFileAtomic(path); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("bad tensor: err = %v", err)
	}
	// Duplicate names inserted directly.
	dup := sample(t)
	dup.Tensors = append(dup.Tensors, dup.Tensors[0])
	if err := dup.WriteFileAtomic(path); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate: err = %v", err)
	}
	// A directory that does not exist.
	if err := sample(t).WriteFileAtomic(filepath.Join(dir, "nope", "x.safetensors")); err == nil {
		t.Error("write into missing directory succeeded")
	}
	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("previous file changed after failed writes (err %v)", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("temporary files left behind: %v", names)
	}
	// Overwrite succeeds and replaces the content.
	f := New()
	if err := f.AddF32("only", []int{1}, []float32{4}); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteFileAtomic(path); err != nil {
		t.Fatal(err)
	}
	if g, err := ReadFile(path); err != nil || !reflect.DeepEqual(g.Names(), []string{"only"}) {
		t.Errorf("overwrite: %v %v", g, err)
	}
}

func TestPythonFixtures(t *testing.T) {
	root := filepath.Join("..", "..", "testdata", "golden")
	paths, _ := filepath.Glob(filepath.Join(root, "*", "*.safetensors"))
	if len(paths) == 0 {
		t.Skipf("no fixtures under %s (run scripts/gen-golden.py)", root)
	}
	for _, path := range paths {
		p := path
		f, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		names := f.Names()
		for i := 1; i < len(names); i++ {
			if names[i-1] >= names[i] {
				t.Errorf("%s: tensors not in sorted-name order: %q before %q", p, names[i-1], names[i])
			}
		}
		raw, _ := os.ReadFile(path)
		if re := encode(t, f); !bytes.Equal(raw, re) {
			t.Errorf("%s: Go re-encoding differs from the Python-written bytes", p)
		}
	}
	f, err := ReadFile(filepath.Join(root, "layers", "conv_5x5_same.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["layer"] != "conv2d" || f.Metadata["train"] != "true" {
		t.Errorf("metadata = %v", f.Metadata)
	}
	x, shape, err := f.F32("x")
	if err != nil || !reflect.DeepEqual(shape, []int{2, 3, 7, 6}) || len(x) != 2*3*7*6 {
		t.Errorf("x: shape %v len %d err %v", shape, len(x), err)
	}
	if _, shape, err := f.F32("param.weight"); err != nil || !reflect.DeepEqual(shape, []int{4, 3, 5, 5}) {
		t.Errorf("param.weight: %v %v", shape, err)
	}
	m, err := ReadFile(filepath.Join(root, "models", "madry-mnist.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	labels, shape, err := m.I64("labels")
	if err != nil || !reflect.DeepEqual(shape, []int{3}) {
		t.Fatalf("labels: %v %v", shape, err)
	}
	for _, l := range labels {
		if l < 0 || l >= 10 {
			t.Errorf("label %d out of range", l)
		}
	}
	if loss, shape, err := m.F32("loss"); err != nil || len(shape) != 0 || !(loss[0] > 0) {
		t.Errorf("loss: %v %v %v", loss, shape, err)
	}
}
