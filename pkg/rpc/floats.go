package rpc

import (
	"encoding/binary"
	"math"
	"slices"
	"unsafe"

	paramserverv1 "github.com/logitpair/logitpair/pkg/api/paramserver/v1"
	"github.com/logitpair/logitpair/pkg/wire"
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

// nativeLittleEndian says whether this machine stores a float32 in memory
// as the wire does (little-endian): then the codecs below reinterpret
// memory instead of converting element by element.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// encodeFloats returns v as little-endian float32 bytes. On a
// little-endian machine they are v's own memory (no copy): read only, and
// only as long as v does not change; elsewhere a new slice.
func encodeFloats(v []float32) []byte {
	if nativeLittleEndian {
		return floatMemory(v)
	}
	return encodeFloatsPortable(v)
}

// appendFloats decodes b (len(b) a multiple of 4, checked by the caller)
// and appends the values to dst.
func appendFloats(dst []float32, b []byte) []float32 {
	n := len(dst)
	dst = slices.Grow(dst, len(b)/4)[:n+len(b)/4]
	if nativeLittleEndian {
		copy(floatMemory(dst[n:]), b)
	} else {
		decodeFloatsPortable(dst[n:], b)
	}
	return dst
}

// spareBytes lends the memory of dst's spare capacity, dst[len(dst):
// cap(dst)], as an empty byte slice: the Data of a chunk about to be
// received, into which chunkCodec decodes the chunk's data when it fits.
func spareBytes(dst []float32) []byte {
	return floatMemory(dst[len(dst):cap(dst)])[:0]
}

// landFloats is appendFloats for the data of a received chunk: when b lies
// where spareBytes(dst) lent (the codec decoded it in place) the values are
// already in dst's memory and dst only grows over them; otherwise they are
// copied.
func landFloats(dst []float32, b []byte) []float32 {
	n, k := len(dst), len(b)/4
	if k == 0 || cap(dst)-n < k || unsafe.SliceData(b) != unsafe.SliceData(spareBytes(dst)) {
		return appendFloats(dst, b)
	}
	dst = dst[:n+k]
	if !nativeLittleEndian {
		decodeFloatsPortable(dst[n:], b) // element by element in place: each reads the bytes it overwrites
	}
	return dst
}

// Gradient encodings of pushes (PushChunk.encoding): a wire.Format on the
// wire.
const (
	encodingFloat32 = paramserverv1.GradientEncoding_GRADIENT_ENCODING_FLOAT32
	encodingBF16    = paramserverv1.GradientEncoding_GRADIENT_ENCODING_BF16
)

// encodingOf returns the PushChunk.encoding of format f; false for a
// format the transport does not know.
func encodingOf(f wire.Format) (paramserverv1.GradientEncoding, bool) {
	switch f {
	case wire.Float32:
		return encodingFloat32, true
	case wire.BF16:
		return encodingBF16, true
	}
	return 0, false
}

// elementBytes is the size of one gradient value in encoding e; 0 for an
// encoding the transport does not know.
func elementBytes(e paramserverv1.GradientEncoding) int {
	switch e {
	case encodingFloat32:
		return 4
	case encodingBF16:
		return 2
	}
	return 0
}

// encodeGradient returns v in encoding e (a known one): encodeFloats for
// float32; for bfloat16 each value rounded by wire.BF16Bits, little-endian,
// written into scratch's memory when it has room.
func encodeGradient(scratch []byte, v []float32, e paramserverv1.GradientEncoding) []byte {
	if e == encodingFloat32 {
		return encodeFloats(v)
	}
	b := slices.Grow(scratch[:0], 2*len(v))[:2*len(v)]
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], wire.BF16Bits(x))
	}
	return b
}

// landGradient is landFloats for gradient data in encoding e (a known
// one): bfloat16 values are widened to float32 (wire.FromBF16), in place
// when b lies where spareBytes(dst) lent, from the last value to the first
// (value i's float32 covers only the bytes of values i/2 … i, none of them
// still to be read).
func landGradient(dst []float32, b []byte, e paramserverv1.GradientEncoding) []float32 {
	if e == encodingFloat32 {
		return landFloats(dst, b)
	}
	n, k := len(dst), len(b)/2
	if k > 0 && cap(dst)-n >= k && unsafe.SliceData(b) == unsafe.SliceData(spareBytes(dst)) {
		dst = dst[:n+k]
		out := dst[n:]
		for i := k - 1; i >= 0; i-- {
			out[i] = wire.FromBF16(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
		}
		return dst
	}
	dst = slices.Grow(dst, k)[:n+k]
	for i := range k {
		dst[n+i] = wire.FromBF16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return dst
}

// floatMemory is v's memory as bytes (the machine's byte order).
func floatMemory(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))
}

// encodeFloatsPortable is encodeFloats on any machine: element by element,
// into a new slice.
func encodeFloatsPortable(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// decodeFloatsPortable decodes the little-endian float32s of b into dst
// (len(dst) == len(b)/4) on any machine, element by element.
func decodeFloatsPortable(dst []float32, b []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}
