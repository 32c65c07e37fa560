package rpc

import (
	"encoding/binary"
	"math"
)

// Chunk sizes of Pull and Push, in bytes of float32 data per message: far
// below gRPC's default 4 MiB message limit, with room for the buffers and
// the header in the last chunk.
const (
	DefaultChunkBytes = 1 << 20 // 1 MiB
	MinChunkBytes     = 4 << 10 // 4 KiB
	MaxChunkBytes     = 3 << 20 // 3 MiB
)

// clampChunk returns n bytes clamped to [MinChunkBytes, MaxChunkBytes] and
// rounded down to whole float32 elements; 0 gives def.
func clampChunk(n, def int) int {
	if n == 0 {
		n = def
	}
	n = min(max(n, MinChunkBytes), MaxChunkBytes)
	return n &^ 3
}

// encodeFloats returns v as little-endian float32 bytes, in a new slice.
func encodeFloats(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// appendFloats decodes b (len(b) a multiple of 4, checked by the caller)
// and appends the values to dst.
func appendFloats(dst []float32, b []byte) []float32 {
	for i := 0; i+4 <= len(b); i += 4 {
		dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
	}
	return dst
}
