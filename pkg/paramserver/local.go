package paramserver

import (
	"context"
	"fmt"

	"github.com/logitpair/logitpair/pkg/optim"
)

// Local is a shard as the coordinator calls it, in the same process: a
// *Shard and the StepStore that holds its saved states per version. It
// implements coordinator.ShardClient (Apply, Version, Checkpoint, Restore,
// Held) and hands over its optimizer state for the coordinator's
// checkpoint (FetchState); rpc.PSServer serves one over gRPC, so its
// Checkpoint, Restore and Held decide for both. Workers reach the Shard
// itself (S): Pull, and Push.
type Local struct {
	S     *Shard
	Store StepStore
}

// NewLocal creates a shard and, when its store holds no intact saved state
// yet, saves the one it starts from (the initial parameters), so that every
// shard of a new run holds version 0 and a rollback before the first
// checkpoint returns to the start.
func NewLocal(cfg ShardConfig, init []float32, store StepStore) (*Local, error) {
	s, err := NewShard(cfg, init, store)
	if err != nil {
		return nil, err
	}
	if held, err := store.Held(cfg.Index); err != nil {
		return nil, err
	} else if len(held) == 0 {
		if err := s.Save(); err != nil {
			return nil, err
		}
	}
	return &Local{S: s, Store: store}, nil
}

// Held implements coordinator.ShardClient: the versions whose saved state
// reads back intact, newest first.
func (l *Local) Held(context.Context) ([]int64, error) {
	return l.Store.Held(l.S.Config().Index)
}

// Apply implements coordinator.ShardClient: Shard.ApplyScaled.
func (l *Local) Apply(_ context.Context, step int64, workers []int, lrScale float64) error {
	return l.S.ApplyScaled(step, workers, lrScale)
}

// Version implements coordinator.ShardClient.
func (l *Local) Version(context.Context) (int64, error) { return l.S.Version(), nil }

// Checkpoint implements coordinator.ShardClient: it saves the shard's state,
// which must be at version step (an *Error of kind ErrStale or ErrFuture
// otherwise, so that a checkpoint taken on every shard is consistent), and
// prunes old versions except those in keep (StepStore.SaveKeeping).
func (l *Local) Checkpoint(_ context.Context, step int64, keep []int64) error {
	if v := l.S.Version(); v != step {
		kind := ErrStale
		if step > v {
			kind = ErrFuture
		}
		return &Error{Op: "checkpoint", Kind: kind, Shard: l.S.Config().Index, Step: step, Version: v, Worker: -1,
			Detail: "a checkpoint is taken at the shard's current version"}
	}
	if err := l.Store.SaveKeeping(l.S.Checkpoint(), keep); err != nil {
		return fmt.Errorf("paramserver: shard %d: checkpoint of step %d: %w", l.S.Config().Index, step, err)
	}
	return nil
}

// Restore implements coordinator.ShardClient: it loads the state saved at
// step (an *Error of kind ErrRestore when there is none or it does not fit).
func (l *Local) Restore(_ context.Context, step int64) error {
	idx := l.S.Config().Index
	st, ok, err := l.Store.LoadStep(idx, step)
	if err != nil {
		return &Error{Op: "restore", Kind: ErrRestore, Shard: idx, Step: step, Version: l.S.Version(), Worker: -1,
			Detail: fmt.Sprintf("the saved state does not read back: %v", err)}
	}
	if !ok {
		return &Error{Op: "restore", Kind: ErrRestore, Shard: idx, Step: step, Version: l.S.Version(), Worker: -1,
			Detail: "no saved state at this step"}
	}
	return l.S.Restore(st)
}

// FetchState returns the shard's optimizer slots and its EMA (as the slot
// "ema") at version step: what the coordinator's checkpoint in local
// training's format needs (cluster.ModelWriter).
func (l *Local) FetchState(_ context.Context, step int64) (string, []optim.NamedState, error) {
	st := l.S.Checkpoint()
	if st.Version != step {
		return "", nil, fmt.Errorf("state of step %d requested at version %d", step, st.Version)
	}
	slots := st.Optim
	if st.EMA != nil {
		slots = append(slots, optim.NamedState{Name: "ema", Data: st.EMA})
	}
	return st.OptimKind, slots, nil
}
