package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/oklog/run"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/logitpair/logitpair/pkg/atomicfile"
	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/history"
	"github.com/logitpair/logitpair/pkg/membership"
	"github.com/logitpair/logitpair/pkg/metrics"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/sentinel"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// CoordinatorOptions configures RunCoordinator.
type CoordinatorOptions struct {
	Common
	Listen               string
	Dir                  string
	Workers, Backups, PS int
	Elastic              bool
	// MissedSteps: a worker gossip declares dead is dropped (its slot
	// freed) only once it has also missed this many steps
	// (coordinator.Config.MissedSteps); 0 means the default, 3.
	MissedSteps int
	Train       train.Config
	// AllowConfigChange names the keys that may differ from the
	// configuration the run in Dir was started with (cluster.CheckRun).
	AllowConfigChange []string
	// sentinelMeasure, when set, replaces the training sentinel's
	// measurement of a checkpoint (tests drive rollbacks with chosen
	// accuracies); the test split is still opened.
	sentinelMeasure measureFunc
}

// doneLinger is how long a coordinator whose run is done keeps answering,
// so that the workers learn that the run is done before the server stops.
const doneLinger = 2 * time.Second

// RunCoordinator runs the coordinator until the run is done or ctx ends.
func RunCoordinator(ctx context.Context, o CoordinatorOptions, log *zap.Logger) error {
	// Flags.
	if err := o.Train.Validate(); err != nil {
		return err
	}
	if o.PS < 1 {
		return fmt.Errorf("--ps must be at least 1, got %d", o.PS)
	}
	if err := checkClusterSentinel(o.Train); err != nil {
		return err
	}
	if err := o.initTransport(log, rpc.RoleCoordinator); err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	// The run's identity: checked here, recorded before the first step.
	record := cluster.RunRecord{Train: o.Train, Cluster: cluster.Shape{Workers: o.Workers, Backups: o.Backups, PS: o.PS, Elastic: o.Elastic}}
	recordRun, err := cluster.CheckRun(o.Dir, record, cluster.RunCheck{Allow: o.AllowConfigChange, Ignore: coordinatorIgnoredKeys()}, log)
	if err != nil {
		return err
	}
	layout, model, err := cluster.NewLayout(cpu.New(cpu.Options{Threads: 1}), o.Train, o.PS)
	if err != nil {
		return err
	}

	// Components. The membership table (its shard-restart callback), the
	// status page, the readiness check and the gRPC service are built
	// before the coordinator, which needs the membership table to reach the
	// shards, and they serve before the coordinator's loop starts: they
	// reach the coordinator through late, which the loop binds.
	late := new(coordinator.Late)
	promReg := metrics.NewRegistry()
	cm, err := metrics.NewCoordinator(promReg)
	if err != nil {
		return err
	}
	cm.SetRunSteps(o.Train.Steps)
	if fi, err := os.Stat(filepath.Join(o.Dir, checkpoint.RecordFile)); err == nil {
		cm.SetCheckpointTime(fi.ModTime()) // the age of a previous incarnation's checkpoint
	}
	pageFeed, err := newStatusFeed(late) // the status page's history (status.go)
	if err != nil {
		return err
	}
	// The training sentinel (sentinel.go): its state from an earlier
	// incarnation, its series, the test split it checks on.
	sentState, resumedSentinel, err := readSentinelState(o.Dir)
	if err != nil {
		return err
	}
	if !resumedSentinel {
		sentState = sentinel.NewState()
	}
	sentMetrics := sentinel.NewCollector()
	if err := promReg.Register(sentMetrics); err != nil {
		return err
	}
	sent, err := newClusterSentinel(o.Train, o.Dir, sentState, o.sentinelMeasure, sentMetrics, log)
	if err != nil {
		return err
	}
	if resumedSentinel {
		log.Info("sentinel state resumed", zap.String("file", filepath.Join(o.Dir, SentinelFile)), zap.Int64("last_good", sentState.LastGood),
			zap.Int("rollbacks", sentState.Rollbacks), zap.Float64("lr_scale", sentState.Scale()))
	}
	pageFeed.sentinel = sent
	// The run's history (history.go): DIR/history.jsonl.
	sched, err := optim.ParseSchedule(o.Train.LRSchedule, o.Train.LR)
	if err != nil {
		return err
	}
	hw, err := history.Open(o.Dir)
	if err != nil {
		return err
	}
	defer hw.Close()
	hist := &clusterHistory{w: hw, hist: pageFeed.hist, sched: sched, every: max(o.Train.LogEvery, 1), steps: o.Train.Steps, batch: o.Train.Batch,
		start: time.Now(), log: log, scale: sentState.Scale()}
	sent.record = hist.checked
	mc, err := rpc.NewMembershipConfig(o.Train, layout.Ranges(), o.Workers, o.Backups)
	if err != nil {
		return err
	}
	mc.OnShardRestart = func(k int) {
		if c := late.Get(); c != nil {
			log.Warn("shard restarted: rolling back to the newest step every shard holds", zap.Int("shard", k))
			c.ShardRestarted(k)
		}
	}
	members, err := coordinator.NewMembership(mc)
	if err != nil {
		return err
	}
	statusPage, err := statusHandlers(pageFeed, members, o.Train.Steps) // "/" and /status.json
	if err != nil {
		return err
	}
	hs, err := startHTTP(ctx, o.HTTPListen, promReg, late.Ready, statusPage, log)
	if err != nil {
		return err
	}
	defer hs.Close()
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	sopts, err := o.serverOptions(log, promReg)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(sopts...)
	rpc.NewCoordServer(late, members, rpc.WithOnReport(func(step int64, slot int, terms objective.Terms, t worker.Timing) {
		cm.Report(step, slot, terms, t)
		pageFeed.report(step, slot, terms, t)
	})).Register(srv)
	gossip, err := o.startGossip(ctx, "coordinator", membership.Meta{Role: "coordinator", Slot: -1, Addr: ln.Addr().String()}, func(e membership.Event) {
		if e.Meta.Role != rpc.RoleWorker {
			return
		}
		// Gossip is one of two witnesses: the coordinator drops a worker
		// (Hooks.Release frees its slot) only once it has also missed steps.
		if !e.Alive {
			log.Info("worker gone from gossip (left, or suspected dead)", zap.Int("slot", e.Meta.Slot), zap.String("node", e.Node))
		}
		if c := late.Get(); c != nil {
			c.Gossip(e.Meta.Slot, e.Alive)
		}
	})
	if err != nil {
		return err
	}
	member := newGossipMember(gossip, log)
	defer member.leave() // early returns; the run group leaves first on the way out
	clog, err := paramserver.OpenFileLog(filepath.Join(o.Dir, "commit.log"))
	if err != nil {
		return err
	}
	defer clog.Close()
	conns := rpc.NewConnPool(o.dialOptions()...)
	defer conns.Close()
	shards := make([]coordinator.ShardClient, o.PS)
	wshards := make([]worker.Shard, o.PS)
	states := make([]cluster.StateFetcher, o.PS)
	for k := range shards {
		s := rpc.NewCoordinatorShard(k, members, conns)
		shards[k], wshards[k], states[k] = s, s, s
	}
	mw := &cluster.ModelWriter{Dir: o.Dir, Model: model, Shards: wshards, States: states, Ranges: layout.Ranges(), Cfg: o.Train}
	if o.Train.Sentinel().On() || resumedSentinel {
		mw.Meta = sent.Meta
	}
	// The checkpoint a requested rollback may target (the coordinator's
	// KeepCheckpoint) is spared here as on the shards.
	mw.Keep = func() []int64 {
		if c := late.Get(); c != nil {
			return c.Kept()
		}
		return nil
	}
	// Compute accounting in the checkpoints: totals always, per-example
	// counts when the training split's size is known (trainSetSize). A
	// newest checkpoint it cannot read costs the accounting, not the run.
	if err := mw.StartCompute(o.Workers, trainSetSize(o.Train, model.Input, log), time.Now); err != nil {
		log.Warn("checkpoints will record no compute accounting", zap.Error(err))
	}
	cc := coordinator.DefaultConfig()
	cc.Workers, cc.Backups, cc.Elastic, cc.Steps, cc.CheckpointEvery = o.Workers, o.Backups, o.Elastic, o.Train.Steps, o.Train.CheckpointEvery
	if o.MissedSteps != 0 {
		cc.MissedSteps = o.MissedSteps
	}
	cc.RetryEvery = 200 * time.Millisecond
	inc, err := nextIncarnation(filepath.Join(o.Dir, "incarnation"))
	if err != nil {
		return err
	}
	cc.InitialGeneration = coordinator.IncarnationGeneration(inc)
	if resumedSentinel {
		// The sentinel's scale: the log's last entry's, or a rollback's
		// whose next step was never logged.
		cc.LRScale = sentState.Scale()
	}
	var reached atomic.Int64 // the step the run had reached (a rollback's from)
	if es, err := clog.Entries(); err != nil {
		return err
	} else if len(es) > 0 {
		reached.Store(es[len(es)-1].Step + 1)
	}
	c, err := coordinator.New(ctx, cc, clog, cm.CheckpointStore(checkpoint.FileRecord{Dir: o.Dir}), shards, coordinator.Hooks{
		Checkpointed: func(ctx context.Context, step int64) error {
			if err := mw.Write(ctx, step); err != nil {
				return err
			}
			return sent.checkpointed(ctx, step)
		},
		RolledBack: func(to int64, scale float64, reason string) {
			// On Run's goroutine: every shard is at version to.
			sent.rolledBack(to)
			// After the sentinel's: a tripped check's record (written
			// under the sentinel's lock) comes first.
			hist.rolledBack(reached.Load(), to, scale, reason)
			if err := mw.RolledBack(ctx, reached.Load(), to); err != nil {
				log.Warn("the model files were not rolled back with the shards", zap.Int64("to_step", to), zap.Error(err))
			}
			reached.Store(to)
		},
		Release: func(slot int) {
			log.Warn("worker dropped: gossip declared it dead and it missed steps; its slot is free", zap.Int("slot", slot))
			members.Release(slot)
		},
		ShardReachable: members.SetShardReachable,
		Committed: func(step int64, set []int) {
			reached.Store(step + 1)
			cm.Committed(step)
			pageFeed.committed(step, set)
			hist.committed(step)
			if step%max(o.Train.LogEvery, 1) == 0 {
				log.Info("step committed", zap.Int64("step", step), zap.Ints("workers", set))
			}
		},
	}, log)
	if err != nil {
		return err
	}
	sent.bind(c)
	if err := logHistory(log, clog, checkpoint.FileRecord{Dir: o.Dir}, o.Dir); err != nil {
		return err
	}
	if o.AddrFile != "" {
		if err := WriteAddrs(o.AddrFile, Addrs{GRPC: ln.Addr().String(), Gossip: gossip.Addr(), HTTP: hs.Addr()}); err != nil {
			return err
		}
	}

	// The run group; the order of the Adds is the shutdown order. After
	// it, the deferred calls close the shard connections and the commit
	// log (each entry was fsynced when appended, each consistent checkpoint
	// written as the run went).
	var g run.Group
	// 1. The coordinator loop: binds the coordinator (the gRPC service,
	//    the status page and the readiness check see it from now on),
	//    records the run's identity before the first step, runs to the
	//    end, and then lingers so that the workers learn that the run is
	//    done. Stopped first, so that no step begins while the rest stops.
	addActor(&g, loopActor(ctx, func(ctx context.Context) error {
		late.Bind(c, members)
		cm.Attach(c)
		log.Info("coordinator listening", zap.String("grpc", ln.Addr().String()), zap.String("gossip", gossip.Addr()),
			zap.Int("workers", o.Workers), zap.Int("backups", o.Backups), zap.Int("ps", o.PS), zap.Int64("steps", o.Train.Steps))
		if err := recordRun(); err != nil {
			return err
		}
		hist.started(reached.Load())
		err := c.Run(ctx)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		if err == nil {
			log.Info("run done", zap.Int64("steps", o.Train.Steps), zap.String("dir", o.Dir))
			select {
			case <-time.After(doneLinger):
			case <-ctx.Done():
			}
		}
		return err
	}))
	// 1b. The sentinel: returns a check's fatal error (too many rollbacks,
	//     a broken measurement), which stops the coordinator with it.
	addActor(&g, loopActor(ctx, sent.run))
	// 2. Gossip: leave before the gRPC server stops, so that the peers see
	//    a graceful departure, not a node that stopped answering probes.
	addActor(&g, gossipActor(member, ""))
	// 3. gRPC: stop gracefully within 10 s, then hard; in-flight Joins and
	//    WaitSteps finish while the process is already known to be leaving.
	addActor(&g, grpcActor(srv, ln, 10*time.Second, log))
	// 4. HTTP: /metrics, the status page and the health checks answer to
	//    the end (they also stop as soon as ctx ends).
	addActor(&g, stopActor(hs.Close))
	// 5. ctx: SIGINT/SIGTERM, or the caller stopping the coordinator.
	addActor(&g, ctxActor(ctx))
	return g.Run()
}

