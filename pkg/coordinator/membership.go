package coordinator

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Membership errors. Every error a Membership returns is one of these kinds
// (errors.Is) with a message naming the slot or shard; pkg/rpc turns the
// kind into a status code.
var (
	// ErrClusterFull: every worker slot is held.
	ErrClusterFull = errors.New("cluster full")
	// ErrSlotNotHeld: the worker slot is not held (never joined, left, or
	// released after gossip declared its worker dead): join again.
	ErrSlotNotHeld = errors.New("worker slot is not held")
	// ErrBadIndex: no shard has this index.
	ErrBadIndex = errors.New("no shard with this index")
	// ErrNoAddress: a shard joined without the address it serves on.
	ErrNoAddress = errors.New("shard without an address")
)

// membershipError is an error of one of the kinds above with its own
// message.
type membershipError struct {
	kind error
	msg  string
}

func (e *membershipError) Error() string { return e.msg }
func (e *membershipError) Unwrap() error { return e.kind }

func membershipErrorf(kind error, format string, args ...any) error {
	return &membershipError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Range is the part of the flat parameter vector, [Lo, Hi), and of the
// flat buffer vector, [BufLo, BufHi), that one shard owns.
type Range struct{ Lo, Hi, BufLo, BufHi int }

// MembershipConfig describes the run a Membership hands out.
type MembershipConfig struct {
	// Workers is W, backups included; Backups is b. Worker slots are
	// 0 … W−1; a step averages N = W − b gradients.
	Workers, Backups int
	// Ranges are the shards' ranges: shard k owns Ranges[k].
	Ranges []Range
	// TrainConfigJSON, Model and ModelConfigJSON describe the run to every
	// member, unchanged (the training configuration as JSON, the model's
	// name and its configuration as JSON); the membership does not read
	// them.
	TrainConfigJSON, Model, ModelConfigJSON string
	// OnShardRestart, when set, is called with a shard's index when a shard
	// joins with an index that had joined before (a restarted shard, which
	// lost its state: the wiring calls Coordinator.ShardRestarted). It runs
	// inside the shard's JoinShard call, before the shard serves, so it must
	// not block: start the recovery in a goroutine.
	OnShardRestart func(index int)
	// Now is the clock of Member.LastSeen (nil: time.Now).
	Now func() time.Time
}

// Validate checks the configuration.
func (c MembershipConfig) Validate() error {
	switch {
	case c.Workers < 1:
		return fmt.Errorf("coordinator: membership: workers must be at least 1, got %d", c.Workers)
	case c.Backups < 0 || c.Backups >= c.Workers:
		return fmt.Errorf("coordinator: membership: backups must be in [0, workers) = [0, %d), got %d", c.Workers, c.Backups)
	case len(c.Ranges) == 0:
		return fmt.Errorf("coordinator: membership: no shard ranges (the run needs at least one shard)")
	}
	return nil
}

// MemberKind says whether a member is a worker or a shard.
type MemberKind int

// The kinds of members.
const (
	KindWorker MemberKind = iota
	KindShard
)

func (k MemberKind) String() string {
	if k == KindShard {
		return "shard"
	}
	return "worker"
}

// Member is one member holding a slot, as Members lists it.
type Member struct {
	Kind MemberKind
	// Slot is a worker's slot or a shard's index.
	Slot int
	// Node is the name the member joined with; Address the host:port a
	// shard serves on ("" for workers).
	Node, Address string
	// Live: held, and for a shard reachable by the coordinator's probe.
	Live bool
	// LastStep is a worker's last reported step (−1: none yet; always −1
	// for shards, whose version is theirs to tell).
	LastStep int64
	// LastSeen is when a worker last reported, or when the member joined.
	LastSeen time.Time
}

// ShardInfo is shard Index's range and the address it last joined with
// ("" before its first join).
type ShardInfo struct {
	Index int
	Range
	Address string
}

// Assignment is what a member is told when it joins or asks again.
type Assignment struct {
	// Generation counts the changes of the shard map plus the generation
	// the caller passed (see WorkerAssignment).
	Generation int64
	// WorkerSlot is the worker's slot (−1 for a shard).
	WorkerSlot int
	// Workers is N = W − b, the gradients a step averages; Backups is b.
	Workers, Backups int
	// DataShard of DataShards is the part of the training data a worker
	// reads (its slot of W); 0 of 0 for a shard.
	DataShard, DataShards int
	// StartStep is the step to pull first.
	StartStep int64
	// The run (MembershipConfig).
	TrainConfigJSON, Model, ModelConfigJSON string
	// Shards is the shard map, every shard in index order.
	Shards []ShardInfo
}

type member struct {
	held     bool
	node     string
	address  string // shards
	joined   bool   // shards: has joined at least once
	lastStep int64
	lastSeen time.Time
	// unreachable: a shard the coordinator's probe cannot reach (why).
	unreachable string
}

// Membership is the coordinator's membership table: it assigns worker
// slots, records the shards' addresses, and builds every member's
// Assignment. It is a plain state machine (no transport: pkg/rpc serves it)
// and safe for concurrent use.
//
// A worker keeps its slot until it leaves (Release on its Leave) or the
// coordinator drops it (Hooks.Release). A shard's slot is its index; its
// address is kept until it joins again.
type Membership struct {
	cfg MembershipConfig

	mu         sync.Mutex
	workers    []member
	shards     []member
	generation int64
}

// NewMembership returns a membership table for the run of cfg with no
// members.
func NewMembership(cfg MembershipConfig) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Ranges = append([]Range(nil), cfg.Ranges...)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Membership{cfg: cfg, workers: make([]member, cfg.Workers), shards: make([]member, len(cfg.Ranges))}, nil
}

