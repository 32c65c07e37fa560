package paramserver

import (
	"slices"
	"sync"

	"github.com/logitpair/logitpair/pkg/optim"
)

// Store persists shard checkpoints. NewShard loads from it, Shard.Save
// writes to it; the cluster's implementation writes files (the model's
// safetensors plus the optimizer state), tests use MemStore.
type Store interface {
	// Load returns the latest saved state of shard index; ok is false when
	// there is none.
	Load(index int) (state ShardState, ok bool, err error)
	// Save records st as the latest state of shard st.Index.
	Save(st ShardState) error
}

// MemStore is an in-memory Store, safe for concurrent use. It keeps deep
// copies, so a saved state cannot change under it.
type MemStore struct {
	mu     sync.Mutex
	states map[int]ShardState
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{states: make(map[int]ShardState)} }

// Load returns a copy of the saved state of shard index.
func (m *MemStore) Load(index int) (ShardState, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.states[index]
	if !ok {
		return ShardState{}, false, nil
	}
	return st.Clone(), true, nil
}

// Save keeps a copy of st.
func (m *MemStore) Save(st ShardState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.states[st.Index] = st.Clone()
	return nil
}

// Clone returns a deep copy of st.
func (st ShardState) Clone() ShardState {
	c := st
	c.Params = slices.Clone(st.Params)
	c.Buffers = slices.Clone(st.Buffers)
	c.EMA = slices.Clone(st.EMA)
	c.Optim = nil
	for _, ns := range st.Optim {
		c.Optim = append(c.Optim, optim.NamedState{Name: ns.Name, Data: slices.Clone(ns.Data)})
	}
	return c
}