// logHistory says what the coordinator starts from: a new run, or the
// commit log and consistent checkpoint an earlier incarnation left in dir
// (resuming is automatic; the shards are reconciled with the log next).
func logHistory(log *zap.Logger, clog paramserver.CommitLog, ckpts checkpoint.FileRecord, dir string) error {
	es, err := clog.Entries()
	if err != nil {
		return err
	}
	ckpt, haveCkpt, err := ckpts.LastCheckpoint()
	if err != nil {
		return err
	}
	if len(es) == 0 && !haveCkpt {
		log.Info("starting a new run", zap.String("dir", dir))
		return nil
	}
	next := ckpt
	if len(es) > 0 {
		next = es[len(es)-1].Step + 1
	}
	log.Info("resuming from the commit log", zap.String("dir", dir), zap.Int64("next_step", next), zap.Int("log_entries", len(es)), zap.Int64("checkpoint", ckpt))
	return nil
}

// nextIncarnation reads, increments and durably rewrites a process start
// counter.
func nextIncarnation(path string) (int64, error) {
	var n int64
	if b, err := os.ReadFile(path); err == nil {
		if _, err := fmt.Sscan(string(b), &n); err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
	} else if !os.IsNotExist(err) {
		return 0, err
	}
	n++
	return n, atomicfile.Write(path, []byte(fmt.Sprintf("%d\n", n)), 0o644)
}

// trainSetSize is the number of examples of the run's training split, for
// the per-example compute counts (checkpoint.Compute): opened as the workers
// open it (a fixed-format dataset memory-mapped from the shared cache; an
// image folder only listed, never decoded). A coordinator that cannot open
// it (its data lives elsewhere, as in a deployment without a data volume)
// records totals only and says so; the run goes on.
func trainSetSize(cfg train.Config, input [3]int, log *zap.Logger) int {
	o := data.ForInput(input).WithShared(nil)
	o.MaxInMemory = -1
	src, err := data.Open(cfg.Dataset, cfg.DataDir, "train", o)
	if err != nil {
		log.Info("checkpoints will record compute totals without per-example counts: the coordinator cannot open the training split",
			zap.String("data_dir", cfg.DataDir), zap.Error(err))
		return 0
	}
	if c, ok := src.(io.Closer); ok {
		defer c.Close()
	}
	return src.Info().Len
}
