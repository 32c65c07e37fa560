// Package wire holds the number formats of the cluster's wire that other
// code must reproduce bit for bit: how a worker's gradient is written for a
// push (Format). A push in BF16 rounds every gradient value to bfloat16
// (BF16Bits, the one rounding rule) and the shard widens it back exactly
// (FromBF16), so a step applied from such pushes is a step applied from
// the rounded gradients; a replay that recomputes gradients gets the same
// step by rounding them the same way (Format.Round) before it applies
// them. It imports nothing of the project, so the transport (pkg/rpc) and
// the replays alike use it.
package wire

import (
	"fmt"
	"math"
	"strings"
)

// Format is how a push carries a gradient's values. Buffers (batch-norm
// statistics) and pulled parameters are float32 whatever it is.
type Format int

const (
	// Float32 sends the gradient as computed, 4 bytes per value (the
	// default).
	Float32 Format = iota
	// BF16 sends each value rounded to bfloat16, 2 bytes per value: half
	// the bytes of a push, at bfloat16's 8 significant bits.
	BF16
)

// formatNames are the Formats' names, as configurations spell them.
var formatNames = [...]string{Float32: "float32", BF16: "bf16"}

// String returns the format's name ("float32", "bf16").
func (f Format) String() string {
	if f >= 0 && int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("wire.Format(%d)", int(f))
}

// FormatNames lists the names ParseFormat accepts.
func FormatNames() []string { return formatNames[:] }

// ParseFormat returns the format named s ("float32" or "bf16").
func ParseFormat(s string) (Format, error) {
	for f, name := range formatNames {
		if s == name {
			return Format(f), nil
		}
	}
	return 0, fmt.Errorf("wire: unknown gradient wire format %q: use one of %s", s, strings.Join(formatNames[:], ", "))
}

// Round replaces every value of v by what a push in format f delivers to
// the shard: v itself for Float32, RoundBF16 of each value for BF16. A
// replay of pushes made in f calls it on each recomputed gradient.
func (f Format) Round(v []float32) {
	if f == BF16 {
		for i, x := range v {
			v[i] = RoundBF16(x)
		}
	}
}

// BF16Bits rounds x to bfloat16, the upper 16 bits of a float32, to nearest
// with ties to even: the one rounding rule of BF16 pushes. ±Inf and ±0 stay
// as they are, a NaN stays a NaN (quiet, with its sign), subnormals round
// like any other value (bfloat16 has float32's exponent range), and a
// finite value whose magnitude rounds beyond bfloat16's largest finite
// value (0x7f7f, about 3.3895e38) becomes ±Inf, which the shard then
// refuses as non-finite.
func BF16Bits(x float32) uint16 {
	b := math.Float32bits(x)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep the sign and the top of the payload, made quiet
		return uint16(b>>16) | 0x0040
	}
	return uint16((b + 0x7fff + ((b >> 16) & 1)) >> 16)
}

// FromBF16 widens a bfloat16 to the float32 it stands for, exactly.
func FromBF16(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// RoundBF16 is x rounded to bfloat16 (BF16Bits) as a float32: the value the
// shard receives for x in a BF16 push.
func RoundBF16(x float32) float32 {
	return FromBF16(BF16Bits(x))
}
