package rpc

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	"google.golang.org/grpc"

	paramserverv1 "github.com/logitpair/logitpair/pkg/api/paramserver/v1"
	"github.com/logitpair/logitpair/pkg/paramserver"
)

// PSServer serves one parameter-server shard as
// logitpair.paramserver.v1.ParameterServer. It translates and delegates to
// a paramserver.Local: pulls and pushes to its Shard, the coordinator's
// calls to the Local itself, which decides their semantics.
type PSServer struct {
	paramserverv1.UnimplementedParameterServerServer

	shard *paramserver.Local
	cfg   paramserver.ShardConfig
	chunk int // default Pull chunk, bytes

	malformed atomic.Int64
}

// PSServerOption configures a PSServer.
type PSServerOption func(*PSServer)

// WithPullChunkBytes sets the Pull chunk size used when a request leaves
// max_chunk_bytes at 0 (default DefaultChunkBytes; clamped to
// [MinChunkBytes, MaxChunkBytes]).
func WithPullChunkBytes(n int) PSServerOption {
	return func(s *PSServer) { s.chunk = clampChunk(n, DefaultChunkBytes) }
}

// NewPSServer returns a server for shard.
func NewPSServer(shard *paramserver.Local, opts ...PSServerOption) *PSServer {
	s := &PSServer{shard: shard, cfg: shard.S.Config(), chunk: DefaultChunkBytes}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Register registers s on r (a *grpc.Server).
func (s *PSServer) Register(r grpc.ServiceRegistrar) {
	paramserverv1.RegisterParameterServerServer(r, s)
}

// PSServerStats are the server's own counters, on top of the shard's.
type PSServerStats struct {
	// MalformedPushes counts push streams refused for breaking the chunking
	// rules; the shard never saw them, so its Stats do not count them.
	MalformedPushes int64
}

// Stats returns the server's counters.
func (s *PSServer) Stats() PSServerStats {
	return PSServerStats{MalformedPushes: s.malformed.Load()}
}

// Pull streams the shard's parameters at the requested version (waiting,
// bounded by the caller's deadline, while the shard is below it) in chunks
// of at most max_chunk_bytes, the buffers in the last chunk. When the last
// parameter chunk has no room left for the buffers they go in a final chunk
// of their own, with no parameter data. The chunks are read in place from
// the version's snapshot (paramserver.Shard.Snapshot), which every pull of
// it shares: the shard copies nothing per pull.
func (s *PSServer) Pull(req *paramserverv1.PullRequest, stream grpc.ServerStreamingServer[paramserverv1.PullChunk]) error {
	params, bufs, err := s.shard.S.Snapshot(stream.Context(), req.GetStep())
	if err != nil {
		return statusErr(err)
	}
	limit := clampChunk(int(req.GetMaxChunkBytes()), s.chunk)
	per := limit / 4
	n := len(params)
	bufBytes := encodeFloats(bufs)
	for off := 0; ; {
		end := min(off+per, n)
		c := &paramserverv1.PullChunk{Step: req.GetStep(), Offset: int64(off), Data: encodeFloats(params[off:end]), TotalElements: int64(n)}
		if end == n && (off == end || 4*(end-off)+len(bufBytes) <= limit) {
			c.Last, c.Buffers = true, bufBytes
		}
		if err := stream.Send(c); err != nil {
			return err
		}
		if c.Last {
			return nil
		}
		off = end
	}
}

// Push assembles one worker's gradient from a stream of chunks and hands it
// to the shard once the stream is complete and well formed. A stream that
// breaks the chunking rules is refused with INVALID_ARGUMENT naming the
// fault, and the shard is not called; nothing more than the shard's own
// range is ever allocated. The gradient is received into memory the shard
// lends (paramserver.Shard.GradientBuffer), bfloat16 values (encoding
// BF16) widened to float32 there, and handed over without a copy
// (PushOwned).
func (s *PSServer) Push(stream grpc.ClientStreamingServer[paramserverv1.PushChunk, paramserverv1.PushAck]) error {
	n := s.cfg.Hi - s.cfg.Lo
	var (
		step, total int64
		wk          int32
		enc         paramserverv1.GradientEncoding
		size        int // bytes per gradient element in enc
		grad, bufs  []float32
		started     bool
		last        bool
	)
	bad := func(format string, a ...any) error {
		s.malformed.Add(1)
		return malformed("push to shard %d: "+format, append([]any{s.cfg.Index}, a...)...)
	}
	grad = s.shard.S.GradientBuffer()
	for {
		c := &paramserverv1.PushChunk{Data: spareBytes(grad)} // the codec decodes the data in place
		err := stream.RecvMsg(c)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err // the caller went away; the partial push is discarded
		}
		if last {
			return bad("chunk at offset %d after the chunk marked last", c.GetOffset())
		}
		if !started {
			started = true
			step, wk, total, enc = c.GetStep(), c.GetWorker(), c.GetTotalElements(), c.GetEncoding()
			if total != int64(n) {
				return bad("total_elements %d, but the shard owns [%d,%d) = %d elements", total, s.cfg.Lo, s.cfg.Hi, n)
			}
			if size = elementBytes(enc); size == 0 {
				return bad("gradient encoding %d is not one this shard knows (%v, %v): run the same logitpair version on workers and shards", int32(enc), encodingFloat32, encodingBF16)
			}
		}
		switch {
		case c.GetStep() != step:
			return bad("chunk for step %d in a push for step %d: every chunk must carry the same step", c.GetStep(), step)
		case c.GetWorker() != wk:
			return bad("chunk from worker %d in a push from worker %d: every chunk must carry the same worker", c.GetWorker(), wk)
		case c.GetTotalElements() != total:
			return bad("chunk with total_elements %d in a push of %d: every chunk must carry the same total", c.GetTotalElements(), total)
		case c.GetEncoding() != enc:
			return bad("chunk in encoding %v in a push in %v: every chunk must carry the same encoding", c.GetEncoding(), enc)
		case c.GetOffset() != int64(len(grad)):
			return bad("chunk at offset %d, expected %d: chunks must cover [0, total_elements) in order, without gaps or overlaps", c.GetOffset(), len(grad))
		case len(c.GetData())%size != 0:
			return bad("chunk at offset %d has %d data bytes, not a multiple of %d (whole %v elements)", c.GetOffset(), len(c.GetData()), size, enc)
		case int64(len(grad))+int64(len(c.GetData())/size) > total:
			return bad("chunk at offset %d with %d elements runs past total_elements %d", c.GetOffset(), len(c.GetData())/size, total)
		case len(c.GetBuffers()) > 0 && !c.GetLast():
			return bad("buffers in the chunk at offset %d, which is not marked last", c.GetOffset())
		case len(c.GetBuffers())%4 != 0:
			return bad("%d buffer bytes, not a multiple of 4 (whole float32 elements)", len(c.GetBuffers()))
		}
		grad = landGradient(grad, c.GetData(), enc)
		if c.GetLast() {
			last = true
			bufs = appendFloats(make([]float32, 0, len(c.GetBuffers())/4), c.GetBuffers())
		}
	}
	switch {
	case !started:
		return bad("empty push stream")
	case !last:
		return bad("stream ended without a chunk marked last after %d of %d elements; the push is discarded", len(grad), total)
	case int64(len(grad)) != total:
		return bad("chunks cover [0,%d) of total_elements %d", len(grad), total)
	}
	if err := s.shard.S.PushOwned(step, int(wk), grad, bufs); err != nil {
		return statusErr(err)
	}
	return stream.SendAndClose(&paramserverv1.PushAck{Step: step, ShardVersion: step})
}

