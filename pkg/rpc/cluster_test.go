package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data/datatest"

	"google.golang.org/grpc/test/bufconn"

	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/cluster/clustertest"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// grpcCluster is clustertest.NewInProcess with every call going through gRPC
// over bufconn: shard servers, a coordinator server, and workers built
// only from what Join gave them, each with its own connections.
type grpcCluster struct {
	cfg     train.Config
	layout  *cluster.Layout
	shards  []*paramserver.Local
	clients []*PSClient // the coordinator's
	coord   *coordinator.Coordinator
	log     paramserver.CommitLog
	members *coordinator.Membership
	admin   *CoordClient
	work    []*worker.Worker
}

const testToken = "cluster-token"

func newGRPCCluster(t *testing.T, ctx context.Context, cfg train.Config, workers, backups, shards int) *grpcCluster {
	t.Helper()
	backend := func() tensor.Backend { return cpu.New(cpu.Options{Threads: 1}) }
	l, _, err := cluster.NewLayout(backend(), cfg, shards)
	if err != nil {
		t.Fatal(err)
	}
	g := &grpcCluster{cfg: cfg, layout: l, log: paramserver.NewMemLog()}

	// Shard servers, reachable by "address" through bufconn.
	listeners := map[string]*bufconn.Listener{}
	coordShards := make([]coordinator.ShardClient, shards)
	for k := 0; k < shards; k++ {
		sc, init, err := l.ShardConfig(cfg, k, workers)
		if err != nil {
			t.Fatal(err)
		}
		ls, err := paramserver.NewLocal(sc, init, paramserver.NewMemStepStore())
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("ps-%d:7070", k)
		listeners[addr] = serve(t, TokenAuth(testToken), NewPSServer(ls).Register)
		g.shards = append(g.shards, ls)
		g.clients = append(g.clients, NewPSClient(dial(t, listeners[addr], WithToken(testToken)), k))
		coordShards[k] = g.clients[k]
	}

	// The coordinator and its server.
	if g.coord, err = coordinator.New(ctx, clustertest.DefaultCoordinatorConfig(cfg, workers, backups), g.log, &checkpoint.MemRecord{}, coordShards, coordinator.Hooks{}, nil); err != nil {
		t.Fatal(err)
	}
	mc, err := NewMembershipConfig(cfg, l.Ranges(), workers, backups)
	if err != nil {
		t.Fatal(err)
	}
	if g.members, err = coordinator.NewMembership(mc); err != nil {
		t.Fatal(err)
	}
	coordLis := serve(t, TokenAuth(testToken), NewCoordServer(lateOf(g.coord), g.members).Register)
	g.admin = NewCoordClient(dial(t, coordLis, WithToken(testToken)))
	for k := 0; k < shards; k++ {
		if _, err := g.admin.Join(ctx, RoleParamServer, k, fmt.Sprintf("ps-%d:7070", k), fmt.Sprintf("node-ps-%d", k)); err != nil {
			t.Fatal(err)
		}
	}

	// Workers: join, then build everything from the assignment.
	for w := 0; w < workers; w++ {
		cc := NewCoordClient(dial(t, coordLis, WithToken(testToken)))
		resp, err := cc.Join(ctx, RoleWorker, w, "", fmt.Sprintf("node-w-%d", w))
		if err != nil {
			t.Fatal(err)
		}
		a, slot := resp.GetAssignment(), int(resp.GetSlot())
		var wcfg train.Config
		if err := json.Unmarshal([]byte(a.GetTrainConfigJson()), &wcfg); err != nil {
			t.Fatal(err)
		}
		wcfg.WeightDecay = 0 // the shards add it after averaging
		m, err := models.New(backend(), a.GetModel(), wcfg.ModelConfig)
		if err != nil {
			t.Fatal(err)
		}
		tw, err := train.NewWorker(wcfg, m, data.NewLoader(datatest.Synthetic(64, 5), data.LoaderOptions{Seed: uint64(wcfg.Seed)}))
		if err != nil {
			t.Fatal(err)
		}
		var ws []worker.Shard
		var ranges []worker.Range
		for _, si := range a.GetShards() {
			lis, ok := listeners[si.GetAddress()]
			if !ok {
				t.Fatalf("assignment names shard %d at %q", si.GetIndex(), si.GetAddress())
			}
			format, err := wcfg.Wire()
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, NewPSClient(dial(t, lis, WithToken(testToken)), int(si.GetIndex()), WithWorkerSlot(slot), WithWireFormat(format)))
			ranges = append(ranges, worker.Range{Lo: int(si.GetLo()), Hi: int(si.GetHi()), BufLo: int(si.GetBufferLo()), BufHi: int(si.GetBufferHi())})
		}
		wk, err := worker.New(worker.Config{Slot: slot, Workers: int(a.GetWorkers() + a.GetBackups()), Steps: wcfg.Steps}, worker.Train(tw), ws, ranges, cc, nil)
		if err != nil {
			t.Fatal(err)
		}
		g.work = append(g.work, wk)
	}
	return g
}

