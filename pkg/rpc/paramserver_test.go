package rpc

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	paramserverv1 "github.com/logitpair/logitpair/pkg/api/paramserver/v1"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/wire"
)

// psFixture is one shard served over bufconn, with a PSClient and a raw
// generated client on one connection.
type psFixture struct {
	shard  *paramserver.Local
	server *PSServer
	client *PSClient
	raw    paramserverv1.ParameterServerClient
}

// newPSFixture serves shard with the cluster's transport settings
// (TransportServerOptions, TransportDialOptions) and serverOpts, dialed
// with dialOpts.
func newPSFixture(t *testing.T, shard *paramserver.Local, serverOpts []grpc.ServerOption, dialOpts ...grpc.DialOption) *psFixture {
	t.Helper()
	srv := NewPSServer(shard)
	lis := serve(t, append(TransportServerOptions(nil), serverOpts...), srv.Register)
	conn := dial(t, lis, append(TransportDialOptions(insecure.NewCredentials()), dialOpts...)...)
	return newPSFixtureOn(shard, srv, conn)
}

func newPSFixtureOn(shard *paramserver.Local, srv *PSServer, conn grpc.ClientConnInterface) *psFixture {
	return &psFixture{shard: shard, server: srv, client: NewPSClient(conn, shard.S.Config().Index), raw: paramserverv1.NewParameterServerClient(conn)}
}

// TestPullPushLargeShard: a shard of 1.5 M parameters (6 MB, above gRPC's
// 4 MiB message limit) goes through the chunked Pull and Push streams bit
// for bit: what a worker pulls is the shard's state, and a step applied
// from gradients pushed over gRPC equals the same step applied in memory.
// It does so with the cluster's transport (the chunk codec on both sides),
// the same over TCP with mutual TLS (records batched), and against a
// server with gRPC's defaults (the proto codec on its side).
func TestPullPushLargeShard(t *testing.T) {
	id := loopbackIdentity(t)
	for _, tr := range []struct {
		name    string
		fixture func(t *testing.T, shard *paramserver.Local) *psFixture
	}{
		{"transport options", func(t *testing.T, shard *paramserver.Local) *psFixture { return newPSFixture(t, shard, nil) }},
		{"TCP, mutual TLS", func(t *testing.T, shard *paramserver.Local) *psFixture {
			srv := NewPSServer(shard)
			addr := serveTCP(t, TransportServerOptions(id.ServerCredentials()), srv.Register)
			return newPSFixtureOn(shard, srv, dialTCP(t, addr, TransportDialOptions(id.ClientCredentials(""))...))
		}},
		{"server with gRPC defaults", func(t *testing.T, shard *paramserver.Local) *psFixture {
			srv := NewPSServer(shard)
			return newPSFixtureOn(shard, srv, dial(t, serve(t, nil, srv.Register)))
		}},
	} {
		t.Run(tr.name, func(t *testing.T) { testPullPushLargeShard(t, tr.fixture) })
	}
}

