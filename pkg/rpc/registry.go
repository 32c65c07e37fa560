package rpc

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/tlsutil"
	"github.com/logitpair/logitpair/pkg/train"
)

// Roles of JoinRequest.role and of certificates (pkg/tlsutil owns the
// names; see MethodRoles).
const (
	RoleWorker      = tlsutil.RoleWorker
	RoleParamServer = tlsutil.RoleParamServer
	RoleCoordinator = tlsutil.RoleCoordinator
)

// RegistryConfig describes the run a Registry hands out.
type RegistryConfig struct {
	// Train is the run's training configuration, sent to every member as
	// JSON (Assignment.train_config_json); its Model and ModelConfig are
	// also sent as Assignment.model and model_config_json.
	Train train.Config
	// Layout is the run's shard layout (cluster.NewLayout): shard k owns
	// Layout.Shards[k] of the parameters and Layout.Ranges()[k] of the
	// buffers.
	Layout *cluster.Layout
	// Workers is W, backups included; Backups is b. Worker slots are
	// 0 … W−1; a step averages N = W − b gradients.
	Workers, Backups int
	// OnShardRestart, when set, is called with a shard's index when a shard
	// joins with an index that had joined before (a restarted shard, which
	// lost its state: the wiring calls coordinator.ShardRestarted). It runs
	// inside the shard's Join call, before the shard serves, so it must not
	// block: start the recovery in a goroutine.
	OnShardRestart func(index int)
	// Now is the clock of MemberStatus.last_seen_unix_ms (nil: time.Now).
	Now func() time.Time
}

// Validate checks the configuration.
func (c RegistryConfig) Validate() error {
	switch {
	case c.Workers < 1:
		return fmt.Errorf("rpc: registry: workers must be at least 1, got %d", c.Workers)
	case c.Backups < 0 || c.Backups >= c.Workers:
		return fmt.Errorf("rpc: registry: backups must be in [0, workers) = [0, %d), got %d", c.Workers, c.Backups)
	case c.Layout == nil || len(c.Layout.Shards) == 0:
		return fmt.Errorf("rpc: registry: no shard layout")
	}
	return nil
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

// Registry is the coordinator's membership table: it assigns worker slots,
// records the shards' addresses, and builds every member's Assignment. It
// is safe for concurrent use.
//
// A worker keeps its slot until it leaves (Leave) or membership declares it
// dead (Release). A shard's slot is its index; its address is kept until it
// joins again.
type Registry struct {
	cfg       RegistryConfig
	trainJSON string
	modelJSON string
	ranges    []*coordinatorv1.ShardInfo // without addresses

	mu         sync.Mutex
	workers    []member
	shards     []member
	generation int64
	onRestart  func(int)
}

// NewRegistry returns a registry for the run of cfg with no members.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tj, err := json.Marshal(cfg.Train)
	if err != nil {
		return nil, fmt.Errorf("rpc: registry: train config: %w", err)
	}
	r := &Registry{cfg: cfg, trainJSON: string(tj), onRestart: cfg.OnShardRestart,
		workers: make([]member, cfg.Workers), shards: make([]member, len(cfg.Layout.Shards))}
	if len(cfg.Train.ModelConfig) > 0 {
		mj, err := json.Marshal(cfg.Train.ModelConfig)
		if err != nil {
			return nil, fmt.Errorf("rpc: registry: model config: %w", err)
		}
		r.modelJSON = string(mj)
	}
	for k, rg := range cfg.Layout.Ranges() {
		r.ranges = append(r.ranges, &coordinatorv1.ShardInfo{Index: int32(k), Lo: int64(rg.Lo), Hi: int64(rg.Hi),
			BufferLo: int64(rg.BufLo), BufferHi: int64(rg.BufHi)})
	}
	if cfg.Now == nil {
		r.cfg.Now = time.Now
	}
	return r, nil
}

// SetOnShardRestart replaces RegistryConfig.OnShardRestart (for wiring that
// builds the coordinator after the registry).
func (r *Registry) SetOnShardRestart(fn func(index int)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onRestart = fn
}

// Workers returns W, backups included; Backups returns b.
func (r *Registry) Workers() int { return r.cfg.Workers }

// Backups returns b.
func (r *Registry) Backups() int { return r.cfg.Backups }

// Generation counts the changes of the shard map (a shard address that
// changed, a shard's first join included).
func (r *Registry) Generation() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.generation
}

// JoinWorker gives a worker a slot: preferred if it is in [0, W) and free,
// else the lowest free slot. It fails with RESOURCE_EXHAUSTED when every
// slot is held.
func (r *Registry) JoinWorker(preferred int, node string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	slot := -1
	if preferred >= 0 && preferred < len(r.workers) && !r.workers[preferred].held {
		slot = preferred
	} else {
		for s := range r.workers {
			if !r.workers[s].held {
				slot = s
				break
			}
		}
	}
	if slot < 0 {
		return -1, status.Errorf(codes.ResourceExhausted, "cluster full: all %d worker slots are taken", len(r.workers))
	}
	r.workers[slot] = member{held: true, node: node, lastStep: -1, lastSeen: r.cfg.Now()}
	return slot, nil
}

