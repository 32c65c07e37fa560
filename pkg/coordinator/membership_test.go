package coordinator_test

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/coordinator"
)

// twoShards is a two-shard map of 10 + 6 parameters and 4 buffers (all on
// shard 0).
var twoShards = []coordinator.Range{{Lo: 0, Hi: 10, BufLo: 0, BufHi: 4}, {Lo: 10, Hi: 16}}

func newMembership(t *testing.T, workers, backups int, onRestart func(int), now func() time.Time) *coordinator.Membership {
	t.Helper()
	m, err := coordinator.NewMembership(coordinator.MembershipConfig{Workers: workers, Backups: backups, Ranges: twoShards,
		TrainConfigJSON: `{"model":"m"}`, Model: "m", ModelConfigJSON: `{"hidden":8}`, OnShardRestart: onRestart, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// wantErr fails unless err is of kind and its message contains every part.
func wantErr(t *testing.T, what string, err, kind error, parts ...string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: got %v, want %v", what, err, kind)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("%s: %q does not mention %q", what, err, p)
		}
	}
}

// TestMembershipWorkerSlots: a preferred free slot, else the lowest free
// one, ErrClusterFull when all are held; Release frees a slot once;
// CheckHeld and WorkerAssignment refuse a slot that is not held.
func TestMembershipWorkerSlots(t *testing.T) {
	m := newMembership(t, 3, 1, nil, nil)
	join := func(preferred int) int {
		t.Helper()
		s, err := m.JoinWorker(preferred, "node")
		if err != nil {
			t.Fatalf("join preferring %d: %v", preferred, err)
		}
		return s
	}
	if s := join(1); s != 1 {
		t.Fatalf("preferred free slot 1: got %d", s)
	}
	if s := join(-1); s != 0 {
		t.Fatalf("any slot: got %d, want the lowest free, 0", s)
	}
	if s := join(1); s != 2 {
		t.Fatalf("preferred slot 1 is taken: got %d, want the lowest free, 2", s)
	}
	_, err := m.JoinWorker(-1, "node")
	wantErr(t, "join of a full cluster", err, coordinator.ErrClusterFull, "cluster full: all 3 worker slots are taken")
	if !m.Release(1) || m.Release(1) {
		t.Fatal("Release of a held slot must report true once")
	}
	wantErr(t, "CheckHeld of a released slot", m.CheckHeld(1), coordinator.ErrSlotNotHeld, "worker slot 1", "join again")
	_, err = m.WorkerAssignment(1, 0, 0)
	wantErr(t, "assignment of a released slot", err, coordinator.ErrSlotNotHeld, "join again")
	for _, s := range []int{-1, 3} {
		wantErr(t, "CheckHeld out of range", m.CheckHeld(s), coordinator.ErrSlotNotHeld)
		if m.Release(s) {
			t.Fatalf("Release(%d) of a slot out of range reported true", s)
		}
	}
	if s := join(7); s != 1 {
		t.Fatalf("after Release(1): got slot %d, want 1", s)
	}
	if err := m.CheckHeld(1); err != nil {
		t.Fatal(err)
	}
}

// TestMembershipShards: a shard's index and address are required; the
// first join of each index and every new address bump the generation; a
// second join of an index is a restart and calls OnShardRestart (outside
// the lock: the callback may read the table); LeaveShard keeps the
// address.
func TestMembershipShards(t *testing.T) {
	var mu sync.Mutex
	var restarted []int
	var m *coordinator.Membership
	m = newMembership(t, 2, 0, func(k int) {
		m.Members() // would deadlock if called under the table's lock
		mu.Lock()
		defer mu.Unlock()
		restarted = append(restarted, k)
	}, nil)
	_, err := m.JoinShard(2, "h:1", "")
	wantErr(t, "shard index out of range", err, coordinator.ErrBadIndex, "shard index 2", "shards 0..1")
	_, err = m.JoinShard(-1, "h:1", "")
	wantErr(t, "negative shard index", err, coordinator.ErrBadIndex)
	_, err = m.JoinShard(0, "", "")
	wantErr(t, "shard without address", err, coordinator.ErrNoAddress, "address")
	if m.Generation() != 0 || len(m.Members()) != 0 {
		t.Fatalf("refused joins changed the table: generation %d, members %v", m.Generation(), m.Members())
	}
	if a, err := m.ShardAddress(0); a != "" || err != nil {
		t.Fatalf("address before the first join: %q, %v", a, err)
	}
	for k, addr := range []string{"ps-0:7070", "ps-1:7070"} {
		if re, err := m.JoinShard(k, addr, "n"); err != nil || re {
			t.Fatalf("first join of shard %d: restarted %v, %v", k, re, err)
		}
	}
	if m.Generation() != 2 {
		t.Fatalf("generation %d after two shards joined, want 2", m.Generation())
	}
	if re, err := m.JoinShard(1, "ps-1:7070", "n"); err != nil || !re { // restart, same address
		t.Fatalf("second join of shard 1: restarted %v, %v", re, err)
	}
	if re, err := m.JoinShard(0, "ps-0b:7070", "n"); err != nil || !re { // restart elsewhere
		t.Fatalf("second join of shard 0: restarted %v, %v", re, err)
	}
	mu.Lock()
	if !reflect.DeepEqual(restarted, []int{1, 0}) {
		t.Fatalf("restart callbacks %v, want [1 0]", restarted)
	}
	mu.Unlock()
	if m.Generation() != 3 {
		t.Fatalf("generation %d: only the moved shard's new address bumps it (want 3)", m.Generation())
	}
	if !m.LeaveShard(1) || m.LeaveShard(1) || m.LeaveShard(5) {
		t.Fatal("LeaveShard must report true once, and false for an unknown index")
	}
	if a, err := m.ShardAddress(1); a != "ps-1:7070" || err != nil {
		t.Fatalf("a shard that left keeps its address: %q, %v", a, err)
	}
	_, err = m.ShardAddress(2)
	wantErr(t, "address of an unknown shard", err, coordinator.ErrBadIndex)
	_, err = m.ShardAssignment(2, 0, 0)
	wantErr(t, "assignment of an unknown shard", err, coordinator.ErrBadIndex, "shards 0..1")
}

// TestMembershipAssignmentsAndMembers: the assignment a worker and a shard
// receive, the members list (workers first, each by slot) with last steps
// and times, and an unreachable shard listed as not live.
func TestMembershipAssignmentsAndMembers(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	now := t0
	m := newMembership(t, 3, 1, nil, func() time.Time { return now })
	for _, p := range []int{2, 1} {
		if _, err := m.JoinWorker(p, "w"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.JoinShard(0, "ps-0:1", "s0"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.JoinShard(1, "ps-1:1", "s1"); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(time.Minute)
	m.Seen(2, 7)
	m.Seen(1, -1) // heard from, no step
	m.Seen(0, 9)  // not held: ignored
	m.Seen(42, 9) // out of range: ignored
	m.SetShardReachable(1, errors.New("connection refused"))
	m.SetShardReachable(9, nil) // out of range: ignored

	a, err := m.WorkerAssignment(2, 5, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := coordinator.Assignment{Generation: 102, WorkerSlot: 2, Workers: 2, Backups: 1, DataShard: 2, DataShards: 3, StartStep: 5,
		TrainConfigJSON: `{"model":"m"}`, Model: "m", ModelConfigJSON: `{"hidden":8}`,
		Shards: []coordinator.ShardInfo{{Index: 0, Range: twoShards[0], Address: "ps-0:1"}, {Index: 1, Range: twoShards[1], Address: "ps-1:1"}}}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("worker assignment\n got %+v\nwant %+v", a, want)
	}
	s, err := m.ShardAssignment(1, 5, 100)
	if err != nil {
		t.Fatal(err)
	}
	want.WorkerSlot, want.DataShard, want.DataShards = -1, 0, 0
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("shard assignment\n got %+v\nwant %+v", s, want)
	}
	if !reflect.DeepEqual(m.ShardMap(), want.Shards) {
		t.Fatalf("shard map %+v", m.ShardMap())
	}

	got := m.Members()
	wantMembers := []coordinator.Member{
		{Kind: coordinator.KindWorker, Slot: 1, Node: "w", Live: true, LastStep: -1, LastSeen: t0.Add(time.Minute)},
		{Kind: coordinator.KindWorker, Slot: 2, Node: "w", Live: true, LastStep: 7, LastSeen: t0.Add(time.Minute)},
		{Kind: coordinator.KindShard, Slot: 0, Node: "s0", Address: "ps-0:1", Live: true, LastStep: -1, LastSeen: t0},
		{Kind: coordinator.KindShard, Slot: 1, Node: "s1", Address: "ps-1:1", Live: false, LastStep: -1, LastSeen: t0},
	}
	if !reflect.DeepEqual(got, wantMembers) {
		t.Fatalf("members\n got %+v\nwant %+v", got, wantMembers)
	}
	// The probe reaching the shard again, and a rejoin, keep it live; a
	// rejoin does not forget that it was unreachable.
	m.SetShardReachable(1, nil)
	if !m.Members()[3].Live {
		t.Fatal("a shard the probe reaches again is not live")
	}
	m.SetShardReachable(1, errors.New("down"))
	if _, err := m.JoinShard(1, "ps-1:1", "s1"); err != nil {
		t.Fatal(err)
	}
	if m.Members()[3].Live {
		t.Fatal("a rejoin cleared what the probe found")
	}
}

// TestMembershipConfigValidation: workers, backups and shards are checked
// with messages that name the field.
func TestMembershipConfigValidation(t *testing.T) {
	for _, c := range []struct {
		cfg  coordinator.MembershipConfig
		want string
	}{
		{coordinator.MembershipConfig{Workers: 0, Ranges: twoShards}, "workers must be at least 1"},
		{coordinator.MembershipConfig{Workers: 2, Backups: 2, Ranges: twoShards}, "backups must be in [0, workers)"},
		{coordinator.MembershipConfig{Workers: 2, Backups: -1, Ranges: twoShards}, "backups must be in [0, workers)"},
		{coordinator.MembershipConfig{Workers: 2}, "no shard ranges"},
	} {
		if _, err := coordinator.NewMembership(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error mentioning %q", c.cfg, err, c.want)
		}
	}
}