func testPullPushLargeShard(t *testing.T, fixture func(*testing.T, *paramserver.Local) *psFixture) {
	const n, nb = 1_500_000, 3
	ctx := ctxFor(t, 2*time.Minute)
	remote := newShard(t, n, nb, 2, 1)
	local := newShard(t, n, nb, 2, 1)
	f := fixture(t, remote)

	p, b, err := f.client.Pull(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantP, wantB, _ := local.S.Pull(ctx, 0)
	sameBits(t, "pulled parameters", p, wantP)
	sameBits(t, "pulled buffers", b, wantB)

	rng := rand.New(rand.NewPCG(3, 4))
	for w := 0; w < 2; w++ {
		g, gb := randFloats(rng, n), randFloats(rng, nb)
		for i := range g {
			g[i] *= 1e-3 // keep Adam's step finite around ±MaxFloat32
		}
		if err := f.client.Push(ctx, 0, w, g, gb); err != nil {
			t.Fatalf("push of worker %d: %v", w, err)
		}
		if err := local.S.Push(0, w, g, gb); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.client.Apply(ctx, 0, []int{0, 1}, 0); err != nil {
		t.Fatal(err)
	}
	if err := local.S.Apply(0, []int{0, 1}); err != nil {
		t.Fatal(err)
	}
	if v, err := f.client.Version(ctx); err != nil || v != 1 {
		t.Fatalf("version after apply: %d, %v", v, err)
	}
	p, b, err = f.client.Pull(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	wantP, wantB, _ = local.S.Pull(ctx, 1)
	sameBits(t, "parameters after a step pushed over gRPC", p, wantP)
	sameBits(t, "buffers after a step pushed over gRPC", b, wantB)
	if st := remote.S.Stats(); st.Accepted != 2 || st.Used != 2 || st.Rejected.Total() != 0 {
		t.Fatalf("shard stats %+v", st)
	}

	// Chunk sizes: the request's max_chunk_bytes, clamped to [4 KiB, 3 MiB],
	// the server's 1 MiB when 0.
	for _, tc := range []struct{ ask, limit int }{{0, 1 << 20}, {100, 4 << 10}, {16 << 20, 3 << 20}, {64<<10 + 2, 64 << 10}} {
		stream, err := f.raw.Pull(ctx, &paramserverv1.PullRequest{Step: 1, MaxChunkBytes: uint32(tc.ask)})
		if err != nil {
			t.Fatal(err)
		}
		var got []float32
		chunks := 0
		for {
			c, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			chunks++
			if len(c.Data) > tc.limit || (len(c.Data) < tc.limit && !c.Last) || c.TotalElements != n {
				t.Fatalf("max_chunk_bytes %d: chunk %d of %d bytes (last %v, total %d), limit %d", tc.ask, chunks, len(c.Data), c.Last, c.TotalElements, tc.limit)
			}
			got = appendFloats(got, c.Data)
		}
		if want := (4*n + tc.limit - 1) / tc.limit; chunks != want {
			t.Fatalf("max_chunk_bytes %d: %d chunks, want %d", tc.ask, chunks, want)
		}
		sameBits(t, "raw pull", got, wantP)
	}
}

// chunk is a PushChunk built from float32 values.
func chunk(step int64, worker int32, off, total int64, vals []float32, last bool, bufs []float32) *paramserverv1.PushChunk {
	c := &paramserverv1.PushChunk{Step: step, Worker: worker, Offset: off, Data: encodeFloats(vals), TotalElements: total, Last: last}
	if bufs != nil {
		c.Buffers = encodeFloats(bufs)
	}
	return c
}

// rawPush sends chunks as one Push stream and returns the server's answer.
func rawPush(ctx context.Context, c paramserverv1.ParameterServerClient, chunks ...*paramserverv1.PushChunk) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Push(ctx)
	if err != nil {
		return err
	}
	for _, ch := range chunks {
		if err := stream.Send(ch); err != nil {
			break // io.EOF: the server answered; CloseAndRecv has it
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

// TestMalformedPushes: every way a push stream can be wrong is refused
// with the right code and a message naming the fault; the parameters stay
// as they were, nothing is buffered, and the refusal is counted (by the
// server for streams the shard never saw, by the shard otherwise).
func TestMalformedPushes(t *testing.T) {
	const n, nb = 10, 2
	ctx := ctxFor(t, time.Minute)
	f := newPSFixture(t, newShard(t, n, nb, 2, 7), nil)
	ones := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	bufs := ones(nb)

	// Advance the shard to version 1, so that step 0 is stale.
	for w := 0; w < 2; w++ {
		if err := f.client.Push(ctx, 0, w, ones(n), bufs); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.client.Apply(ctx, 0, []int{0, 1}, 0); err != nil {
		t.Fatal(err)
	}
	before, beforeB, err := f.client.Pull(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	nan := ones(n)
	nan[3] = float32(math.NaN())
	inf := []float32{1, float32(math.Inf(1))}
	partial := chunk(1, 0, 0, n, ones(n), true, bufs)
	partial.Data = partial.Data[:4*n-1]
	bf16 := func(c *paramserverv1.PushChunk) *paramserverv1.PushChunk {
		c.Data, c.Encoding = encodeGradient(nil, appendFloats(nil, c.Data), encodingBF16), encodingBF16
		return c
	}
	partialBF16 := bf16(chunk(1, 0, 0, n, ones(n), true, bufs))
	partialBF16.Data = partialBF16.Data[:2*n-1]
	unknownEncoding := chunk(1, 0, 0, n, ones(n), true, bufs)
	unknownEncoding.Encoding = 7

	// transport: refused by the server before the shard; shard: refused by
	// the shard, counted in its Stats.Rejected.
	type counter func(paramserver.Rejections) int64
	for _, tc := range []struct {
		name    string
		chunks  []*paramserverv1.PushChunk
		code    codes.Code
		parts   []string
		shard   counter // nil: a transport-level refusal
		kind    error
		viaPush bool
	}{
		{name: "gap between chunks", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(4), false, nil), chunk(1, 0, 5, n, ones(5), true, bufs)},
			code: codes.InvalidArgument, parts: []string{"offset 5, expected 4"}},
		{name: "overlapping chunks", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(4), false, nil), chunk(1, 0, 3, n, ones(7), true, bufs)},
			code: codes.InvalidArgument, parts: []string{"offset 3, expected 4"}},
		{name: "first chunk not at 0", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 2, n, ones(8), true, bufs)},
			code: codes.InvalidArgument, parts: []string{"offset 2, expected 0"}},
		{name: "mixed steps", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(5), false, nil), chunk(2, 0, 5, n, ones(5), true, bufs)},
			code: codes.InvalidArgument, parts: []string{"step 2 in a push for step 1"}},
		{name: "mixed workers", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(5), false, nil), chunk(1, 1, 5, n, ones(5), true, bufs)},
			code: codes.InvalidArgument, parts: []string{"worker 1 in a push from worker 0"}},
		{name: "mixed totals", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(5), false, nil), chunk(1, 0, 5, 11, ones(5), true, bufs)},
			code: codes.InvalidArgument, parts: []string{"total_elements 11 in a push of 10"}},
		{name: "partial element", chunks: []*paramserverv1.PushChunk{partial},
			code: codes.InvalidArgument, parts: []string{"39 data bytes, not a multiple of 4"}},
		{name: "more bytes than total_elements", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(6), false, nil), chunk(1, 0, 6, n, ones(6), true, bufs)},
			code: codes.InvalidArgument, parts: []string{"runs past total_elements 10"}},
		{name: "wrong total length", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, 12, ones(12), true, bufs)},
			code: codes.InvalidArgument, parts: []string{"total_elements 12", "[0,10) = 10 elements"}},
		{name: "short of total", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(8), true, bufs)},
			code: codes.InvalidArgument, parts: []string{"cover [0,8) of total_elements 10"}},
		{name: "no last chunk", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(n), false, nil)},
			code: codes.InvalidArgument, parts: []string{"without a chunk marked last"}},
		{name: "chunk after last", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(n), true, bufs), chunk(1, 0, n, n, nil, false, nil)},
			code: codes.InvalidArgument, parts: []string{"after the chunk marked last"}},
		{name: "buffers before the last chunk", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(5), false, bufs), chunk(1, 0, 5, n, ones(5), true, nil)},
			code: codes.InvalidArgument, parts: []string{"not marked last"}},
		{name: "empty stream", code: codes.InvalidArgument, parts: []string{"empty push stream"}},
		{name: "mixed encodings", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(5), false, nil), bf16(chunk(1, 0, 5, n, ones(5), true, bufs))},
			code: codes.InvalidArgument, parts: []string{"encoding GRADIENT_ENCODING_BF16 in a push in GRADIENT_ENCODING_FLOAT32"}},
		{name: "unknown encoding", chunks: []*paramserverv1.PushChunk{unknownEncoding},
			code: codes.InvalidArgument, parts: []string{"gradient encoding 7 is not one this shard knows"}},
		{name: "partial bf16 element", chunks: []*paramserverv1.PushChunk{partialBF16},
			code: codes.InvalidArgument, parts: []string{"19 data bytes, not a multiple of 2 (whole GRADIENT_ENCODING_BF16 elements)"}},
		{name: "more bf16 values than total_elements", chunks: []*paramserverv1.PushChunk{bf16(chunk(1, 0, 0, n, ones(6), false, nil)), bf16(chunk(1, 0, 6, n, ones(6), true, bufs))},
			code: codes.InvalidArgument, parts: []string{"with 6 elements runs past total_elements 10"}},

		{name: "NaN gradient", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, nan, true, bufs)}, viaPush: true,
			code: codes.InvalidArgument, parts: []string{"non-finite", "gradient[3]"}, kind: paramserver.ErrNonFinite,
			shard: func(r paramserver.Rejections) int64 { return r.NonFinite }},
		{name: "Inf buffer", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(n), true, inf)}, viaPush: true,
			code: codes.InvalidArgument, parts: []string{"non-finite", "buffers[1]"}, kind: paramserver.ErrNonFinite,
			shard: func(r paramserver.Rejections) int64 { return r.NonFinite }},
		{name: "wrong buffer length", chunks: []*paramserverv1.PushChunk{chunk(1, 0, 0, n, ones(n), true, ones(3))}, viaPush: true,
			code: codes.InvalidArgument, parts: []string{"buffers have 3 values"}, kind: paramserver.ErrLength,
			shard: func(r paramserver.Rejections) int64 { return r.Length }},
		{name: "unknown worker", chunks: []*paramserverv1.PushChunk{chunk(1, 7, 0, n, ones(n), true, bufs)}, viaPush: true,
			code: codes.InvalidArgument, parts: []string{"unknown worker", "worker 7"}, kind: paramserver.ErrUnknownWorker,
			shard: func(r paramserver.Rejections) int64 { return r.UnknownWorker }},
		{name: "stale step", chunks: []*paramserverv1.PushChunk{chunk(0, 0, 0, n, ones(n), true, bufs)}, viaPush: true,
			code: codes.FailedPrecondition, parts: []string{"stale step", "shard at version 1"}, kind: paramserver.ErrStale,
			shard: func(r paramserver.Rejections) int64 { return r.Stale }},
		{name: "future step", chunks: []*paramserverv1.PushChunk{chunk(3, 0, 0, n, ones(n), true, bufs)}, viaPush: true,
			code: codes.FailedPrecondition, parts: []string{"future step", "shard at version 1"}, kind: paramserver.ErrFuture,
			shard: func(r paramserver.Rejections) int64 { return r.Future }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st0, srv0 := f.shard.S.Stats(), f.server.Stats()
			err := rawPush(ctx, f.raw, tc.chunks...)
			wantCode(t, tc.name, err, tc.code, tc.parts...)
			st1, srv1 := f.shard.S.Stats(), f.server.Stats()
			if tc.shard == nil {
				if st1.Pushes != st0.Pushes || srv1.MalformedPushes != srv0.MalformedPushes+1 {
					t.Fatalf("a malformed stream reached the shard or was not counted: shard pushes %d → %d, server malformed %d → %d",
						st0.Pushes, st1.Pushes, srv0.MalformedPushes, srv1.MalformedPushes)
				}
				if !errors.Is(fromStatus(err), ErrMalformed) {
					t.Fatalf("%v does not unwrap to ErrMalformed", err)
				}
			} else if tc.shard(st1.Rejected) != tc.shard(st0.Rejected)+1 || st1.Rejected.Total() != st0.Rejected.Total()+1 || srv1.MalformedPushes != srv0.MalformedPushes {
				t.Fatalf("rejection not counted by the shard: %+v → %+v", st0.Rejected, st1.Rejected)
			}
			if tc.viaPush {
				// The same push through PSClient: the shard's kind survives
				// the network.
				c := tc.chunks[0]
				perr := f.client.Push(ctx, c.Step, int(c.Worker), appendFloats(nil, c.Data), appendFloats(nil, c.Buffers))
				var pe *paramserver.Error
				if !errors.Is(perr, tc.kind) || !errors.As(perr, &pe) || pe.Version != 1 || pe.Step != c.Step || pe.Op != "push" {
					t.Fatalf("PSClient.Push: %v (%#v), want kind %v at version 1", perr, pe, tc.kind)
				}
			}
			if st1.Pending != 0 {
				t.Fatalf("%d gradients buffered after a refused push", st1.Pending)
			}
			p, b, err := f.client.Pull(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			sameBits(t, "parameters after a refused push", p, before)
			sameBits(t, "buffers after a refused push", b, beforeB)
		})
	}
	// counters.rejected over gRPC counts both kinds of refusal.
	st, err := f.client.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := f.shard.S.Stats()
	if want := s.Rejected.Total() - s.Rejected.Stale + f.server.Stats().MalformedPushes; st.Counters.Rejected != want || st.Counters.DroppedStale != s.Rejected.Stale {
		t.Fatalf("State counters %+v, want rejected %d, dropped_stale %d", st.Counters, want, s.Rejected.Stale)
	}
}

