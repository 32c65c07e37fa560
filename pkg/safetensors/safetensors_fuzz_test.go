package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/logitpair/logitpair/pkg/internal/fuzzcheck"
)

// fuzzSeeds are valid encodings built here; the committed corpus in
// testdata/fuzz/FuzzRead adds malformed ones.
func fuzzSeeds(f *testing.F) [][]byte {
	var out [][]byte
	enc := func(file *File) {
		var b bytes.Buffer
		if err := file.Encode(&b); err != nil {
			f.Fatal(err)
		}
		out = append(out, b.Bytes())
	}
	empty := New()
	enc(empty)
	one := New()
	if err := one.AddF32("w", []int{2, 2}, []float32{1, -2, 3, 0.5}); err != nil {
		f.Fatal(err)
	}
	enc(one)
	many := New()
	many.Metadata["format"] = "logitpair-shard-state-v1"
	many.Metadata["step"] = "7"
	for _, t := range []Tensor{
		{Name: "b", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}},
		{Name: "a", DType: I64, Shape: []int{1}, Data: make([]byte, 8)},
		{Name: "scalar", DType: F32, Shape: nil, Data: []byte{0, 0, 0x80, 0x3f}},
		{Name: "none", DType: F16, Shape: []int{0, 5}},
	} {
		if err := many.Add(t); err != nil {
			f.Fatal(err)
		}
	}
	enc(many)
	return out
}

// FuzzRead checks that Read either fails with a *FormatError or returns a
// File whose tensors tile the data section, have data lengths that match
// their shapes and dtypes, and survive Encode → Read unchanged; and that
// neither a header nor a caller-given size claiming more bytes than the
// input holds makes it allocate them.
func FuzzRead(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var file *File
		var err error
		limit := uint64(64*len(b) + 1<<20)
		if n := fuzzcheck.Allocated(limit, func() { file, err = read(bytes.NewReader(b), int64(len(b)), "", true) }); n > limit {
			t.Fatalf("reading %d bytes allocated %d bytes (limit %d)", len(b), n, limit)
		}
		// A size claim far beyond the input must fail after buffering only
		// what the reader delivered.
		limit = uint64(64*len(b) + 4<<20)
		n := fuzzcheck.Allocated(limit, func() {
			if _, err := Read(bytes.NewReader(b), int64(len(b))+1<<40); err == nil {
				t.Fatalf("Read with a size 1 TiB beyond the input succeeded")
			}
		})
		if n > limit {
			t.Fatalf("Read of %d bytes with a 1 TiB size claim allocated %d bytes (limit %d)", len(b), n, limit)
		}
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FormatError", err, err)
			}
			return
		}
		checkFile(t, file, b)

		var enc bytes.Buffer
		if err := file.Encode(&enc); err != nil {
			t.Fatalf("Encode of a file Read accepted: %v", err)
		}
		again, err := Read(bytes.NewReader(enc.Bytes()), int64(enc.Len()))
		if err != nil {
			t.Fatalf("Read of Encode's output: %v", err)
		}
		checkFile(t, again, enc.Bytes())
		sameFile(t, file, again)
		var enc2 bytes.Buffer
		if err := again.Encode(&enc2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc.Bytes(), enc2.Bytes()) {
			t.Fatalf("Encode is not canonical: %q then %q", enc.Bytes(), enc2.Bytes())
		}
	})
}

// checkFile asserts the invariants of a File that Read returned from raw.
func checkFile(t *testing.T, file *File, raw []byte) {
	t.Helper()
	hlen := binary.LittleEndian.Uint64(raw)
	var data []byte
	seen := map[string]bool{}
	for _, ts := range file.Tensors {
		if ts.Name == "" || ts.Name == "__metadata__" || seen[ts.Name] {
			t.Fatalf("tensor name %q empty, reserved or repeated", ts.Name)
		}
		seen[ts.Name] = true
		numel, err := numElems(ts.Shape)
		if err != nil || ts.DType.Size() == 0 || numel*int64(ts.DType.Size()) != int64(len(ts.Data)) {
			t.Fatalf("tensor %q: %s %v with %d data bytes (%v)", ts.Name, ts.DType, ts.Shape, len(ts.Data), err)
		}
		if got, ok := file.Get(ts.Name); !ok || got.Name != ts.Name {
			t.Fatalf("Get(%q) does not find it", ts.Name)
		}
		switch ts.DType {
		case F32:
			v, shape, err := file.F32(ts.Name)
			if err != nil || int64(len(v)) != numel || !slices.Equal(shape, ts.Shape) {
				t.Fatalf("F32(%q) = %d values, shape %v, %v", ts.Name, len(v), shape, err)
			}
		case I64:
			v, shape, err := file.I64(ts.Name)
			if err != nil || int64(len(v)) != numel || !slices.Equal(shape, ts.Shape) {
				t.Fatalf("I64(%q) = %d values, shape %v, %v", ts.Name, len(v), shape, err)
			}
		}
		data = append(data, ts.Data...)
	}
	// In file order the tensors' bytes are the data section, exactly.
	if !bytes.Equal(data, raw[8+hlen:]) {
		t.Fatalf("tensors hold %d bytes that are not the %d-byte data section", len(data), len(raw)-8-int(hlen))
	}
}

// sameFile asserts a and b hold the same metadata and tensors (by name).
func sameFile(t *testing.T, a, b *File) {
	t.Helper()
	if len(a.Metadata) != len(b.Metadata) {
		t.Fatalf("metadata %v became %v", a.Metadata, b.Metadata)
	}
	for k, v := range a.Metadata {
		if b.Metadata[k] != v {
			t.Fatalf("metadata %v became %v", a.Metadata, b.Metadata)
		}
	}
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d tensors became %d", len(a.Tensors), len(b.Tensors))
	}
	for _, ta := range a.Tensors {
		tb, ok := b.Get(ta.Name)
		if !ok || tb.DType != ta.DType || !slices.Equal(tb.Shape, ta.Shape) || !bytes.Equal(tb.Data, ta.Data) {
			t.Fatalf("tensor %q changed in the round trip", ta.Name)
		}
	}
}
