package rpc

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	paramserverv1 "github.com/logitpair/logitpair/pkg/api/paramserver/v1"
)

// TestChunkCodecCoversTheChunks: the codec encodes PullChunk and PushChunk
// itself (a field of a kind it does not know would hand them back to the
// proto codec, and their copies).
func TestChunkCodecCoversTheChunks(t *testing.T) {
	for name, p := range map[string]*chunkPlan{"PullChunk": pullPlan, "PushChunk": pushPlan} {
		if p == nil {
			t.Errorf("%s has a field chunkCodec cannot encode (see wireType): teach it the kind", name)
			continue
		}
		if p.land.Name() != "data" {
			t.Errorf("%s lands field %s, want data", name, p.land.Name())
		}
	}
}

// randChunk fills m's fields at random: each scalar zero or not, small or
// extreme, negative included; bytes fields empty or up to 3 KB; sometimes
// unknown fields after them.
func randChunk(rng *rand.Rand, m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if rng.IntN(4) == 0 {
			continue // zero
		}
		var v protoreflect.Value
		switch fd.Kind() {
		case protoreflect.BoolKind:
			v = protoreflect.ValueOfBool(true)
		case protoreflect.Int64Kind:
			v = protoreflect.ValueOfInt64([]int64{-1, 1, 1 << 40, -1 << 63}[rng.IntN(4)] + int64(rng.IntN(1000)))
		case protoreflect.Int32Kind:
			v = protoreflect.ValueOfInt32([]int32{-7, 3, 1 << 30}[rng.IntN(3)])
		case protoreflect.Uint32Kind:
			v = protoreflect.ValueOfUint32(rng.Uint32())
		case protoreflect.EnumKind:
			v = protoreflect.ValueOfEnum(protoreflect.EnumNumber(rng.IntN(3) - 1))
		case protoreflect.BytesKind:
			b := make([]byte, rng.IntN(3000))
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			v = protoreflect.ValueOfBytes(b)
		default:
			panic(fd.Kind())
		}
		m.Set(fd, v)
	}
	if rng.IntN(3) == 0 {
		var u []byte
		u = protowire.AppendTag(u, 99, protowire.VarintType)
		u = protowire.AppendVarint(u, rng.Uint64())
		u = protowire.AppendTag(u, 100, protowire.BytesType)
		u = protowire.AppendBytes(u, []byte("unknown"))
		u = protowire.AppendTag(u, 101, protowire.Fixed32Type)
		u = protowire.AppendFixed32(u, 7)
		u = protowire.AppendTag(u, 102, protowire.Fixed64Type)
		u = protowire.AppendFixed64(u, 8)
		m.SetUnknown(u)
	}
}

// pieces cuts b into a BufferSlice of random pieces, as gRPC hands a
// message over in the HTTP/2 frames it arrived in.
func pieces(rng *rand.Rand, b []byte) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		n := min(len(b), 1+rng.IntN(40))
		if rng.IntN(4) == 0 {
			s = append(s, mem.SliceBuffer(nil)) // an empty piece
		}
		s = append(s, mem.SliceBuffer(bytes.Clone(b[:n])))
		b = b[n:]
	}
	return s
}

