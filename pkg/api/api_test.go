// Package api_test checks the generated gRPC code in pkg/api: messages
// survive the wire format, and a chunked Pull stream carries more than
// gRPC's default 4 MiB message limit.
package api_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	paramserverv1 "github.com/logitpair/logitpair/pkg/api/paramserver/v1"
)

func TestRoundTrip(t *testing.T) {
	chunk := &paramserverv1.PullChunk{
		Step:          42,
		Offset:        1 << 20,
		Data:          floatBytes(0, 1000),
		Last:          true,
		Buffers:       floatBytes(7, 16),
		TotalElements: 1<<20 + 1000,
	}
	joinReq := &coordinatorv1.JoinRequest{
		Role:          "worker",
		Address:       "10.0.0.7:7070",
		PreferredSlot: -1,
		JoinToken:     "s3cret",
		NodeName:      "node-a",
	}
	for _, tc := range []struct {
		name string
		in   proto.Message
		out  proto.Message
	}{
		{"PullChunk", chunk, &paramserverv1.PullChunk{}},
		{"JoinRequest", joinReq, &coordinatorv1.JoinRequest{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := proto.Marshal(tc.in)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if err := proto.Unmarshal(b, tc.out); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !proto.Equal(tc.in, tc.out) {
				t.Fatalf("round trip changed the message:\n in: %v\nout: %v", tc.in, tc.out)
			}
		})
	}
}

// The test server's shard: 3 chunks of 1.5 MiB, 4.5 MiB in all.
const (
	chunkElems = 3 << 17 // 393216 float32 = 1.5 MiB
	numChunks  = 3
	totalElems = chunkElems * numChunks
)

// pullServer streams element i's value float32(i), in chunks of
// max_chunk_bytes (the request's; every element in one message if larger).
type pullServer struct {
	paramserverv1.UnimplementedParameterServerServer
}

func (pullServer) Pull(req *paramserverv1.PullRequest, stream paramserverv1.ParameterServer_PullServer) error {
	per := int64(req.GetMaxChunkBytes() / 4)
	if per <= 0 {
		return status.Error(codes.InvalidArgument, "max_chunk_bytes must be at least 4")
	}
	for off := int64(0); off < totalElems; off += per {
		end := min(off+per, totalElems)
		c := &paramserverv1.PullChunk{
			Step:          req.GetStep(),
			Offset:        off,
			Data:          floatBytes(off, end-off),
			Last:          end == totalElems,
			TotalElements: totalElems,
		}
		if c.Last {
			c.Buffers = floatBytes(-1, 2)
		}
		if err := stream.Send(c); err != nil {
			return err
		}
	}
	return nil
}

func TestPullChunkedBeyondMessageLimit(t *testing.T) {
	if totalElems*4 <= 4<<20 {
		t.Fatal("the test stream must exceed gRPC's default 4 MiB message limit")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := startServer(t)

	t.Run("chunked", func(t *testing.T) {
		stream, err := client.Pull(ctx, &paramserverv1.PullRequest{Step: 5, Worker: 1, MaxChunkBytes: chunkElems * 4})
		if err != nil {
			t.Fatalf("Pull: %v", err)
		}
		var got []byte
		var chunks int
		var sawLast bool
		for {
			c, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("Recv after %d chunks: %v", chunks, err)
			}
			if sawLast {
				t.Fatalf("chunk %d after the last one", chunks)
			}
			if c.GetStep() != 5 || c.GetTotalElements() != totalElems {
				t.Fatalf("chunk %d: step %d, total %d; want 5, %d", chunks, c.GetStep(), c.GetTotalElements(), totalElems)
			}
			if want := int64(len(got) / 4); c.GetOffset() != want {
				t.Fatalf("chunk %d: offset %d, want %d (out of order or gap)", chunks, c.GetOffset(), want)
			}
			got = append(got, c.GetData()...)
			sawLast = c.GetLast()
			chunks++
		}
		if !sawLast {
			t.Fatal("stream ended without a last chunk")
		}
		if chunks != numChunks {
			t.Errorf("got %d chunks, want %d", chunks, numChunks)
		}
		if len(got) != totalElems*4 {
			t.Fatalf("got %d bytes, want %d", len(got), totalElems*4)
		}
		for i := range totalElems {
			if v := math.Float32frombits(binary.LittleEndian.Uint32(got[4*i:])); v != float32(i) {
				t.Fatalf("element %d = %v, want %v", i, v, float32(i))
			}
		}
	})

	// The control: the same bytes as one message exceed the client's default
	// receive limit, which is what chunking avoids.
	t.Run("one message", func(t *testing.T) {
		stream, err := client.Pull(ctx, &paramserverv1.PullRequest{Step: 5, MaxChunkBytes: math.MaxUint32})
		if err != nil {
			t.Fatalf("Pull: %v", err)
		}
		_, err = stream.Recv()
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("Recv of a %d-byte message: %v, want code ResourceExhausted", totalElems*4, err)
		}
	})
}

// startServer serves pullServer on an in-process bufconn listener, with
// gRPC's default message limits on both sides.
func startServer(t *testing.T) paramserverv1.ParameterServerClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	paramserverv1.RegisterParameterServerServer(srv, pullServer{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return paramserverv1.NewParameterServerClient(conn)
}

// floatBytes is float32(first), float32(first+1), … (n values), little-endian.
func floatBytes(first, n int64) []byte {
	b := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(first+i)))
	}
	return b
}
