package rpc

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec chunkCodec delegates to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	paramserverv1 "github.com/logitpair/logitpair/pkg/api/paramserver/v1"
)

// chunkCodec is gRPC's proto codec, wire-compatible with it, except that the
// chunks of pulls and pushes (PullChunk, PushChunk: nearly all the bytes a
// cluster moves) skip protobuf's intermediate copies:
//
//   - Marshal of a PullChunk references its bytes fields where they are
//     (the shard's immutable snapshot) instead of copying them into one
//     buffer; a PushChunk's are copied once, because the worker's gradient
//     is the caller's to change as soon as Push returns.
//   - Unmarshal of either reads the message from gRPC's receive buffers
//     without first gathering it into one, and writes the data field
//     straight into the capacity of the message's Data, when it fits: the
//     receiver lends the memory where the values should land (landFloats),
//     so they are copied once, from the receive buffers to their place.
//
// Any other message goes to the proto codec. The codec's name is "proto",
// so peers see the ordinary content-subtype: a PSClient forces it on its
// own calls (grpc.ForceCodecV2), a server gets it from ServerOptions, and
// a server or client without it still interoperates, with protobuf's
// copies.
type chunkCodec struct{}

var _ encoding.CodecV2 = chunkCodec{}

// protoCodec is the codec chunkCodec delegates to.
var protoCodec = encoding.GetCodecV2("proto")

// Name implements encoding.CodecV2.
func (chunkCodec) Name() string { return "proto" }

// Marshal implements encoding.CodecV2.
func (chunkCodec) Marshal(v any) (mem.BufferSlice, error) {
	if p, m, _ := planOf(v); p != nil {
		return p.marshal(m), nil
	}
	return protoCodec.Marshal(v)
}

// Unmarshal implements encoding.CodecV2.
func (chunkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if p, m, lent := planOf(v); p != nil {
		return p.unmarshal(data, m, lent)
	}
	return protoCodec.Unmarshal(data, v)
}

// chunkPlan is how chunkCodec encodes one message type: its fields in
// number order, all singular scalars or bytes (checked when the plan is
// made), and the one bytes field decoded into the memory the receiver lends
// (the message's Data, which planOf reads).
type chunkPlan struct {
	fields []protoreflect.FieldDescriptor
	land   protoreflect.FieldDescriptor
	// lend: Marshal references the bytes fields instead of copying them.
	lend bool
}

// Plans of PullChunk and PushChunk; nil when a field is of a kind the codec
// does not encode (then the proto codec handles the type, and
// TestChunkCodecCoversTheChunks fails until the codec learns the kind).
var (
	pullPlan = newChunkPlan((&paramserverv1.PullChunk{}).ProtoReflect().Descriptor(), "data", true)
	pushPlan = newChunkPlan((&paramserverv1.PushChunk{}).ProtoReflect().Descriptor(), "data", false)
)

func newChunkPlan(md protoreflect.MessageDescriptor, land protoreflect.Name, lend bool) *chunkPlan {
	p := &chunkPlan{land: md.Fields().ByName(land), lend: lend}
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		if fd.Cardinality() == protoreflect.Repeated || fd.ContainingOneof() != nil || fd.HasPresence() || wireType(fd) < 0 {
			return nil
		}
		p.fields = append(p.fields, fd)
	}
	slices.SortFunc(p.fields, func(a, b protoreflect.FieldDescriptor) int { return int(a.Number() - b.Number()) })
	if p.land == nil || p.land.Kind() != protoreflect.BytesKind {
		return nil
	}
	return p
}

// planOf returns v's plan, its reflection and the memory v lends for the
// land field (its Data: reflection gives no capacity of an empty field)
// when chunkCodec encodes v itself.
func planOf(v any) (*chunkPlan, protoreflect.Message, []byte) {
	switch m := v.(type) {
	case *paramserverv1.PullChunk:
		if pullPlan != nil {
			return pullPlan, m.ProtoReflect(), m.Data
		}
	case *paramserverv1.PushChunk:
		if pushPlan != nil {
			return pushPlan, m.ProtoReflect(), m.Data
		}
	}
	return nil, nil, nil
}

// wireType is the protobuf wire type of the kinds the codec encodes, or -1.
func wireType(fd protoreflect.FieldDescriptor) protowire.Type {
	switch fd.Kind() {
	case protoreflect.Int64Kind, protoreflect.Int32Kind, protoreflect.Uint32Kind, protoreflect.Uint64Kind,
		protoreflect.BoolKind, protoreflect.EnumKind:
		return protowire.VarintType
	case protoreflect.BytesKind:
		return protowire.BytesType
	}
	return -1
}

// marshal encodes m as proto.Marshal does (fields in number order, zero
// values left out, unknown fields last), byte for byte.
func (p *chunkPlan) marshal(m protoreflect.Message) mem.BufferSlice {
	if p.lend {
		var out mem.BufferSlice
		if b := p.appendTo(nil, m, &out); len(b) > 0 {
			out = append(out, mem.SliceBuffer(b))
		}
		return out
	}
	size := p.size(m)
	if mem.IsBelowBufferPoolingThreshold(size) {
		return mem.BufferSlice{mem.SliceBuffer(p.appendTo(make([]byte, 0, size), m, nil))}
	}
	buf := bufferPool.Get(size)
	*buf = p.appendTo((*buf)[:0], m, nil)
	return mem.BufferSlice{mem.NewBuffer(buf, bufferPool)}
}