// Apply commits a step on the shard (idempotent for applied steps).
func (s *PSServer) Apply(ctx context.Context, req *paramserverv1.ApplyRequest) (*paramserverv1.ApplyResponse, error) {
	set := make([]int, len(req.GetWorkers()))
	for i, w := range req.GetWorkers() {
		set[i] = int(w)
	}
	if err := s.shard.Apply(ctx, req.GetStep(), set, req.GetLrScale()); err != nil {
		return nil, statusErr(err)
	}
	return &paramserverv1.ApplyResponse{Version: s.shard.S.Version()}, nil
}

// State reports the shard's range, version and counters. counters.rejected
// includes the malformed streams the shard never saw.
func (s *PSServer) State(_ context.Context, _ *paramserverv1.StateRequest) (*paramserverv1.ShardStatus, error) {
	st := s.shard.S.Stats()
	r := st.Rejected
	return &paramserverv1.ShardStatus{
		Shard: int32(s.cfg.Index), Lo: int64(s.cfg.Lo), Hi: int64(s.cfg.Hi), Version: st.Version,
		Counters: &paramserverv1.ShardCounters{
			Pushes: st.Accepted, Applied: st.Applied, DroppedStale: r.Stale, DroppedBackup: st.DroppedBackup,
			Rejected: r.Total() - r.Stale + s.malformed.Load(),
		},
	}, nil
}

// Checkpoint saves the shard's state (paramserver.Local.Checkpoint decides
// how). The request's dir is not used: the shard's StepStore decides where
// states go, and Restore finds them again by step, so the response's path
// is empty.
func (s *PSServer) Checkpoint(ctx context.Context, req *paramserverv1.CheckpointRequest) (*paramserverv1.CheckpointResponse, error) {
	if err := s.shard.Checkpoint(ctx, req.GetStep(), req.GetKeep()); err != nil {
		return nil, statusErr(err)
	}
	return &paramserverv1.CheckpointResponse{Step: req.GetStep()}, nil
}

// Restore loads the state the shard's store holds at the requested step
// (paramserver.Local.Restore). The request's path is not used (see
// Checkpoint).
func (s *PSServer) Restore(ctx context.Context, req *paramserverv1.RestoreRequest) (*paramserverv1.RestoreResponse, error) {
	if err := s.shard.Restore(ctx, req.GetStep()); err != nil {
		return nil, statusErr(err)
	}
	return &paramserverv1.RestoreResponse{Version: s.shard.S.Version()}, nil
}

// Held lists the versions whose saved state reads back intact.
func (s *PSServer) Held(ctx context.Context, _ *paramserverv1.HeldRequest) (*paramserverv1.HeldResponse, error) {
	steps, err := s.shard.Held(ctx)
	if err != nil {
		return nil, statusErr(err)
	}
	return &paramserverv1.HeldResponse{Steps: steps}, nil
}
