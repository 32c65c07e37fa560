package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"

	paramserverv1 "github.com/logitpair/logitpair/pkg/api/paramserver/v1"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/wire"
	"github.com/logitpair/logitpair/pkg/worker"
)

// PSClient reaches one parameter-server shard over gRPC. It implements
// worker.Shard (Pull, Push) and coordinator.ShardClient (Apply, Version,
// Checkpoint, Restore). Errors from the shard come back as *RemoteError,
// which unwraps to the shard's *paramserver.Error: a caller tells a stale
// step by errors.Is(err, paramserver.ErrStale), exactly as in memory.
type PSClient struct {
	c      paramserverv1.ParameterServerClient
	index  int
	chunk  int
	slot   int32
	format wire.Format

	mu   sync.Mutex
	last []float32 // what the last Pull returned: the next decodes into its memory
}

var (
	_ worker.Shard            = (*PSClient)(nil)
	_ coordinator.ShardClient = (*PSClient)(nil)
)

// PSClientOption configures a PSClient.
type PSClientOption func(*PSClient)

// WithChunkBytes sets the chunk size of pushes and the max_chunk_bytes of
// pulls (default DefaultChunkBytes; clamped to [MinChunkBytes,
// MaxChunkBytes]).
func WithChunkBytes(n int) PSClientOption {
	return func(p *PSClient) { p.chunk = clampChunk(n, DefaultChunkBytes) }
}

// WithWireFormat sets the format of pushed gradients (default
// wire.Float32). With wire.BF16 every value is rounded to bfloat16
// (wire.BF16Bits) and sent in 2 bytes: the shard applies the rounded
// gradient, so a replay must round recomputed gradients the same way
// (wire.Format.Round). Buffers and pulls stay float32.
func WithWireFormat(f wire.Format) PSClientOption {
	return func(p *PSClient) { p.format = f }
}

// WithWorkerSlot sets the worker slot sent with pulls, for the shard's
// accounting and logs.
func WithWorkerSlot(slot int) PSClientOption {
	return func(p *PSClient) { p.slot = int32(slot) }
}

// NewPSClient returns a client of shard index over conn (a
// *grpc.ClientConn, or anything else that carries the calls).
func NewPSClient(conn grpc.ClientConnInterface, index int, opts ...PSClientOption) *PSClient {
	p := &PSClient{c: paramserverv1.NewParameterServerClient(conn), index: index, chunk: DefaultChunkBytes, slot: -1}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Index returns the shard's index.
func (p *PSClient) Index() int { return p.index }

// maxPrealloc bounds what Pull allocates up front on the server's word
// (total_elements); beyond it the vector grows as data arrives.
const maxPrealloc = 1 << 26

// Pull implements worker.Shard: the shard's parameters and buffers at
// version step, waiting (bounded by ctx) while the shard is below it. The
// stream is checked as the server checks pushes: one step and total,
// contiguous offsets, whole elements, the buffers in the last chunk.
//
// The parameters are valid until the next Pull on p, which decodes into
// their memory (a worker copies them into its model at once): a pull of a
// whole shard allocates nothing. Pulls at the same time are safe; each of
// them but one then decodes into new memory.
func (p *PSClient) Pull(ctx context.Context, step int64) (params, buffers []float32, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p.c.Pull(ctx, &paramserverv1.PullRequest{Step: step, Worker: p.slot, MaxChunkBytes: uint32(p.chunk)}, grpc.ForceCodecV2(chunkCodec{}))
	if err != nil {
		return nil, nil, p.wrap("pull", fromStatus(err))
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("rpc: shard %d: pull step %d: %w: %s", p.index, step, ErrMalformed, fmt.Sprintf(format, a...))
	}
	var (
		total int64
		last  bool
		first = true
	)
	for {
		c := &paramserverv1.PullChunk{Data: spareBytes(params)} // the codec decodes the data in place
		err := stream.RecvMsg(c)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, p.wrap("pull", fromStatus(err))
		}
		if first {
			first, total = false, c.GetTotalElements()
			if total < 0 {
				return nil, nil, bad("total_elements %d", total)
			}
			params = p.reuse(total)
		}
		switch {
		case last:
			return nil, nil, bad("chunk after the chunk marked last")
		case c.GetStep() != step:
			return nil, nil, bad("chunk of version %d", c.GetStep())
		case c.GetTotalElements() != total:
			return nil, nil, bad("total_elements changed from %d to %d", total, c.GetTotalElements())
		case c.GetOffset() != int64(len(params)):
			return nil, nil, bad("chunk at offset %d, expected %d", c.GetOffset(), len(params))
		case len(c.GetData())%4 != 0 || len(c.GetBuffers())%4 != 0:
			return nil, nil, bad("%d data and %d buffer bytes: not whole float32 elements", len(c.GetData()), len(c.GetBuffers()))
		case int64(len(params))+int64(len(c.GetData())/4) > total:
			return nil, nil, bad("chunk at offset %d runs past total_elements %d", c.GetOffset(), total)
		case len(c.GetBuffers()) > 0 && !c.GetLast():
			return nil, nil, bad("buffers in a chunk not marked last")
		}
		params = landFloats(params, c.GetData())
		if c.GetLast() {
			last = true
			buffers = appendFloats(make([]float32, 0, len(c.GetBuffers())/4), c.GetBuffers())
		}
	}
	if !last || int64(len(params)) != total {
		return nil, nil, bad("stream ended after %d of %d elements without its last chunk", len(params), total)
	}
	p.mu.Lock()
	p.last = params
	p.mu.Unlock()
	return params, buffers, nil
}