// Workers returns W, backups included.
func (m *Membership) Workers() int { return m.cfg.Workers }

// Backups returns b.
func (m *Membership) Backups() int { return m.cfg.Backups }

// Shards returns the number of shards.
func (m *Membership) Shards() int { return len(m.cfg.Ranges) }

// Generation counts the changes of the shard map (a shard address that
// changed, a shard's first join included).
func (m *Membership) Generation() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.generation
}

// JoinWorker gives a worker a slot: preferred if it is in [0, W) and free,
// else the lowest free slot. It fails with ErrClusterFull when every slot
// is held.
func (m *Membership) JoinWorker(preferred int, node string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	slot := -1
	if preferred >= 0 && preferred < len(m.workers) && !m.workers[preferred].held {
		slot = preferred
	} else {
		for s := range m.workers {
			if !m.workers[s].held {
				slot = s
				break
			}
		}
	}
	if slot < 0 {
		return -1, membershipErrorf(ErrClusterFull, "cluster full: all %d worker slots are taken", len(m.workers))
	}
	m.workers[slot] = member{held: true, node: node, lastStep: -1, lastSeen: m.cfg.Now()}
	return slot, nil
}

// JoinShard records shard index's address (ErrBadIndex, ErrNoAddress for a
// bad request). When the index had joined before, the shard restarted:
// JoinShard returns restarted = true and calls OnShardRestart (after
// releasing the table's lock). A new address bumps the generation.
func (m *Membership) JoinShard(index int, address, node string) (restarted bool, err error) {
	if err := m.checkIndex(index); err != nil {
		return false, err
	}
	if address == "" {
		return false, membershipErrorf(ErrNoAddress, "a shard must give the host:port it serves on as address")
	}
	m.mu.Lock()
	s := &m.shards[index]
	restarted = s.joined
	if s.address != address {
		m.generation++
	}
	*s = member{held: true, joined: true, node: node, address: address, lastStep: -1, lastSeen: m.cfg.Now(), unreachable: s.unreachable}
	fn := m.cfg.OnShardRestart
	m.mu.Unlock()
	if restarted && fn != nil {
		fn(index)
	}
	return restarted, nil
}

func (m *Membership) checkIndex(index int) error {
	if index < 0 || index >= len(m.cfg.Ranges) {
		return membershipErrorf(ErrBadIndex, "shard index %d: the run has shards 0..%d", index, len(m.cfg.Ranges)-1)
	}
	return nil
}

// Release frees worker slot (a clean leave, or the coordinator dropping the
// worker); it reports whether the slot was held.
func (m *Membership) Release(slot int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if slot < 0 || slot >= len(m.workers) || !m.workers[slot].held {
		return false
	}
	m.workers[slot] = member{}
	return true
}

