package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/run"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	"github.com/logitpair/logitpair/pkg/bench"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/device"
	"github.com/logitpair/logitpair/pkg/membership"
	"github.com/logitpair/logitpair/pkg/metrics"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// WorkerOptions configures RunWorker.
type WorkerOptions struct {
	Common
	Coordinator string
	Slot        int // preferred slot (−1: any)
	Threads     int
	// DataDir overrides the training config's data directory (workers may
	// keep the data elsewhere).
	DataDir string
	// Device is this machine's compute device (pkg/device: auto, cpu, cuda,
	// cuda:N; empty means auto), not part of the training config.
	Device string
	// SyntheticCompute, when set, replaces the training step by a synthetic
	// compute phase of that length (bench.Synthetic): for benchmarks of the
	// cluster at a GPU's step time (logitpair bench cluster). The worker
	// then builds no model and loads no data: the sizes of the gradient
	// come from the shard layout the coordinator assigns, and the run
	// learns nothing.
	SyntheticCompute *time.Duration
}

// slotLeaveTimeout bounds the Leave call that gives a stopping worker's
// slot back.
const slotLeaveTimeout = 2 * time.Second

// RunWorker joins the cluster and works until the run is done or ctx ends.
func RunWorker(ctx context.Context, o WorkerOptions, log *zap.Logger) error {
	// Flags.
	if err := o.initTransport(log, rpc.RoleWorker); err != nil {
		return err
	}
	threads := o.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	dev := o.Device
	if dev == "" {
		dev = device.Default
	}

	// Components: the HTTP endpoint, a slot (joining the coordinator), the
	// training config it sends, the device, model and data, the shards as
	// this worker reaches them, gossip, and the worker loop.
	promReg := metrics.NewRegistry()
	var ready atomic.Bool // joined, working
	hs, err := startHTTP(ctx, o.HTTPListen, promReg, ready.Load, nil, log)
	if err != nil {
		return err
	}
	defer hs.Close()
	name := memberName(fmt.Sprintf("worker-%d", o.Slot))
	conn, err := grpc.NewClient(o.Coordinator, o.dialOptions()...)
	if err != nil {
		return err
	}
	defer conn.Close()
	cc := rpc.NewCoordClient(conn)
	resp, err := rpc.Join(ctx, cc, rpc.JoinRequest{Role: rpc.RoleWorker, Preferred: o.Slot, Node: name}, log)
	if err != nil {
		return err
	}
	a := resp.GetAssignment()
	slot := int(resp.GetSlot())
	coord := rpc.NewRejoiningCoordinator(cc, slot, name, log)
	// giveBack returns the slot (Leave), once: in the run group's order, or
	// on an early return; not when another worker holds it by now.
	giveBack := sync.OnceFunc(func() {
		if coord.Lost() {
			return
		}
		lctx, cancel := context.WithTimeout(context.Background(), slotLeaveTimeout)
		_ = cc.Leave(lctx, rpc.RoleWorker, slot)
		cancel()
	})
	defer giveBack()
	wm, err := metrics.NewWorker(promReg, slot)
	if err != nil {
		return err
	}
	var cfg train.Config
	if err := json.Unmarshal([]byte(a.GetTrainConfigJson()), &cfg); err != nil {
		return fmt.Errorf("the coordinator's training config: %w", err)
	}
	if o.DataDir != "" {
		cfg.DataDir = o.DataDir
	}
	format, err := cfg.Wire()
	if err != nil {
		return fmt.Errorf("the coordinator's training config: %w", err)
	}
	runtime.GOMAXPROCS(threads)
	var comp worker.Computer
	if o.SyntheticCompute != nil {
		comp, err = syntheticComputer(*o.SyntheticCompute, a, log)
	} else {
		comp, err = trainComputer(cfg, dev, threads, log)
	}
	if err != nil {
		return err
	}
	// Set-up garbage (decoding the dataset, initializing the model) goes
	// back to the OS now: one box may run dozens of workers.
	debug.FreeOSMemory()
	conns := rpc.NewConnPool(o.dialOptions()...)
	defer conns.Close()
	book := rpc.NewWorkerShards(coord, a, conns, rpc.WithWireFormat(format))
	shards := make([]worker.Shard, len(a.GetShards()))
	ranges := make([]worker.Range, len(a.GetShards()))
	for k, si := range a.GetShards() {
		shards[k] = wm.Shard(k, book.Shard(k))
		ranges[k] = worker.Range{Lo: int(si.GetLo()), Hi: int(si.GetHi()), BufLo: int(si.GetBufferLo()), BufHi: int(si.GetBufferHi())}
	}
	gossip, err := o.startGossip(ctx, name, membership.Meta{Role: rpc.RoleWorker, Slot: slot}, nil)
	if err != nil {
		return err
	}
	member := newGossipMember(gossip, log)
	defer member.leave() // early returns; the run group leaves first on the way out
	if o.AddrFile != "" {
		if err := WriteAddrs(o.AddrFile, Addrs{GRPC: "worker", Gossip: gossip.Addr(), HTTP: hs.Addr()}); err != nil {
			return err
		}
	}
	wk, err := worker.New(worker.Config{Slot: slot, Workers: int(a.GetDataShards()), Steps: cfg.Steps, PullTimeout: 10 * time.Second}, comp, shards, ranges, wm.Coordinator(coord), log)
	if err != nil {
		return err
	}
	log.Info("worker running", zap.Int("slot", slot), zap.Int("workers", int(a.GetDataShards())), zap.Int64("from_step", a.GetStartStep()))

	// The run group; the order of the Adds is the shutdown order. After
	// it, the deferred calls close the connection to the coordinator.
	var g run.Group
	var nanLoss atomic.Bool
	// 1. The worker loop, to the end of the run (or a fatal error); it
	//    stops before anything else does.
	addActor(&g, loopActor(ctx, func(ctx context.Context) error {
		err := wk.Run(ctx)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		nanLoss.Store(wm.RunError(err))
		return err
	}))
	// 2. Gossip: leave first, so that the coordinator sees a graceful
	//    departure rather than a worker that stopped answering probes.
	addActor(&g, gossipActor(member, o.GossipJoin))
	// 3. The slot: close the shard connections and give the slot back
	//    (Leave), so that another worker may take it at once.
	addActor(&g, stopActor(func() {
		conns.Close()
		giveBack()
	}))
	// 4. HTTP: after a non-finite loss, keep /metrics up a little longer
	//    (the worker has left the cluster by now), so that Prometheus
	//    scrapes logitpair_loss_nan_total before the process exits.
	addActor(&g, stopActor(func() {
		if nanLoss.Load() && hs != nil {
			log.Info("non-finite loss: serving metrics a little longer before exiting", zap.Duration("linger", nanLinger))
			select {
			case <-time.After(nanLinger):
			case <-ctx.Done():
			}
		}
		hs.Close()
	}))
	// 5. ctx: SIGINT/SIGTERM, or the caller stopping the worker.
	addActor(&g, ctxActor(ctx))
	ready.Store(true)
	return g.Run()
}

