package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/oklog/run"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/membership"
	"github.com/logitpair/logitpair/pkg/metrics"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
)

// ParamServerOptions configures RunParamServer.
type ParamServerOptions struct {
	Common
	Coordinator string
	Listen      string
	// Advertise is the address the coordinator and workers reach this
	// shard at (a pod's DNS name, a compose service name). Empty: the
	// listen address, with this host's name when it listens on all
	// interfaces.
	Advertise string
	Dir       string
	Index     int
}

// shardRejoinEvery is how often a shard checks that the coordinator still
// lists it (rpc.KeepShardJoined).
const shardRejoinEvery = 2 * time.Second

// advertiseAddr is the address a server listening on ln tells its peers.
func advertiseAddr(advertise string, ln net.Addr) (string, error) {
	if advertise != "" {
		if _, _, err := net.SplitHostPort(advertise); err != nil {
			return "", fmt.Errorf("--advertise %q: %w", advertise, err)
		}
		return advertise, nil
	}
	host, port, err := net.SplitHostPort(ln.String())
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("listening on all interfaces and no --advertise: %w", err)
		}
		return net.JoinHostPort(h, port), nil
	}
	return ln.String(), nil
}

// RunParamServer runs shard Index until ctx ends.
func RunParamServer(ctx context.Context, o ParamServerOptions, log *zap.Logger) error {
	// Flags.
	if err := o.initTransport(log, rpc.RoleParamServer); err != nil {
		return err
	}

	// Components: the listener (its address is what the shard joins with),
	// the HTTP endpoint, the coordinator's assignment (which says what this
	// shard holds), the shard over its file store, its gRPC service, gossip.
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	promReg := metrics.NewRegistry()
	sm, err := metrics.NewShard(promReg, o.Index)
	if err != nil {
		return err
	}
	var ready atomic.Bool // joined, serving
	hs, err := startHTTP(ctx, o.HTTPListen, promReg, ready.Load, nil, log)
	if err != nil {
		return err
	}
	defer hs.Close()
	name := memberName(fmt.Sprintf("ps-%d", o.Index))
	addr, err := advertiseAddr(o.Advertise, ln.Addr())
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(o.Coordinator, o.dialOptions()...)
	if err != nil {
		return err
	}
	defer conn.Close()
	cc := rpc.NewCoordClient(conn)
	resp, err := rpc.Join(ctx, cc, rpc.JoinRequest{Role: rpc.RoleParamServer, Preferred: o.Index, Address: addr, Node: name}, log)
	if err != nil {
		return err
	}
	a := resp.GetAssignment()
	var cfg train.Config
	if err := json.Unmarshal([]byte(a.GetTrainConfigJson()), &cfg); err != nil {
		return fmt.Errorf("the coordinator's training config: %w", err)
	}
	layout, _, err := cluster.NewLayout(cpu.New(cpu.Options{Threads: 1}), cfg, len(a.GetShards()))
	if err != nil {
		return err
	}
	sc, init, err := layout.ShardConfig(cfg, o.Index, int(a.GetWorkers()+a.GetBackups())) // W = N + b
	if err != nil {
		return err
	}
	if si := a.GetShards()[o.Index]; int(si.GetLo()) != sc.Lo || int(si.GetHi()) != sc.Hi || int(si.GetBufferLo()) != sc.BufLo || int(si.GetBufferHi()) != sc.BufHi {
		return fmt.Errorf("shard %d: the coordinator assigned parameters [%d,%d) and buffers [%d,%d), this binary computes [%d,%d) and [%d,%d): run the same logitpair version on the coordinator and every shard",
			o.Index, si.GetLo(), si.GetHi(), si.GetBufferLo(), si.GetBufferHi(), sc.Lo, sc.Hi, sc.BufLo, sc.BufHi)
	}
	store, err := paramserver.NewFileStore(o.Dir, 3)
	if err != nil {
		return err
	}
	store.OnCorrupt = func(path string, err error) {
		log.Warn("a saved shard state does not read back: skipped (left in place); an older intact one is used", zap.String("file", path), zap.Error(err))
	}
	shard, err := paramserver.NewLocal(sc, init, store)
	if err != nil {
		return err
	}
	defer shard.S.Close()
	// Building the layout made the whole model and its flat vector; hand
	// that memory back now rather than when the scavenger gets to it (a box
	// running the paper's 17 shards holds 17 of these processes).
	debug.FreeOSMemory()
	sopts, err := o.serverOptions(log, promReg)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(append(sopts, sm.ServerOptions()...)...)
	pss := rpc.NewPSServer(shard)
	pss.Register(srv)
	sm.SetStatsSource(shard.S.Stats, func() int64 { return pss.Stats().MalformedPushes })
	gossip, err := o.startGossip(ctx, name, membership.Meta{Role: rpc.RoleParamServer, Slot: o.Index, Addr: addr}, nil)
	if err != nil {
		return err
	}
	member := newGossipMember(gossip, log)
	defer member.leave() // early returns; the run group leaves first on the way out
	if o.AddrFile != "" {
		if err := WriteAddrs(o.AddrFile, Addrs{GRPC: ln.Addr().String(), Gossip: gossip.Addr(), HTTP: hs.Addr()}); err != nil {
			return err
		}
	}
	log.Info("parameter server listening", zap.Int("shard", o.Index), zap.Int("lo", sc.Lo), zap.Int("hi", sc.Hi), zap.String("grpc", ln.Addr().String()), zap.String("advertise", addr))

	// The run group; the order of the Adds is the shutdown order. After
	// it, the deferred calls close the shard (its state is in its store)
	// and the connection to the coordinator.
	var g run.Group
	// 1. Staying joined: join a restarted coordinator again. Stopped first:
	//    a leaving shard must not join again.
	addActor(&g, loopActor(ctx, func(ctx context.Context) error {
		rpc.KeepShardJoined(ctx, cc, o.Index, addr, name, shardRejoinEvery, log)
		return nil
	}))
	// 2. Gossip: leave before the gRPC server stops, so that the peers see
	//    a graceful departure while the RPCs in flight still finish.
	addActor(&g, gossipActor(member, o.GossipJoin))
	// 3. gRPC: stop gracefully within 10 s (pulls, pushes and applies in
	//    flight finish), then hard.
	addActor(&g, grpcActor(srv, ln, 10*time.Second, log))
	// 4. HTTP: /metrics and the health checks to the end (they also stop
	//    as soon as ctx ends).
	addActor(&g, stopActor(hs.Close))
	// 5. ctx: SIGINT/SIGTERM, or the caller stopping the shard.
	addActor(&g, ctxActor(ctx))
	ready.Store(true)
	return g.Run()
}