// TestPullErrors: a stale pull is FAILED_PRECONDITION with the shard's
// version, errors.Is(err, ErrStale) through PSClient; a pull of a future
// version long-polls until the caller's deadline; a closed shard is
// UNAVAILABLE.
func TestPullErrors(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	f := newPSFixture(t, newShard(t, 4, 0, 1, 2), nil)
	if err := f.client.Push(ctx, 0, 0, []float32{1, 2, 3, 4}, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.client.Apply(ctx, 0, []int{0}, 0); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.client.Pull(ctx, 0)
	wantCode(t, "stale pull", err, codes.FailedPrecondition, "stale step", "shard at version 1")
	var pe *paramserver.Error
	if !errors.Is(err, paramserver.ErrStale) || !errors.As(err, &pe) || pe.Version != 1 {
		t.Fatalf("stale pull: %v", err)
	}

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, _, err = f.client.Pull(short, 2)
	wantCode(t, "future pull", err, codes.DeadlineExceeded)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("future pull: %v does not unwrap to context.DeadlineExceeded", err)
	}

	// A pull waiting for version 2 is answered once Apply(1) lands.
	done := make(chan error, 1)
	go func() {
		_, _, err := f.client.Pull(ctx, 2)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := f.client.Push(ctx, 1, 0, []float32{1, 1, 1, 1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.client.Apply(ctx, 1, []int{0}, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the long-polling pull was not answered")
	}

	_ = f.shard.S.Close()
	_, _, err = f.client.Pull(ctx, 2)
	wantCode(t, "pull from a closed shard", err, codes.Unavailable, "shard closed")
	if !errors.Is(err, paramserver.ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
}

// TestApplyCheckpointRestore: the coordinator's calls through PSClient:
// Apply's errors keep their kinds, Checkpoint must be at the shard's
// version, Restore brings back a saved step bit for bit.
func TestApplyCheckpointRestore(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	f := newPSFixture(t, newShard(t, 6, 2, 2, 9), nil)
	p0, b0, err := f.client.Pull(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	g := []float32{1, -1, 2, -2, 3, -3}
	if err := f.client.Push(ctx, 0, 1, g, []float32{5, 6}); err != nil {
		t.Fatal(err)
	}
	err = f.client.Apply(ctx, 0, []int{0, 1}, 0)
	wantCode(t, "apply with a missing push", err, codes.FailedPrecondition, "missing gradients", "workers [0]")
	var pe *paramserver.Error
	if !errors.As(err, &pe) || !errors.Is(err, paramserver.ErrMissing) || len(pe.Workers) != 1 || pe.Workers[0] != 0 {
		t.Fatalf("missing: %v (%#v)", err, pe)
	}
	wantCode(t, "apply of an unsorted set", f.client.Apply(ctx, 0, []int{1, 1}, 0), codes.InvalidArgument, "bad worker set")
	wantCode(t, "apply of a future step", f.client.Apply(ctx, 4, []int{1}, 0), codes.FailedPrecondition, "future step")
	wantCode(t, "checkpoint at another version", f.client.Checkpoint(ctx, 1, nil), codes.FailedPrecondition, "future step", "version 0")

	if err := f.client.Apply(ctx, 0, []int{1}, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.client.Apply(ctx, 0, []int{1}, 0); err != nil { // a resend: idempotent
		t.Fatal(err)
	}
	err = f.client.Apply(ctx, 0, []int{0}, 0)
	wantCode(t, "resend with another set", err, codes.FailedPrecondition, "worker set differs")
	if !errors.Is(err, paramserver.ErrSetMismatch) {
		t.Fatal(err)
	}
	if err := f.client.Checkpoint(ctx, 1, nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "checkpoint of a past step", f.client.Checkpoint(ctx, 0, nil), codes.FailedPrecondition, "stale step", "version 1")
	wantCode(t, "restore of a step never saved", f.client.Restore(ctx, 7), codes.FailedPrecondition, "no saved state")

	if err := f.client.Restore(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.client.Version(ctx); v != 0 {
		t.Fatalf("version after restore: %d", v)
	}
	p, b, err := f.client.Pull(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	sameBits(t, "restored parameters", p, p0)
	sameBits(t, "restored buffers", b, b0)
	st, err := f.client.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Shard != 0 || st.Lo != 0 || st.Hi != 6 || st.Version != 0 || st.Counters.Applied != 1 || st.Counters.Pushes != 1 {
		t.Fatalf("state %v", st)
	}
}

// TestPullBuffersOwnChunk: when the buffers do not fit beside the last
// parameter chunk they come in a final chunk of their own.
func TestPullBuffersOwnChunk(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	f := newPSFixture(t, newShard(t, 1024, 16, 1, 4), nil) // exactly one 4 KiB chunk of parameters
	stream, err := f.raw.Pull(ctx, &paramserverv1.PullRequest{MaxChunkBytes: MinChunkBytes})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	var last *paramserverv1.PullChunk
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(c.Data))
		last = c
	}
	if len(sizes) != 2 || sizes[0] != 4096 || sizes[1] != 0 || !last.Last || len(last.Buffers) != 64 {
		t.Fatalf("chunks of %v bytes, last %v", sizes, last)
	}
	_, wantB, _ := f.shard.S.Pull(ctx, 0)
	for i, x := range wantB {
		if math.Float32bits(x) != binary.LittleEndian.Uint32(last.Buffers[4*i:]) {
			t.Fatalf("buffer %d", i)
		}
	}
	if _, b, err := f.client.Pull(ctx, 0); err != nil || len(b) != 16 {
		t.Fatalf("client pull: %d buffers, %v", len(b), err)
	}
}

// TestPullReusesItsMemory: a Pull decodes into the memory the client's
// last Pull returned (documented: valid until the next Pull) and still
// returns the new version's values; a shard that grew (another range after
// a restart) gets new memory.
func TestPullReusesItsMemory(t *testing.T) {
	const n = 70_000
	ctx := ctxFor(t, time.Minute)
	shard := newShard(t, n, 2, 1, 1)
	f := newPSFixture(t, shard, nil)
	p0, _, err := f.client.Pull(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.client.Push(ctx, 0, 0, randFloats(rand.New(rand.NewPCG(1, 2)), n), []float32{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := f.client.Apply(ctx, 0, []int{0}, 0); err != nil {
		t.Fatal(err)
	}
	p1, b1, err := f.client.Pull(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if &p1[0] != &p0[0] {
		t.Error("the second Pull decoded into new memory")
	}
	want, wantB, _ := shard.S.Pull(ctx, 1)
	sameBits(t, "parameters pulled into reused memory", p1, want)
	sameBits(t, "buffers", b1, wantB)

	bigger := newShard(t, n+1, 2, 1, 1)
	c := newPSFixture(t, bigger, nil).client
	c.last = p1 // as if its last Pull had been of the smaller range
	p2, _, err := c.Pull(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ = bigger.S.Pull(ctx, 0)
	sameBits(t, "parameters of a larger range", p2, want)
}

// dataCounter counts the gradient bytes of the PushChunks a server receives.
type dataCounter struct {
	grpc.ServerStream
	n *atomic.Int64
}

func (d dataCounter) RecvMsg(m any) error {
	err := d.ServerStream.RecvMsg(m)
	if c, ok := m.(*paramserverv1.PushChunk); ok && err == nil {
		d.n.Add(int64(len(c.Data)))
	}
	return err
}

// TestPushBF16: a push in wire.BF16 (many chunks, of an odd number of
// values) moves 2 bytes per value and arrives at the shard as
// wire.RoundBF16 of the gradient, ties and subnormals included, while the
// buffers arrive as float32: the step it makes equals the step made in
// memory from the rounded gradient and the exact buffers. A value beyond
// bfloat16's range rounds to Inf, which the shard refuses. The same holds
// against a server with gRPC's defaults (the values widened from a copy).
func TestPushBF16(t *testing.T) {
	const n, nb = 200_001, 3
	for _, tr := range []struct {
		name string
		opts []grpc.ServerOption
	}{{"transport options", TransportServerOptions(nil)}, {"server with gRPC defaults", nil}} {
		t.Run(tr.name, func(t *testing.T) {
			ctx := ctxFor(t, time.Minute)
			remote := newShard(t, n, nb, 1, 5)
			local := newShard(t, n, nb, 1, 5)
			var received atomic.Int64
			count := grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				return h(srv, dataCounter{ss, &received})
			})
			srv := NewPSServer(remote)
			conn := dial(t, serve(t, append(tr.opts, count), srv.Register))
			client := NewPSClient(conn, 0, WithWireFormat(wire.BF16), WithChunkBytes(MinChunkBytes))

			rng := rand.New(rand.NewPCG(7, 7))
			g := randFloats(rng, n)
			for i := range g {
				switch i % 4 {
				case 1:
					g[i] = math.Float32frombits(math.Float32bits(g[i])&0xffff0000 | 0x8000) // a tie
				case 2:
					g[i] = math.Float32frombits(rng.Uint32() & 0x807fffff) // a subnormal
				}
			}
			b := []float32{1.0000001, -2.0000002, 3.0000003} // not bfloat16 values
			// randFloats holds ±MaxFloat32, beyond bfloat16's largest
			// value: rounded to ±Inf, refused by the shard as non-finite.
			err := client.Push(ctx, 0, 0, g, b)
			wantCode(t, "a bf16 push of MaxFloat32", err, codes.InvalidArgument, "non-finite", "Inf")
			for i, x := range g {
				if math.Abs(float64(x)) > 1e30 {
					g[i] = float32(math.Copysign(1e30, float64(x)))
				}
			}
			received.Store(0)
			if err := client.Push(ctx, 0, 0, g, b); err != nil {
				t.Fatal(err)
			}
			if got := received.Load(); got != 2*n {
				t.Errorf("the push moved %d gradient bytes, want %d (2 per value)", got, 2*n)
			}
			rounded := slices.Clone(g)
			wire.BF16.Round(rounded)
			if err := local.S.Push(0, 0, rounded, b); err != nil {
				t.Fatal(err)
			}
			for _, s := range []*paramserver.Local{remote, local} {
				if err := s.S.Apply(0, []int{0}); err != nil {
					t.Fatal(err)
				}
			}
			got, gotB, _ := remote.S.Pull(ctx, 1)
			want, wantB, _ := local.S.Pull(ctx, 1)
			sameBits(t, "parameters after a bf16 push", got, want)
			sameBits(t, "buffers after a bf16 push", gotB, wantB)
		})
	}
}

// TestLandGradientBF16: bfloat16 data widens to wire.FromBF16 of each
// value, in place in the memory spareBytes lent and from a copy elsewhere.
func TestLandGradientBF16(t *testing.T) {
	v := []float32{1, -0.5, 3.14159, 1e-40, float32(math.Inf(-1)), 65504}
	wireBytes := encodeGradient(nil, v, encodingBF16)
	want := make([]float32, len(v))
	for i, x := range v {
		want[i] = wire.RoundBF16(x)
	}
	dst := make([]float32, 1, 1+len(v))
	lent := spareBytes(dst)[:len(wireBytes)]
	copy(lent, wireBytes)
	got := landGradient(dst, lent, encodingBF16)
	if &got[0] != &dst[0] || len(got) != 1+len(v) {
		t.Fatal("bf16 data in lent memory was not widened in place")
	}
	sameBits(t, "widened in place", got[1:], want)
	sameBits(t, "widened from a copy", landGradient(nil, wireBytes, encodingBF16), want)
}
