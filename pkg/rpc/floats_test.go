package rpc

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
)

// TestFloatCodecs: encodeFloats and appendFloats write and read the wire's
// little-endian float32 bytes (checked against hand-written bytes), the
// reinterpreting path this machine selects agrees with the portable one
// element by element, and a round trip keeps every bit pattern (NaN
// payloads, -0, subnormals included).
func TestFloatCodecs(t *testing.T) {
	known := []float32{1, -2, float32(math.Inf(1)), math.Float32frombits(0x7fc00001), math.Float32frombits(0x80000000), math.Float32frombits(1)}
	wire := []byte{
		0x00, 0x00, 0x80, 0x3f, // 1
		0x00, 0x00, 0x00, 0xc0, // -2
		0x00, 0x00, 0x80, 0x7f, // +Inf
		0x01, 0x00, 0xc0, 0x7f, // a NaN with a payload
		0x00, 0x00, 0x00, 0x80, // -0
		0x01, 0x00, 0x00, 0x00, // the smallest subnormal
	}
	if got := encodeFloats(known); !bytes.Equal(got, wire) {
		t.Fatalf("encodeFloats = % x\nwant          % x", got, wire)
	}
	if got := encodeFloatsPortable(known); !bytes.Equal(got, wire) {
		t.Fatalf("encodeFloatsPortable = % x\nwant                  % x", got, wire)
	}
	prefix := []float32{7}
	got := appendFloats(prefix, wire)
	if len(got) != 1+len(known) || got[0] != 7 {
		t.Fatalf("appendFloats kept %v of the prefix, %d values in all", got[:1], len(got))
	}
	portable := make([]float32, len(known))
	decodeFloatsPortable(portable, wire)
	for i, x := range known {
		if math.Float32bits(got[1+i]) != math.Float32bits(x) || math.Float32bits(portable[i]) != math.Float32bits(x) {
			t.Errorf("element %d: appendFloats %08x, portable %08x, want %08x", i, math.Float32bits(got[1+i]), math.Float32bits(portable[i]), math.Float32bits(x))
		}
	}

	rng := rand.New(rand.NewPCG(5, 5))
	v := make([]float32, 100003)
	for i := range v {
		v[i] = math.Float32frombits(rng.Uint32())
	}
	fast, slow := encodeFloats(v), encodeFloatsPortable(v)
	if !bytes.Equal(fast, slow) {
		t.Fatal("encodeFloats and encodeFloatsPortable disagree on random bit patterns")
	}
	back := appendFloats(nil, slow)
	for i := range v {
		if math.Float32bits(back[i]) != math.Float32bits(v[i]) {
			t.Fatalf("round trip changed element %d: %08x → %08x", i, math.Float32bits(v[i]), math.Float32bits(back[i]))
		}
	}
	if len(encodeFloats(nil)) != 0 || len(appendFloats(nil, nil)) != 0 {
		t.Fatal("empty vectors do not stay empty")
	}
}