// JoinShard records shard index's address. When the index had joined
// before, the shard restarted: JoinShard returns restarted = true and calls
// the OnShardRestart callback (after releasing the registry's lock). A new
// address bumps the generation.
func (r *Registry) JoinShard(index int, address, node string) (restarted bool, err error) {
	switch {
	case index < 0 || index >= len(r.shards):
		return false, status.Errorf(codes.InvalidArgument, "shard index %d: the run has shards 0..%d (set preferred_slot to the shard's index)", index, len(r.shards)-1)
	case address == "":
		return false, status.Error(codes.InvalidArgument, "a shard must give the host:port it serves on as address")
	}
	r.mu.Lock()
	m := &r.shards[index]
	restarted = m.joined
	if m.address != address {
		r.generation++
	}
	*m = member{held: true, joined: true, node: node, address: address, lastStep: -1, lastSeen: r.cfg.Now(), unreachable: m.unreachable}
	fn := r.onRestart
	r.mu.Unlock()
	if restarted && fn != nil {
		fn(index)
	}
	return restarted, nil
}

// Release frees worker slot (a clean Leave, or membership declaring the
// worker dead); it reports whether the slot was held.
func (r *Registry) Release(slot int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if slot < 0 || slot >= len(r.workers) || !r.workers[slot].held {
		return false
	}
	r.workers[slot] = member{}
	return true
}

// LeaveShard marks shard index as gone; its address stays in the shard map
// until it joins again (which counts as a restart).
func (r *Registry) LeaveShard(index int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if index < 0 || index >= len(r.shards) || !r.shards[index].held {
		return false
	}
	r.shards[index].held = false
	return true
}

// SetShardReachable records what the coordinator's probe found of shard
// index: err nil when it answers. Members lists an unreachable shard as not
// live.
func (r *Registry) SetShardReachable(index int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if index < 0 || index >= len(r.shards) {
		return
	}
	r.shards[index].unreachable = ""
	if err != nil {
		r.shards[index].unreachable = err.Error()
	}
}

// Holds reports whether worker slot is held.
func (r *Registry) Holds(slot int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slot >= 0 && slot < len(r.workers) && r.workers[slot].held
}

// Seen records that worker slot was heard from, reporting step (−1: no
// report).
func (r *Registry) Seen(slot int, step int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if slot >= 0 && slot < len(r.workers) && r.workers[slot].held {
		r.workers[slot].lastSeen = r.cfg.Now()
		if step >= 0 {
			r.workers[slot].lastStep = step
		}
	}
}

// Assignment builds the assignment of role's slot: for a worker, the slot
// must be held (NOT_FOUND otherwise); for a shard, the slot is its index.
// generation is added to the registry's generation (pass the coordinator's
// rollback generation, so that Assignment.generation grows on a rollback
// too); startStep is the step to pull first.
func (r *Registry) Assignment(role string, slot int, startStep, generation int64) (*coordinatorv1.Assignment, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := &coordinatorv1.Assignment{
		Generation: r.generation + generation, WorkerSlot: -1,
		Workers: int32(r.cfg.Workers - r.cfg.Backups), Backups: int32(r.cfg.Backups),
		TrainConfigJson: r.trainJSON, StartStep: startStep, Model: r.cfg.Train.Model, ModelConfigJson: r.modelJSON,
	}
	switch role {
	case RoleWorker:
		if slot < 0 || slot >= len(r.workers) || !r.workers[slot].held {
			return nil, status.Errorf(codes.NotFound, "worker slot %d is not held: join again", slot)
		}
		a.WorkerSlot, a.DataShard, a.DataShards = int32(slot), int32(slot), int32(r.cfg.Workers)
	case RoleParamServer:
		if slot < 0 || slot >= len(r.shards) {
			return nil, status.Errorf(codes.NotFound, "shard %d: the run has shards 0..%d", slot, len(r.shards)-1)
		}
	default:
		return nil, badRole(role)
	}
	for k, rg := range r.ranges {
		a.Shards = append(a.Shards, &coordinatorv1.ShardInfo{Index: rg.Index, Lo: rg.Lo, Hi: rg.Hi,
			BufferLo: rg.BufferLo, BufferHi: rg.BufferHi, Address: r.shards[k].address})
	}
	return a, nil
}

// Members lists the members holding a slot, workers first, each by slot.
// last_step is a worker's last reported step (−1 for shards: their version
// is the shards' to tell).
func (r *Registry) Members() []*coordinatorv1.MemberStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*coordinatorv1.MemberStatus
	add := func(role string, slot int, m member) {
		ms := &coordinatorv1.MemberStatus{Role: role, Slot: int32(slot), Address: m.address, NodeName: m.node, Live: m.held && m.unreachable == "", LastStep: m.lastStep}
		if !m.lastSeen.IsZero() {
			ms.LastSeenUnixMs = m.lastSeen.UnixMilli()
		}
		out = append(out, ms)
	}
	for s, m := range r.workers {
		if m.held {
			add(RoleWorker, s, m)
		}
	}
	for k, m := range r.shards {
		if m.held {
			add(RoleParamServer, k, m)
		}
	}
	return out
}

func badRole(role string) error {
	return status.Errorf(codes.InvalidArgument, "role %q: want %q or %q", role, RoleWorker, RoleParamServer)
}