// TestChunkCodecMatchesProto: for random PullChunks and PushChunks the
// codec writes what proto.Marshal writes, byte for byte, and reads back,
// from any cut into pieces, what proto.Unmarshal reads (unknown fields
// kept), also from encodings proto.Marshal would not write: fields out of
// order, repeated, of an unexpected wire type. What arrives in the data
// field lands in the memory the receiver lends when it fits, and elsewhere
// when it does not. A truncated encoding is an error for both or for
// neither.
func TestChunkCodecMatchesProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 1))
	codec := chunkCodec{}
	for i := range 400 {
		var m, got, want proto.Message
		if i%2 == 0 {
			m, got, want = &paramserverv1.PullChunk{}, &paramserverv1.PullChunk{}, &paramserverv1.PullChunk{}
		} else {
			m, got, want = &paramserverv1.PushChunk{}, &paramserverv1.PushChunk{}, &paramserverv1.PushChunk{}
		}
		randChunk(rng, m.ProtoReflect())
		wire, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out, err := codec.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if mine := out.Materialize(); !bytes.Equal(mine, wire) {
			t.Fatalf("message %d: the codec wrote\n% x\nproto.Marshal\n% x", i, mine, wire)
		}
		out.Free()

		// Encodings proto.Marshal would not write: the fields reversed, one
		// repeated with another value, a known number with the wrong type.
		var odd []byte
		for b := wire; len(b) > 0; {
			_, _, n := protowire.ConsumeField(b)
			if n < 0 {
				t.Fatal(protowire.ParseError(n))
			}
			odd = append(append([]byte(nil), b[:n]...), odd...)
			b = b[n:]
		}
		odd = protowire.AppendTag(odd, 1, protowire.VarintType)
		odd = protowire.AppendVarint(odd, 42)
		odd = protowire.AppendTag(odd, 2, protowire.BytesType)
		odd = protowire.AppendBytes(odd, []byte("wrong type"))
		for _, enc := range [][]byte{wire, odd} {
			if err := proto.Unmarshal(enc, want); err != nil {
				t.Fatal(err)
			}
			lend := make([]byte, 0, rng.IntN(6000))
			switch g := got.(type) {
			case *paramserverv1.PullChunk:
				g.Data = lend
			case *paramserverv1.PushChunk:
				g.Data = lend
			}
			if err := codec.Unmarshal(pieces(rng, enc), got); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("message %d: the codec read\n%v\nproto.Unmarshal\n%v", i, got, want)
			}
			var data []byte
			switch g := got.(type) {
			case *paramserverv1.PullChunk:
				data = g.Data
			case *paramserverv1.PushChunk:
				data = g.Data
			}
			inPlace := len(data) > 0 && &data[0] == &lend[:1][0]
			if fits := len(data) > 0 && len(data) <= cap(lend); inPlace != fits {
				t.Fatalf("message %d: %d data bytes, %d lent: landed in place %v", i, len(data), cap(lend), inPlace)
			}
		}

		cuts := make([]int, 0, 80)
		for cut := range min(len(wire), 60) {
			cuts = append(cuts, cut) // every cut through the header and the first fields
		}
		for range 20 {
			cuts = append(cuts, rng.IntN(len(wire)+1))
		}
		for _, cut := range cuts {
			perr := proto.Unmarshal(wire[:cut], want)
			cerr := codec.Unmarshal(pieces(rng, wire[:cut]), got)
			if (perr == nil) != (cerr == nil) {
				t.Fatalf("message %d cut at %d of %d bytes: proto.Unmarshal %v, the codec %v", i, cut, len(wire), perr, cerr)
			}
		}
	}

	// Any other message goes to the proto codec.
	req := &paramserverv1.PullRequest{Step: 5, Worker: 2, MaxChunkBytes: 4096}
	out, err := codec.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	back := &paramserverv1.PullRequest{}
	if err := codec.Unmarshal(out, back); err != nil || !proto.Equal(back, req) {
		t.Fatalf("PullRequest through the codec: %v, %v", back, err)
	}
}

// TestChunkCodecLendsPullData: a PullChunk's data goes out as the very
// memory it was given (the shard's snapshot), a PushChunk's as a copy (the
// worker may change its gradient once Push returns).
func TestChunkCodecLendsPullData(t *testing.T) {
	data := encodeFloats([]float32{1, 2, 3, 4})
	pull, err := chunkCodec{}.Marshal(&paramserverv1.PullChunk{Step: 1, Data: data, TotalElements: 4})
	if err != nil {
		t.Fatal(err)
	}
	push, err := chunkCodec{}.Marshal(&paramserverv1.PushChunk{Step: 1, Data: data, TotalElements: 4})
	if err != nil {
		t.Fatal(err)
	}
	refers := func(s mem.BufferSlice) bool {
		return slices.ContainsFunc(s, func(b mem.Buffer) bool {
			d := b.ReadOnlyData()
			return len(d) > 0 && &d[0] == &data[0]
		})
	}
	if !refers(pull) {
		t.Error("a PullChunk's data was copied")
	}
	if refers(push) {
		t.Error("a PushChunk's data was not copied")
	}
}