// trainComputer builds the training step of cfg (the model on the device,
// the training data, train.Worker) as the worker's Computer.
func trainComputer(cfg train.Config, dev string, threads int, log *zap.Logger) (worker.Computer, error) {
	be, desc, detail, err := device.OpenDetail(dev, threads)
	if err != nil {
		return nil, err
	}
	log.Info(desc, zap.String("device", dev), zap.String("backend", be.Name()))
	if detail != "" {
		log.Debug(detail)
	}
	m, err := models.New(be, cfg.Model, cfg.ModelConfig)
	if err != nil {
		return nil, err
	}
	ds, err := data.Open(cfg.Dataset, cfg.DataDir, "train", data.ForInput(m.Input).WithShared(func(msg string) { log.Info(msg) }))
	if err != nil {
		return nil, err
	}
	if err := ds.Info().Fits(cfg.Model, m.Input, m.Classes); err != nil {
		return nil, err
	}
	// NewWorker builds the objective from the coordinator's config and, for
	// ensemble-adv, loads the static models from its --static-models paths
	// (which must exist on this worker's machine too).
	tw, err := train.NewWorker(cfg, m, data.NewLoader(ds, data.LoaderOptions{Seed: uint64(cfg.Seed), NoAugment: !cfg.Augment}))
	if err != nil {
		return nil, err
	}
	if len(cfg.StaticModels) > 0 {
		log.Info("static models loaded", zap.Strings("static_models", cfg.StaticModels), zap.String("source_schedule", cfg.SourceSchedule))
	}
	return worker.Train(tw), nil
}

// syntheticComputer is bench.Synthetic (its default timeline) with a
// compute phase of length compute, sized by the shard layout of the
// assignment a: the parameters and buffers end where its last ranges end.
func syntheticComputer(compute time.Duration, a *coordinatorv1.Assignment, log *zap.Logger) (worker.Computer, error) {
	var np, nb int
	for _, si := range a.GetShards() {
		np, nb = max(np, int(si.GetHi())), max(nb, int(si.GetBufferHi()))
	}
	s, err := bench.NewSynthetic(bench.DefaultSyntheticConfig(compute), np, nb)
	if err != nil {
		return nil, fmt.Errorf("--synthetic-compute: %w", err)
	}
	c := s.Config()
	log.Warn("synthetic compute (benchmark mode): no model, no data, the run learns nothing",
		zap.Duration("compute", compute), zap.Float64("backward_fraction", c.Backward), zap.Int("backward_slices", c.Slices),
		zap.Int("params", np), zap.Int("buffers", nb))
	return s, nil
}