// run runs the coordinator and the workers until the run is done.
func (g *grpcCluster) run(ctx context.Context) error { return clustertest.RunAll(ctx, g.coord, g.work) }

// params pulls the final parameters of every shard over gRPC.
func (g *grpcCluster) params(ctx context.Context) ([]float32, error) {
	out := make([]float32, g.layout.Params.Total)
	for k, c := range g.clients {
		v, err := c.Version(ctx)
		if err != nil {
			return nil, err
		}
		p, _, err := c.Pull(ctx, v)
		if err != nil {
			return nil, err
		}
		copy(out[g.layout.Shards[k].Lo:g.layout.Shards[k].Hi], p)
	}
	return out, nil
}

// TestClusterOverGRPCEqualsInProcess: one worker, no backup, two shards,
// everything over gRPC (chunked pulls and pushes, reports, long-polls,
// Apply and the final checkpoint) gives bit-identical parameters to the
// in-process cluster, which itself equals local training.
//
// With --wire-format bf16 the pushes carry 2-byte values and the result
// is still the in-process cluster's, whose workers round their gradients
// the same way (train.Worker), bit for bit.
func TestClusterOverGRPCEqualsInProcess(t *testing.T) {
	for _, format := range []string{"float32", "bf16"} {
		t.Run(format, func(t *testing.T) { clusterOverGRPCEqualsInProcess(t, format) })
	}
}

func clusterOverGRPCEqualsInProcess(t *testing.T, format string) {
	ctx := ctxFor(t, 3*time.Minute)
	cfg := tinyConfig(t)
	cfg.WireFormat = format
	g := newGRPCCluster(t, ctx, cfg, 1, 0, 2)
	if err := g.run(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := g.params(ctx)
	if err != nil {
		t.Fatal(err)
	}

	ref, err := clustertest.NewInProcess(ctx, cfg, clustertest.Options{Workers: 1, Shards: 2,
		Data:    data.NewLoader(datatest.Synthetic(64, 5), data.LoaderOptions{Seed: uint64(cfg.Seed)}),
		Backend: func(int) tensor.Backend { return cpu.New(cpu.Options{Threads: 1}) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want, err := ref.Params(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sameBits(t, "gRPC cluster vs in-process cluster", got, want)
	moved := 0
	for i := range got {
		if got[i] != g.layout.Init[i] {
			moved++
		}
	}
	if moved < len(got)/2 {
		t.Fatalf("only %d of %d parameters changed in %d steps", moved, len(got), cfg.Steps)
	}
	entries, _ := g.log.Entries()
	if len(entries) != int(cfg.Steps) {
		t.Fatalf("commit log has %d entries, want %d", len(entries), cfg.Steps)
	}
	if st := g.coord.Status(); !st.Done || st.LastCheckpoint != cfg.Steps {
		t.Fatalf("coordinator status %+v", st)
	}
}

// TestClusterOverGRPCWithBackup: W = 3 workers with b = 1 backup over gRPC
// complete K steps with one log entry per step, each of N = 2 workers, and
// every shard applied exactly K steps; Status over gRPC lists every member.
func TestClusterOverGRPCWithBackup(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	cfg := tinyConfig(t)
	g := newGRPCCluster(t, ctx, cfg, 3, 1, 2)
	if err := g.run(ctx); err != nil {
		t.Fatal(err)
	}
	entries, _ := g.log.Entries()
	if len(entries) != int(cfg.Steps) {
		t.Fatalf("%d log entries for %d steps", len(entries), cfg.Steps)
	}
	for i, e := range entries {
		if e.Step != int64(i) || len(e.Workers) != 2 || e.Workers[0] >= e.Workers[1] || e.Workers[1] > 2 {
			t.Fatalf("entry %d: step %d with workers %v, want step %d with 2 distinct workers", i, e.Step, e.Workers, i)
		}
	}
	for k, s := range g.shards {
		st := s.S.Stats()
		if st.Applied != cfg.Steps || st.Used != 2*cfg.Steps || st.Rejected.Total() != st.Rejected.Stale {
			t.Fatalf("shard %d: %+v", k, st)
		}
	}
	cs, err := g.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Step != cfg.Steps || cs.Required != 2 || len(cs.Members) != 5 || cs.Members[0].Role != RoleWorker || cs.Members[4].Address != "ps-1:7070" {
		t.Fatalf("status %v", cs)
	}
	reported := 0
	for w, m := range cs.Members[:3] {
		if int(m.Slot) != w || m.NodeName != fmt.Sprintf("node-w-%d", w) || !m.Live || m.LastSeenUnixMs == 0 {
			t.Fatalf("worker member %v", m)
		}
		if m.LastStep >= 0 { // a worker that was always the straggler never reported
			reported++
		}
	}
	if reported < 2 {
		t.Fatalf("only %d workers reported a step: %v", reported, cs.Members)
	}
	// Workers leave cleanly; their slots are free again.
	for w := 0; w < 3; w++ {
		if err := g.admin.Leave(ctx, RoleWorker, w); err != nil {
			t.Fatal(err)
		}
	}
	if ms := g.members.Members(); len(ms) != 2 {
		t.Fatalf("members after the workers left: %v", ms)
	}
}