// LeaveShard marks shard index as gone; its address stays in the shard map
// until it joins again (which counts as a restart). It reports whether the
// shard had joined.
func (m *Membership) LeaveShard(index int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if index < 0 || index >= len(m.shards) || !m.shards[index].held {
		return false
	}
	m.shards[index].held = false
	return true
}

// SetShardReachable records what the coordinator's probe found of shard
// index: err nil when it answers. Members lists an unreachable shard as not
// live.
func (m *Membership) SetShardReachable(index int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if index < 0 || index >= len(m.shards) {
		return
	}
	m.shards[index].unreachable = ""
	if err != nil {
		m.shards[index].unreachable = err.Error()
	}
}

// CheckHeld returns nil when worker slot is held, else ErrSlotNotHeld.
func (m *Membership) CheckHeld(slot int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.checkHeld(slot)
}

func (m *Membership) checkHeld(slot int) error {
	if slot < 0 || slot >= len(m.workers) || !m.workers[slot].held {
		return membershipErrorf(ErrSlotNotHeld, "worker slot %d is not held: join again", slot)
	}
	return nil
}

// Seen records that worker slot was heard from, reporting step (−1: no
// report).
func (m *Membership) Seen(slot int, step int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if slot >= 0 && slot < len(m.workers) && m.workers[slot].held {
		m.workers[slot].lastSeen = m.cfg.Now()
		if step >= 0 {
			m.workers[slot].lastStep = step
		}
	}
}

// WorkerAssignment builds the assignment of worker slot, which must be held
// (ErrSlotNotHeld). generation is added to the shard map's generation (pass
// the coordinator's, so that Assignment.Generation grows on a rollback
// too); startStep is the step to pull first.
func (m *Membership) WorkerAssignment(slot int, startStep, generation int64) (Assignment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkHeld(slot); err != nil {
		return Assignment{}, err
	}
	a := m.assignment(startStep, generation)
	a.WorkerSlot, a.DataShard, a.DataShards = slot, slot, m.cfg.Workers
	return a, nil
}

// ShardAssignment builds the assignment of shard index (ErrBadIndex if the
// run has no such shard), as WorkerAssignment.
func (m *Membership) ShardAssignment(index int, startStep, generation int64) (Assignment, error) {
	if err := m.checkIndex(index); err != nil {
		return Assignment{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.assignment(startStep, generation), nil
}

func (m *Membership) assignment(startStep, generation int64) Assignment {
	return Assignment{
		Generation: m.generation + generation, WorkerSlot: -1,
		Workers: m.cfg.Workers - m.cfg.Backups, Backups: m.cfg.Backups, StartStep: startStep,
		TrainConfigJSON: m.cfg.TrainConfigJSON, Model: m.cfg.Model, ModelConfigJSON: m.cfg.ModelConfigJSON,
		Shards: m.shardMap(),
	}
}

// ShardMap returns every shard with its range and the address it last
// joined with.
func (m *Membership) ShardMap() []ShardInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.shardMap()
}

func (m *Membership) shardMap() []ShardInfo {
	out := make([]ShardInfo, len(m.cfg.Ranges))
	for k, r := range m.cfg.Ranges {
		out[k] = ShardInfo{Index: k, Range: r, Address: m.shards[k].address}
	}
	return out
}

// ShardAddress returns the address shard index last joined with ("" before
// its first join; ErrBadIndex if the run has no such shard).
func (m *Membership) ShardAddress(index int) (string, error) {
	if err := m.checkIndex(index); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.shards[index].address, nil
}

// Members lists the members holding a slot, workers first, each by slot.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Member
	for s, w := range m.workers {
		if w.held {
			out = append(out, Member{Kind: KindWorker, Slot: s, Node: w.node, Live: true, LastStep: w.lastStep, LastSeen: w.lastSeen})
		}
	}
	for k, sh := range m.shards {
		if sh.held {
			out = append(out, Member{Kind: KindShard, Slot: k, Node: sh.node, Address: sh.address,
				Live: sh.unreachable == "", LastStep: sh.lastStep, LastSeen: sh.lastSeen})
		}
	}
	return out
}
