package wire

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestBF16Bits: known roundings — ties to even both ways, just above and
// below a tie, negative values, ±0, ±Inf, NaNs (one whose payload lies only
// in the low bits included, which truncation would turn into Inf), the
// overflow to Inf, subnormals rounding down, to even and up to the smallest
// normal.
func TestBF16Bits(t *testing.T) {
	for _, c := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // tie, to even (down)
		{0x3f818000, 0x3f82}, // tie, to even (up)
		{0x3f808001, 0x3f81}, // just above a tie
		{0x3f807fff, 0x3f80}, // just below a tie
		{0xbf808000, 0xbf80}, // negative tie, to even
		{0xbf818000, 0xbf82},
		{0xc0490fdb, 0xc049}, // -π
		{0x00000000, 0x0000}, // +0
		{0x80000000, 0x8000}, // -0
		{0x7f800000, 0x7f80}, // +Inf
		{0xff800000, 0xff80}, // -Inf
		{0x7fc00000, 0x7fc0}, // quiet NaN
		{0x7f800001, 0x7fc0}, // NaN with a low payload only
		{0xffc00001, 0xffc0}, // negative NaN
		{0x7fa00000, 0x7fe0}, // signalling NaN, made quiet
		{0x7f7f7fff, 0x7f7f}, // rounds to bfloat16's largest
		{0x7f7f8000, 0x7f80}, // tie above the largest: to even, which is Inf
		{0x7f7fffff, 0x7f80}, // float32's largest: Inf
		{0xff7fffff, 0xff80},
		{0x00000001, 0x0000}, // smallest subnormal: to 0
		{0x00008000, 0x0000}, // subnormal tie, to even (0)
		{0x00018000, 0x0002}, // subnormal tie, to even (up)
		{0x007fffff, 0x0080}, // largest subnormal: up to the smallest normal
		{0x80008001, 0x8001}, // negative subnormal, just above a tie
	} {
		if got := BF16Bits(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("BF16Bits(%08x) = %04x, want %04x", c.in, got, c.want)
		}
	}
}

// TestRoundBF16Nearest: for random finite float32s of every exponent,
// RoundBF16 is the nearer of the two bfloat16 values around x (the even
// one on a tie, ±Inf beyond the largest), computed here in float64.
func TestRoundBF16Nearest(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 16))
	for range 200000 {
		b := rng.Uint32()
		if rng.IntN(4) == 0 {
			b = b&0xffff0000 | 0x8000 // a tie
		}
		x := math.Float32frombits(b)
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			continue
		}
		t0 := uint16(b >> 16) // toward zero
		lo := float64(FromBF16(t0))
		hi := float64(FromBF16(t0 + 1)) // away from zero
		if t0&0x7fff == 0x7f7f {
			hi = math.Copysign(math.Ldexp(1, 128), float64(x)) // where the next would be: Inf is chosen
		}
		dlo, dhi := math.Abs(float64(x)-lo), math.Abs(hi-float64(x))
		want := t0
		if dhi < dlo || (dhi == dlo && t0&1 == 1) {
			want = t0 + 1
		}
		if got := BF16Bits(x); got != want {
			t.Fatalf("BF16Bits(%08x) = %04x, want %04x", b, got, want)
		}
		if r := RoundBF16(x); math.Float32bits(r) != uint32(want)<<16 {
			t.Fatalf("RoundBF16(%08x) = %08x, want %08x", b, math.Float32bits(r), uint32(want)<<16)
		}
	}
}

// TestFromBF16: widening is exact: every bfloat16 comes back from its
// float32 unchanged (NaNs as NaNs).
func TestFromBF16(t *testing.T) {
	for h := range 1 << 16 {
		x := FromBF16(uint16(h))
		if math.Float32bits(x) != uint32(h)<<16 {
			t.Fatalf("FromBF16(%04x) = %08x", h, math.Float32bits(x))
		}
		if g := BF16Bits(x); g != uint16(h) && !(math.IsNaN(float64(x)) && math.IsNaN(float64(FromBF16(g)))) {
			t.Fatalf("BF16Bits(FromBF16(%04x)) = %04x", h, g)
		}
	}
}

// TestFormat: names both ways, an unknown name refused with the known
// ones, and Round: nothing for Float32, RoundBF16 of every value for BF16.
func TestFormat(t *testing.T) {
	for _, f := range []Format{Float32, BF16} {
		if g, err := ParseFormat(f.String()); err != nil || g != f {
			t.Errorf("ParseFormat(%q) = %v, %v", f.String(), g, err)
		}
	}
	if _, err := ParseFormat("fp8"); err == nil || !strings.Contains(err.Error(), "float32, bf16") {
		t.Errorf("ParseFormat(fp8): %v", err)
	}
	if s := Format(7).String(); s != "wire.Format(7)" {
		t.Errorf("Format(7) = %s", s)
	}
	in := []float32{1.00390625, -3.14159265, 1e-40, 65504.7}
	v := append([]float32(nil), in...)
	Float32.Round(v)
	for i := range v {
		if v[i] != in[i] {
			t.Fatalf("Float32.Round changed %v to %v", in[i], v[i])
		}
	}
	BF16.Round(v)
	for i := range v {
		if v[i] != RoundBF16(in[i]) || v[i] == in[i] {
			t.Fatalf("BF16.Round(%v) = %v, want %v (a changed value)", in[i], v[i], RoundBF16(in[i]))
		}
	}
}