// appendTo appends m's encoding to b. With out non-nil the bytes fields are
// not copied: b up to each one's length and the field's own bytes go to out,
// and the rest starts a new b, which is returned.
func (p *chunkPlan) appendTo(b []byte, m protoreflect.Message, out *mem.BufferSlice) []byte {
	for _, fd := range p.fields {
		if !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		b = protowire.AppendTag(b, fd.Number(), wireType(fd))
		switch fd.Kind() {
		case protoreflect.BytesKind:
			data := v.Bytes()
			b = protowire.AppendVarint(b, uint64(len(data)))
			if out == nil {
				b = append(b, data...)
			} else {
				*out = append(*out, mem.SliceBuffer(b), mem.SliceBuffer(data))
				b = nil
			}
		default:
			b = protowire.AppendVarint(b, varintOf(fd, v))
		}
	}
	return append(b, m.GetUnknown()...)
}

// size is the length of m's encoding.
func (p *chunkPlan) size(m protoreflect.Message) int {
	n := len(m.GetUnknown())
	for _, fd := range p.fields {
		if !m.Has(fd) {
			continue
		}
		n += protowire.SizeTag(fd.Number())
		if fd.Kind() == protoreflect.BytesKind {
			n += protowire.SizeBytes(len(m.Get(fd).Bytes()))
		} else {
			n += protowire.SizeVarint(varintOf(fd, m.Get(fd)))
		}
	}
	return n
}

// varintOf is a scalar field's value as protobuf writes it (negative
// int32s and enums sign-extended to 64 bits).
func varintOf(fd protoreflect.FieldDescriptor, v protoreflect.Value) uint64 {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protowire.EncodeBool(v.Bool())
	case protoreflect.EnumKind:
		return uint64(int64(v.Enum()))
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		return v.Uint()
	}
	return uint64(v.Int())
}

// errTruncated is the error of a message that ends inside a field.
var errTruncated = errors.New("rpc: chunk codec: message truncated inside a field")

// unmarshal decodes data into m as proto.Unmarshal does (m reset first; in
// any field order, the last of repeated scalars winning, unknown fields and
// fields of an unexpected wire type kept as unknown), reading from gRPC's
// buffers in place; the land field is written into the capacity of m's
// value of it (lent), when it fits. Groups, which proto3 never writes, are
// refused.
func (p *chunkPlan) unmarshal(data mem.BufferSlice, m protoreflect.Message, lent []byte) error {
	lent = lent[:0]
	proto.Reset(m.Interface())
	r := data.Reader()
	defer r.Close()
	var unknown []byte
	for r.Remaining() > 0 {
		tag, err := readVarint(r)
		if err != nil {
			return err
		}
		num, typ := protowire.DecodeTag(tag)
		if num < protowire.MinValidNumber || num > protowire.MaxValidNumber {
			return fmt.Errorf("rpc: chunk codec: invalid field number %d", num)
		}
		fd := m.Descriptor().Fields().ByNumber(num)
		if fd == nil || wireType(fd) != typ {
			if unknown, err = appendUnknown(unknown, r, num, typ); err != nil {
				return err
			}
			continue
		}
		if typ == protowire.BytesType {
			n, err := readVarint(r)
			if err != nil {
				return err
			}
			if n > uint64(r.Remaining()) {
				return errTruncated
			}
			var b []byte
			if fd == p.land && uint64(cap(lent)) >= n {
				b = lent[:n]
			} else {
				b = make([]byte, n)
			}
			if _, err := io.ReadFull(r, b); err != nil {
				return errTruncated
			}
			m.Set(fd, protoreflect.ValueOfBytes(b))
			continue
		}
		x, err := readVarint(r)
		if err != nil {
			return err
		}
		m.Set(fd, valueOf(fd, x))
	}
	if len(unknown) > 0 {
		m.SetUnknown(unknown)
	}
	return nil
}

// valueOf is the value of scalar field fd read as the varint x.
func valueOf(fd protoreflect.FieldDescriptor, x uint64) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(protowire.DecodeBool(x))
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(int32(x)))
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(x))
	case protoreflect.Uint32Kind:
		return protoreflect.ValueOfUint32(uint32(x))
	case protoreflect.Uint64Kind:
		return protoreflect.ValueOfUint64(x)
	}
	return protoreflect.ValueOfInt64(int64(x))
}

// readVarint reads one base-128 varint as protowire.ConsumeVarint does.
func readVarint(r *mem.Reader) (uint64, error) {
	var x uint64
	for i := 0; i < 10; i++ {
		c, err := r.ReadByte()
		if err != nil {
			return 0, errTruncated
		}
		if i == 9 && c > 1 {
			return 0, errors.New("rpc: chunk codec: varint overflows 64 bits")
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, errors.New("rpc: chunk codec: varint longer than 10 bytes")
}

// appendUnknown appends field num of wire type typ, read from r, to b as
// protobuf keeps unknown fields.
func appendUnknown(b []byte, r *mem.Reader, num protowire.Number, typ protowire.Type) ([]byte, error) {
	b = protowire.AppendTag(b, num, typ)
	var n uint64
	switch typ {
	case protowire.VarintType:
		x, err := readVarint(r)
		return protowire.AppendVarint(b, x), err
	case protowire.Fixed32Type:
		n = 4
	case protowire.Fixed64Type:
		n = 8
	case protowire.BytesType:
		var err error
		if n, err = readVarint(r); err != nil {
			return b, err
		}
		b = protowire.AppendVarint(b, n)
	default:
		return b, fmt.Errorf("rpc: chunk codec: field %d has wire type %d (groups are not proto3)", num, typ)
	}
	if n > uint64(r.Remaining()) {
		return b, errTruncated
	}
	start := len(b)
	b = slices.Grow(b, int(n))[:start+int(n)]
	if _, err := io.ReadFull(r, b[start:]); err != nil {
		return b, errTruncated
	}
	return b, nil
}
