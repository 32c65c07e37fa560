package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paramserverv1 "github.com/logitpair/logitpair/pkg/api/paramserver/v1"
	"github.com/logitpair/logitpair/pkg/optim"
)

// FetchState streams the shard's optimizer slots and EMA at version step
// (FAILED_PRECONDITION if the shard is elsewhere), each slot in chunks.
func (s *PSServer) FetchState(req *paramserverv1.FetchStateRequest, stream grpc.ServerStreamingServer[paramserverv1.StateChunk]) error {
	st := s.shard.S.Checkpoint()
	if st.Version != req.GetStep() {
		return status.Errorf(codes.FailedPrecondition, "fetch state of step %d: shard %d is at version %d", req.GetStep(), st.Index, st.Version)
	}
	slots := append([]optim.NamedState(nil), st.Optim...)
	if st.EMA != nil {
		slots = append(slots, optim.NamedState{Name: "ema", Data: st.EMA})
	}
	per := clampChunk(int(req.GetMaxChunkBytes()), s.chunk) / 4
	var chunks []*paramserverv1.StateChunk
	for _, ns := range slots {
		for off := 0; off == 0 || off < len(ns.Data); off += per {
			end := min(off+per, len(ns.Data))
			chunks = append(chunks, &paramserverv1.StateChunk{Step: st.Version, Optimizer: st.OptimKind, Slot: ns.Name,
				Offset: int64(off), Data: encodeFloats(ns.Data[off:end])})
			if end == len(ns.Data) {
				break
			}
		}
	}
	if len(chunks) == 0 { // plain SGD: no slots; still say which optimizer
		chunks = append(chunks, &paramserverv1.StateChunk{Step: st.Version, Optimizer: st.OptimKind})
	}
	chunks[len(chunks)-1].Last = true
	for _, c := range chunks {
		if err := stream.Send(c); err != nil {
			return err
		}
	}
	return nil
}

// FetchState returns the shard's optimizer kind and state slots (and "ema")
// at version step, each as long as the shard's range.
func (p *PSClient) FetchState(ctx context.Context, step int64) (string, []optim.NamedState, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p.c.FetchState(ctx, &paramserverv1.FetchStateRequest{Step: step, MaxChunkBytes: uint32(p.chunk)})
	if err != nil {
		return "", nil, p.wrap("fetch state", fromStatus(err))
	}
	var kind string
	var out []optim.NamedState
	last := false
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", nil, p.wrap("fetch state", fromStatus(err))
		}
		if last || c.GetStep() != step || len(c.GetData())%4 != 0 || (kind != "" && c.GetOptimizer() != kind) {
			return "", nil, fmt.Errorf("rpc: shard %d: fetch state of step %d: %w: inconsistent chunk", p.index, step, ErrMalformed)
		}
		kind, last = c.GetOptimizer(), c.GetLast()
		if c.GetSlot() == "" {
			continue
		}
		if len(out) == 0 || out[len(out)-1].Name != c.GetSlot() {
			if c.GetOffset() != 0 {
				return "", nil, fmt.Errorf("rpc: shard %d: %w: slot %s starts at offset %d", p.index, ErrMalformed, c.GetSlot(), c.GetOffset())
			}
			out = append(out, optim.NamedState{Name: c.GetSlot()})
		}
		cur := &out[len(out)-1]
		if c.GetOffset() != int64(len(cur.Data)) {
			return "", nil, fmt.Errorf("rpc: shard %d: %w: slot %s chunk at %d, expected %d", p.index, ErrMalformed, c.GetSlot(), c.GetOffset(), len(cur.Data))
		}
		cur.Data = appendFloats(cur.Data, c.GetData())
	}
	if !last {
		return "", nil, fmt.Errorf("rpc: shard %d: fetch state of step %d: %w: stream ended without its last chunk", p.index, step, ErrMalformed)
	}
	return kind, out, nil
}