// reuse returns an empty vector for a pull of total elements: the memory of
// the last Pull's parameters when it has room (taken, so that a concurrent
// Pull cannot take it too), new memory otherwise.
func (p *PSClient) reuse(total int64) []float32 {
	p.mu.Lock()
	last := p.last
	p.last = nil
	p.mu.Unlock()
	if int64(cap(last)) >= total {
		return last[:0]
	}
	return make([]float32, 0, min(total, maxPrealloc))
}

// Push implements worker.Shard: it streams grad in chunks (buffers in the
// last one) in the client's wire format (WithWireFormat) and returns once
// the shard accepted the whole push.
func (p *PSClient) Push(ctx context.Context, step int64, w int, grad, buffers []float32) error {
	enc, ok := encodingOf(p.format)
	if !ok {
		return fmt.Errorf("rpc: shard %d: push: gradient wire format %v is not one the transport sends (%v, %v)", p.index, p.format, wire.Float32, wire.BF16)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p.c.Push(ctx, grpc.ForceCodecV2(chunkCodec{}))
	if err != nil {
		return p.wrap("push", fromStatus(err))
	}
	per := p.chunk / elementBytes(enc)
	var scratch []byte // bfloat16 chunks, reused: the codec copies a PushChunk's data as it is sent
	for off := 0; ; {
		end := min(off+per, len(grad))
		data := encodeGradient(scratch, grad[off:end], enc)
		if enc != encodingFloat32 {
			scratch = data
		}
		c := &paramserverv1.PushChunk{Step: step, Worker: int32(w), Offset: int64(off), Data: data, TotalElements: int64(len(grad)), Encoding: enc}
		if end == len(grad) {
			c.Last, c.Buffers = true, encodeFloats(buffers)
		}
		if err := stream.Send(c); err != nil {
			if errors.Is(err, io.EOF) {
				break // the server answered early; CloseAndRecv has its status
			}
			return p.wrap("push", fromStatus(err))
		}
		if c.Last {
			break
		}
		off = end
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return p.wrap("push", fromStatus(err))
	}
	return nil
}

// Apply implements coordinator.ShardClient.
func (p *PSClient) Apply(ctx context.Context, step int64, workers []int, lrScale float64) error {
	ws := make([]int32, len(workers))
	for i, w := range workers {
		ws[i] = int32(w)
	}
	_, err := p.c.Apply(ctx, &paramserverv1.ApplyRequest{Step: step, Workers: ws, LrScale: lrScale})
	return p.wrap("apply", fromStatus(err))
}

// State returns the shard's range, version and counters.
func (p *PSClient) State(ctx context.Context) (*paramserverv1.ShardStatus, error) {
	st, err := p.c.State(ctx, &paramserverv1.StateRequest{})
	return st, p.wrap("state", fromStatus(err))
}

// Version implements coordinator.ShardClient (through State).
func (p *PSClient) Version(ctx context.Context) (int64, error) {
	st, err := p.State(ctx)
	if err != nil {
		return 0, err
	}
	return st.GetVersion(), nil
}

// Checkpoint implements coordinator.ShardClient.
func (p *PSClient) Checkpoint(ctx context.Context, step int64, keep []int64) error {
	_, err := p.c.Checkpoint(ctx, &paramserverv1.CheckpointRequest{Step: step, Keep: keep})
	return p.wrap("checkpoint", fromStatus(err))
}

// Restore implements coordinator.ShardClient.
func (p *PSClient) Restore(ctx context.Context, step int64) error {
	_, err := p.c.Restore(ctx, &paramserverv1.RestoreRequest{Step: step})
	return p.wrap("restore", fromStatus(err))
}

// Held implements coordinator.ShardClient.
func (p *PSClient) Held(ctx context.Context) ([]int64, error) {
	r, err := p.c.Held(ctx, &paramserverv1.HeldRequest{})
	if err != nil {
		return nil, p.wrap("held", fromStatus(err))
	}
	return r.GetSteps(), nil
}

// wrap keeps a *RemoteError as it is (its message already names the shard
// when the shard answered) and prefixes anything else with the shard.
func (p *PSClient) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var re *RemoteError
	if errors.As(err, &re) {
		return err
	}
	return fmt.Errorf("rpc: shard %d: %s: %w", p.index, op, err)
}
