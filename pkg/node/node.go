// Package node runs the cluster's processes — coordinator, parameter server,
// worker — by wiring the packages together (gRPC servers and clients, the
// commit log and checkpoint files, memberlist, the training step) and
// launches whole local clusters (`logitpair cluster local`). The binaries in
// cmd/ only parse flags and call these functions.
//
// Shutdown order, on SIGINT/SIGTERM or when the run is done: leave the gossip
// cluster first (memberlist Leave: the peers see a graceful departure, not a
// node that stopped answering probes), then stop the gRPC server gracefully
// with a deadline and then hard (in-flight RPCs finish while the process is
// already known to be leaving; a worker, which serves no RPCs, closes its
// connections after leaving), flush (the coordinator's consistent
// checkpoints are written as the run goes; a shard's state is in its store),
// and sync the logger. serve and gossipMember implement the first two steps.
package node

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	"github.com/logitpair/logitpair/pkg/atomicfile"
	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/device"
	"github.com/logitpair/logitpair/pkg/membership"
	"github.com/logitpair/logitpair/pkg/metrics"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/retry"
	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/tlsutil"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// Common are the flags every process takes.
type Common struct {
	JoinToken  string
	GossipKey  string // base64, 16/24/32 bytes
	GossipBind string // host:port of the gossip listener (port 0: OS-chosen)
	GossipJoin string // a member's gossip address (the coordinator's)
	GossipFast bool   // short gossip timers (loopback clusters, tests)
	AddrFile   string // where to announce the listen addresses (launchers)
	LogFormat  string // "json" (production) or "console" (development)
	// HTTPListen is the address of the process's HTTP endpoint (/metrics,
	// /healthz, /readyz); empty disables it.
	HTTPListen string
	// TLSCA, TLSCert and TLSKey are the PEM files of mutual TLS on every
	// gRPC connection (all three or none): the CA bundle, this process's
	// certificate and its key. TLSServerName overrides the name a server's
	// certificate must carry (default: the dialed host).
	TLSCA, TLSCert, TLSKey string
	TLSServerName          string
	// tls is the loaded identity (initTransport); nil without TLS.
	tls *tlsutil.Identity
	// transportReady is set by initTransport.
	transportReady bool
}

// NewLogger builds the process's zap logger.
func NewLogger(format string) (*zap.Logger, error) {
	switch format {
	case "json", "":
		return zap.NewProduction()
	case "console":
		c := zap.NewDevelopmentConfig()
		c.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
		c.DisableStacktrace = true
		return c.Build()
	}
	return nil, fmt.Errorf("--log-format must be json or console, got %q", format)
}

// tlsFiles are the --tls-* flags.
func (c Common) tlsFiles() tlsutil.Files {
	return tlsutil.Files{CA: c.TLSCA, Cert: c.TLSCert, Key: c.TLSKey}
}

// initTransport checks the TLS flags (all three or none), loads the
// certificates and checks that the certificate carries this process's role
// (rpc.Role*), and without TLS warns loudly (a coordinator or shard listens
// for gRPC). Every Run function calls it before dialOptions and
// serverOptions.
func (c *Common) initTransport(log *zap.Logger, role string) error {
	serving := tlsutil.Serves(role)
	f := c.tlsFiles()
	if err := f.Check(); err != nil {
		return err
	}
	c.transportReady = true
	if !f.Enabled() {
		if c.TLSServerName != "" {
			return fmt.Errorf("--tls-server-name needs --tls-ca, --tls-cert and --tls-key")
		}
		if serving {
			log.Warn("no TLS: anyone who can reach this port can read the model's parameters, and the join token travels in the clear, so whoever sees it can join the cluster and push gradients; roles are not enforced either, so any caller with the token can Apply, Checkpoint or Restore a shard or join as one; set --tls-ca, --tls-cert and --tls-key (logitpair certs)")
		} else {
			log.Warn("no TLS: the join token, parameters and gradients travel in the clear and the servers are not authenticated; set --tls-ca, --tls-cert and --tls-key (logitpair certs)")
		}
		c.warnNoJoinToken(log, serving, false)
		return nil
	}
	id, err := tlsutil.Load(f, func(leaf *x509.Certificate, err error) {
		if err != nil {
			log.Error("TLS certificate changed on disk but does not load; keeping the previous one", zap.Error(err))
			return
		}
		log.Info("TLS certificate reloaded", zap.String("subject", leaf.Subject.CommonName), zap.Time("not_after", leaf.NotAfter))
	})
	if err != nil {
		return err
	}
	if err := id.RequireRole(role); err != nil {
		return err
	}
	c.tls = id
	leaf := id.Leaf()
	log.Info("mutual TLS on", zap.String("ca", f.CA), zap.String("cert", f.Cert), zap.String("subject", leaf.Subject.CommonName),
		zap.String("role", id.Role()), zap.Strings("dns", leaf.DNSNames), zap.Time("not_after", leaf.NotAfter))
	c.warnNoJoinToken(log, serving, true)
	return nil
}

// warnNoJoinToken warns loudly, like the missing-TLS warning, when no join
// token is configured: rpc.TokenAuth("") installs no check at all, so the
// cluster's gRPC servers accept every caller that reaches them (with TLS:
// every holder of a certificate from the CA).
func (c *Common) warnNoJoinToken(log *zap.Logger, serving, tls bool) {
	if c.JoinToken != "" {
		return
	}
	switch {
	case serving && !tls:
		log.Warn("no join token: this server checks none, so anyone who can reach this port can join the cluster, push gradients and read the model's parameters; set --join-token (env LOGITPAIR_JOIN_TOKEN; logitpair certs --secrets mints one) on every process")
	case serving:
		log.Warn("no join token: this server checks none, so any process with a certificate from --tls-ca (another cluster's included) can join the cluster and push gradients; set --join-token (env LOGITPAIR_JOIN_TOKEN; logitpair certs --secrets mints one) on every process")
	default:
		log.Warn("no join token: this worker sends none, so it can join only servers that check none, which let anyone who reaches them join the cluster and push gradients; set --join-token (env LOGITPAIR_JOIN_TOKEN; logitpair certs --secrets mints one) on every process")
	}
}

func (c Common) checkTransport() {
	if !c.transportReady && c.tlsFiles().Enabled() {
		panic("node: initTransport was not called before dialing or serving") // a wiring bug, never input
	}
}

func (c Common) dialOptions() []grpc.DialOption {
	c.checkTransport()
	if c.tls == nil {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if c.JoinToken != "" {
			opts = append(opts, rpc.WithToken(c.JoinToken)) // accepted on plaintext too
		}
		return opts
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(c.tls.ClientCredentials(c.TLSServerName))}
	if c.JoinToken != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(rpc.TokenCredentials(c.JoinToken, true)))
	}
	return opts
}

// serverOptions are a gRPC server's credentials and guard (rpc.Guard: the
// join token, with TLS the role table; refusals logged at a bounded rate
// and counted in reg's logitpair_auth_refused_total).
func (c Common) serverOptions(log *zap.Logger, reg prometheus.Registerer) ([]grpc.ServerOption, error) {
	c.checkTransport()
	am, err := metrics.NewAuth(reg)
	if err != nil {
		return nil, err
	}
	g := rpc.NewGuard(rpc.GuardConfig{Token: c.JoinToken, Roles: c.tls != nil, Log: log, OnRefused: am.Refused})
	var opts []grpc.ServerOption
	if c.tls != nil {
		opts = append(opts, grpc.Creds(g.Credentials(c.tls.ServerCredentials())))
	}
	return append(opts, g.ServerOptions()...), nil
}

// gossipJoinWindow bounds how long a process keeps retrying its first gossip
// join: the coordinator's gossip listener may be slow to answer (a loaded
// machine, a pod still starting), and one failed TCP dial must not end a
// process that a retry a moment later would have joined.
const gossipJoinWindow = time.Minute

func (c Common) startGossip(ctx context.Context, name string, meta membership.Meta, onEvent func(membership.Event)) (*membership.Node, error) {
	key, err := membership.ParseKey(c.GossipKey)
	if err != nil {
		return nil, err
	}
	host, p, err := membership.ParseBind(c.GossipBind)
	if err != nil {
		return nil, fmt.Errorf("--gossip-bind %q: %w", c.GossipBind, err)
	}
	n, err := membership.Start(membership.Config{Name: name, Meta: meta, BindAddr: host, BindPort: p, Key: key, Fast: c.GossipFast, OnEvent: onEvent})
	if err != nil {
		return nil, err
	}
	if c.GossipJoin != "" {
		if err := joinWithRetry(ctx, n, c.GossipJoin, gossipJoinWindow); err != nil {
			n.Leave(time.Second)
			return nil, err
		}
	}
	return n, nil
}

// joinWithRetry joins the gossip cluster at addr, retrying with jittered
// exponential backoff (retry.Backoff, 250 ms doubling to 4 s) until it
// succeeds, ctx ends or window has passed; the error then names the
// address, the attempts and the last cause.
func joinWithRetry(ctx context.Context, n *membership.Node, addr string, window time.Duration) error {
	deadline := time.Now().Add(window)
	bo := retry.New(250*time.Millisecond, 4*time.Second)
	for attempt := 1; ; attempt++ {
		err := n.Join(addr)
		if err == nil {
			return nil
		}
		wait := bo.Next()
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("joining the gossip cluster at %s: %d attempts over %s: %w", addr, attempt, window, err)
		}
		if serr := retry.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("joining the gossip cluster at %s: %w (last attempt: %v)", addr, serr, err)
		}
	}
}

// gossipLeaveTimeout bounds how long a stopping process waits for its
// gossip leave message to go out.
const gossipLeaveTimeout = 2 * time.Second

// gossipMember is a process's gossip membership as its shutdown sees it:
// leave leaves the cluster once (memberlist panics on a second Leave), so
// both serve, in the shutdown order, and a deferred call on an early return
// may call it.
type gossipMember struct {
	n    *membership.Node
	log  *zap.Logger
	once sync.Once
}

func newGossipMember(n *membership.Node, log *zap.Logger) *gossipMember {
	return &gossipMember{n: n, log: log}
}

// leave broadcasts this process's departure, so that its peers see it leave
// gracefully rather than stop answering probes, and shuts memberlist down.
func (g *gossipMember) leave() {
	g.once.Do(func() {
		if err := g.n.Leave(gossipLeaveTimeout); err != nil {
			g.log.Warn("leaving the gossip cluster: the leave message may not have gone out; peers will declare this process dead instead", zap.Error(err))
			return
		}
		g.log.Info("left the gossip cluster")
	})
}

// serve runs a gRPC server until ctx ends, then, in the shutdown order,
// leaves the gossip cluster (leave; nil: none) and stops the server
// gracefully within grace and hard after that: peers learn that this
// process is leaving while its in-flight RPCs still finish.
func serve(ctx context.Context, srv *grpc.Server, ln net.Listener, grace time.Duration, leave func(), log *zap.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if leave != nil {
			leave()
		}
		return err
	case <-ctx.Done():
	}
	if leave != nil {
		leave()
	}
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	graceful := true
	select {
	case <-done:
	case <-time.After(grace):
		graceful = false
		srv.Stop()
	}
	log.Info("gRPC server stopped", zap.Bool("graceful", graceful))
	return nil
}

// CoordinatorOptions configures RunCoordinator.
type CoordinatorOptions struct {
	Common
	Listen               string
	Dir                  string
	Workers, Backups, PS int
	Elastic              bool
	Train                train.Config
	// AllowConfigChange names the keys that may differ from the
	// configuration the run in Dir was started with (cluster.CheckRun).
	AllowConfigChange []string
}

// RunCoordinator runs the coordinator until the run is done or ctx ends.
func RunCoordinator(ctx context.Context, o CoordinatorOptions, log *zap.Logger) error {
	if err := o.Train.Validate(); err != nil {
		return err
	}
	if o.PS < 1 {
		return fmt.Errorf("--ps must be at least 1, got %d", o.PS)
	}
	if err := o.initTransport(log, rpc.RoleCoordinator); err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	// The run's identity: checked here, recorded before the first step.
	run := cluster.RunRecord{Train: o.Train, Cluster: cluster.Shape{Workers: o.Workers, Backups: o.Backups, PS: o.PS, Elastic: o.Elastic}}
	recordRun, err := cluster.CheckRun(o.Dir, run, cluster.RunCheck{Allow: o.AllowConfigChange, Ignore: coordinatorIgnoredKeys()}, log)
	if err != nil {
		return err
	}
	be := cpu.New(cpu.Options{Threads: 1})
	layout, model, err := cluster.NewLayout(be, o.Train, o.PS)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var coord *coordinator.Coordinator
	var coordMu sync.Mutex
	getCoord := func() *coordinator.Coordinator { coordMu.Lock(); defer coordMu.Unlock(); return coord }
	pageFeed, err := newStatusFeed(getCoord) // the status page's history (status.go)
	if err != nil {
		return err
	}
	promReg := metrics.NewRegistry()
	cm, err := metrics.NewCoordinator(promReg)
	if err != nil {
		return err
	}
	cm.SetRunSteps(o.Train.Steps)
	if fi, err := os.Stat(filepath.Join(o.Dir, "cluster-checkpoint.json")); err == nil {
		cm.SetCheckpointTime(fi.ModTime()) // the age of a previous incarnation's checkpoint
	}
	reg, err := rpc.NewRegistry(rpc.RegistryConfig{Train: o.Train, Layout: layout, Workers: o.Workers, Backups: o.Backups,
		OnShardRestart: func(k int) {
			if c := getCoord(); c != nil {
				log.Warn("shard restarted: rolling back to the newest step every shard holds", zap.Int("shard", k))
				c.ShardRestarted(k)
			}
		}})
	if err != nil {
		return err
	}
	statusPage, err := statusHandlers(pageFeed, reg, o.Train.Steps) // "/" and /status.json
	if err != nil {
		return err
	}
	hs, err := startHTTP(ctx, o.HTTPListen, promReg, func() bool {
		c := getCoord()
		if c == nil {
			return false
		}
		select {
		case <-c.Ready():
			return true
		default:
			return false
		}
	}, statusPage, log)
	if err != nil {
		return err
	}
	defer hs.Close()
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return err
	}
	sopts, err := o.serverOptions(log, promReg)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(sopts...)
	cs := rpc.NewCoordServer(nil, reg, rpc.WithOnReport(func(step int64, slot int, terms objective.Terms, t worker.Timing) {
		cm.Report(step, slot, terms, t)
		pageFeed.report(step, slot, terms, t)
	}))
	cs.Register(srv)
	gossip, err := o.startGossip(ctx, "coordinator", membership.Meta{Role: "coordinator", Slot: -1, Addr: ln.Addr().String()}, func(e membership.Event) {
		if e.Meta.Role != rpc.RoleWorker {
			return
		}
		// Gossip is one of two witnesses: the coordinator drops a worker
		// (Hooks.Release frees its slot) only once it has also missed steps.
		if !e.Alive {
			log.Info("worker gone from gossip (left, or suspected dead)", zap.Int("slot", e.Meta.Slot), zap.String("node", e.Node))
		}
		if c := getCoord(); c != nil {
			c.Gossip(e.Meta.Slot, e.Alive)
		}
	})
	if err != nil {
		ln.Close()
		return err
	}
	member := newGossipMember(gossip, log)
	defer member.leave() // early returns; serve leaves first on the way out
	if o.AddrFile != "" {
		if err := WriteAddrs(o.AddrFile, Addrs{GRPC: ln.Addr().String(), Gossip: gossip.Addr(), HTTP: hs.Addr()}); err != nil {
			return err
		}
	}
	servErr := make(chan error, 1)
	go func() { servErr <- serve(ctx, srv, ln, 10*time.Second, member.leave, log) }()

	clog, err := paramserver.OpenFileLog(filepath.Join(o.Dir, "commit.log"))
	if err != nil {
		return err
	}
	defer clog.Close()
	conns := &connCache{opts: o.dialOptions(), conns: map[string]*grpc.ClientConn{}}
	defer conns.close()
	shards := make([]coordinator.ShardClient, o.PS)
	wshards := make([]worker.Shard, o.PS)
	states := make([]cluster.StateFetcher, o.PS)
	for k := range shards {
		ls := &lazyShard{k: k, reg: reg, conns: conns}
		shards[k], wshards[k], states[k] = ls, ls, ls
	}
	mw := &cluster.ModelWriter{Dir: o.Dir, Model: model, Shards: wshards, States: states, Ranges: layout.Ranges(), Cfg: o.Train}
	cc := coordinator.DefaultConfig()
	cc.Workers, cc.Backups, cc.Elastic, cc.Steps, cc.CheckpointEvery = o.Workers, o.Backups, o.Elastic, o.Train.Steps, o.Train.CheckpointEvery
	cc.RetryEvery = 200 * time.Millisecond
	inc, err := nextIncarnation(filepath.Join(o.Dir, "incarnation"))
	if err != nil {
		return err
	}
	cc.InitialGeneration = inc << 32
	c, err := coordinator.New(ctx, cc, clog, cm.CheckpointStore(cluster.FileCheckpoints{Dir: o.Dir}), shards, coordinator.Hooks{
		Checkpointed: mw.Write,
		Release: func(slot int) {
			log.Warn("worker dropped: gossip declared it dead and it missed steps; its slot is free", zap.Int("slot", slot))
			reg.Release(slot)
		},
		ShardReachable: func(k int, err error) { reg.SetShardReachable(k, err) },
		Committed: func(step int64, set []int) {
			cm.Committed(step)
			pageFeed.committed(step, set)
			if step%max(o.Train.LogEvery, 1) == 0 {
				log.Info("step committed", zap.Int64("step", step), zap.Ints("workers", set))
			}
		},
	}, log)
	if err != nil {
		return err
	}
	if err := logHistory(log, clog, cluster.FileCheckpoints{Dir: o.Dir}, o.Dir); err != nil {
		return err
	}
	coordMu.Lock()
	coord = c
	coordMu.Unlock()
	cs.SetCoordinator(c)
	cm.Attach(c)
	log.Info("coordinator listening", zap.String("grpc", ln.Addr().String()), zap.String("gossip", gossip.Addr()),
		zap.Int("workers", o.Workers), zap.Int("backups", o.Backups), zap.Int("ps", o.PS), zap.Int64("steps", o.Train.Steps))
	if err := recordRun(); err != nil {
		return err
	}
	runErr := c.Run(ctx)
	if runErr == nil {
		log.Info("run done", zap.Int64("steps", o.Train.Steps), zap.String("dir", o.Dir))
		// Give workers a moment to learn that the run is done before the
		// server stops answering.
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		}
	}
	cancel()
	serr := <-servErr
	if errors.Is(runErr, context.Canceled) {
		runErr = nil
	}
	return errors.Join(runErr, serr)
}

// logHistory says what the coordinator starts from: a new run, or the
// commit log and consistent checkpoint an earlier incarnation left in dir
// (resuming is automatic; the shards are reconciled with the log next).
func logHistory(log *zap.Logger, clog paramserver.CommitLog, ckpts cluster.FileCheckpoints, dir string) error {
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

// connCache keeps one client connection per address.
type connCache struct {
	opts  []grpc.DialOption
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (c *connCache) get(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, c.opts...)
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	return cc, nil
}

func (c *connCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cc := range c.conns {
		cc.Close()
	}
}

// lazyShard reaches shard k at whatever address it last joined with.
type lazyShard struct {
	k     int
	reg   *rpc.Registry
	conns *connCache
}

func (l *lazyShard) client() (*rpc.PSClient, error) {
	a, err := l.reg.Assignment(rpc.RoleParamServer, l.k, 0, 0)
	if err != nil {
		return nil, err
	}
	addr := a.GetShards()[l.k].GetAddress()
	if addr == "" {
		return nil, fmt.Errorf("shard %d has not joined yet", l.k)
	}
	cc, err := l.conns.get(addr)
	if err != nil {
		return nil, err
	}
	return rpc.NewPSClient(cc, l.k), nil
}

func (l *lazyShard) Apply(ctx context.Context, step int64, w []int) error {
	c, err := l.client()
	if err != nil {
		return err
	}
	return c.Apply(ctx, step, w)
}

func (l *lazyShard) Version(ctx context.Context) (int64, error) {
	c, err := l.client()
	if err != nil {
		return 0, err
	}
	return c.Version(ctx)
}

func (l *lazyShard) Checkpoint(ctx context.Context, step int64) error {
	c, err := l.client()
	if err != nil {
		return err
	}
	return c.Checkpoint(ctx, step)
}

func (l *lazyShard) Restore(ctx context.Context, step int64) error {
	c, err := l.client()
	if err != nil {
		return err
	}
	return c.Restore(ctx, step)
}

func (l *lazyShard) FetchState(ctx context.Context, step int64) (string, []optim.NamedState, error) {
	c, err := l.client()
	if err != nil {
		return "", nil, err
	}
	return c.FetchState(ctx, step)
}

func (l *lazyShard) Held(ctx context.Context) ([]int64, error) {
	c, err := l.client()
	if err != nil {
		return nil, err
	}
	return c.Held(ctx)
}

func (l *lazyShard) Pull(ctx context.Context, step int64) ([]float32, []float32, error) {
	c, err := l.client()
	if err != nil {
		return nil, nil, err
	}
	return c.Pull(ctx, step)
}

func (l *lazyShard) Push(ctx context.Context, step int64, w int, g, b []float32) error {
	c, err := l.client()
	if err != nil {
		return err
	}
	return c.Push(ctx, step, w, g, b)
}

// joinCoordinator dials the coordinator and joins with retries (the
// coordinator may start after us or be restarting).
func joinCoordinator(ctx context.Context, addr string, opts []grpc.DialOption, role string, preferred int, self, node string, log *zap.Logger) (*grpc.ClientConn, *rpc.CoordClient, *coordinatorv1.JoinResponse, error) {
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, nil, nil, err
	}
	cc := rpc.NewCoordClient(conn)
	// Until the coordinator answers: jittered backoff from 300 ms to 5 s,
	// a log line at most every 10 s.
	bo, lim := retry.New(300*time.Millisecond, 5*time.Second), retry.NewLimiter(10*time.Second)
	for {
		jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := cc.Join(jctx, role, preferred, self, node)
		cancel()
		if err == nil {
			return conn, cc, resp, nil
		}
		if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated || c == codes.InvalidArgument {
			conn.Close() // retrying cannot help: the credentials or the request are wrong
			return nil, nil, nil, fmt.Errorf("joining the coordinator at %s: %w", addr, err)
		}
		if ok, _ := lim.Allow(); ok {
			log.Info("joining the coordinator", zap.String("coordinator", addr), zap.Int("attempts", bo.Failures()+1), zap.Error(err))
		}
		if serr := bo.Wait(ctx); serr != nil {
			conn.Close()
			return nil, nil, nil, fmt.Errorf("joining the coordinator at %s: %w (last error: %v)", addr, serr, err)
		}
	}
}

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
	if err := o.initTransport(log, rpc.RoleParamServer); err != nil {
		return err
	}
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
	conn, cc, resp, err := joinCoordinator(ctx, o.Coordinator, o.dialOptions(), rpc.RoleParamServer, o.Index, addr, name, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	var cfg train.Config
	if err := json.Unmarshal([]byte(resp.GetAssignment().GetTrainConfigJson()), &cfg); err != nil {
		return fmt.Errorf("the coordinator's training config: %w", err)
	}
	be := cpu.New(cpu.Options{Threads: 1})
	layout, _, err := cluster.NewLayout(be, cfg, len(resp.GetAssignment().GetShards()))
	if err != nil {
		return err
	}
	a := resp.GetAssignment()
	sc, init, err := layout.ShardConfig(cfg, o.Index, int(a.GetWorkers()+a.GetBackups())) // W = N + b
	if err != nil {
		return err
	}
	store, err := paramserver.NewFileStore(o.Dir, 3)
	if err != nil {
		return err
	}
	store.OnCorrupt = func(path string, err error) {
		log.Warn("a saved shard state does not read back: skipped (left in place); an older intact one is used", zap.String("file", path), zap.Error(err))
	}
	shard, err := cluster.NewLocalShard(sc, init, store)
	if err != nil {
		return err
	}
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
	defer member.leave() // early returns; serve leaves first on the way out
	if o.AddrFile != "" {
		if err := WriteAddrs(o.AddrFile, Addrs{GRPC: ln.Addr().String(), Gossip: gossip.Addr(), HTTP: hs.Addr()}); err != nil {
			return err
		}
	}
	log.Info("parameter server listening", zap.Int("shard", o.Index), zap.Int("lo", sc.Lo), zap.Int("hi", sc.Hi), zap.String("grpc", ln.Addr().String()), zap.String("advertise", addr))
	go heartbeat(ctx, 2*time.Second, func(ctx context.Context) {
		// A restarted coordinator has forgotten us: join it again. The
		// registry counts a shard's second join as a restart only within one
		// coordinator's lifetime, and here this shard kept its state.
		a, err := cc.GetAssignment(ctx, rpc.RoleParamServer, o.Index)
		if err == nil && a.GetShards()[o.Index].GetAddress() == addr {
			return
		}
		if _, err := cc.Join(ctx, rpc.RoleParamServer, o.Index, addr, name); err == nil {
			log.Info("joined the coordinator again (it restarted)")
		}
	})
	go rejoinGossip(ctx, gossip, o.GossipJoin)
	ready.Store(true)
	err = serve(ctx, srv, ln, 10*time.Second, member.leave, log)
	shard.S.Close()
	return err
}

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
}

// RunWorker joins the cluster and works until the run is done or ctx ends.
func RunWorker(ctx context.Context, o WorkerOptions, log *zap.Logger) error {
	if err := o.initTransport(log, rpc.RoleWorker); err != nil {
		return err
	}
	promReg := metrics.NewRegistry()
	var ready atomic.Bool // joined, working
	hs, err := startHTTP(ctx, o.HTTPListen, promReg, ready.Load, nil, log)
	if err != nil {
		return err
	}
	defer hs.Close()
	var nanLoss bool
	defer func() {
		// Runs after the worker left the cluster: keep /metrics up long
		// enough for Prometheus to scrape the NaN-loss counter.
		if nanLoss && hs != nil {
			log.Info("non-finite loss: serving metrics a little longer before exiting", zap.Duration("linger", nanLinger))
			select {
			case <-time.After(nanLinger):
			case <-ctx.Done():
			}
		}
	}()
	name := memberName(fmt.Sprintf("worker-%d", o.Slot))
	conn, cc, resp, err := joinCoordinator(ctx, o.Coordinator, o.dialOptions(), rpc.RoleWorker, o.Slot, "", name, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	a := resp.GetAssignment()
	slot := int(resp.GetSlot())
	wm, err := metrics.NewWorker(promReg, slot)
	if err != nil {
		return err
	}
	defer func() {
		lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = cc.Leave(lctx, rpc.RoleWorker, slot)
		cancel()
	}()
	var cfg train.Config
	if err := json.Unmarshal([]byte(a.GetTrainConfigJson()), &cfg); err != nil {
		return fmt.Errorf("the coordinator's training config: %w", err)
	}
	if o.DataDir != "" {
		cfg.DataDir = o.DataDir
	}
	threads := o.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	runtime.GOMAXPROCS(threads)
	dev := o.Device
	if dev == "" {
		dev = device.Default
	}
	be, desc, err := device.Open(dev, threads)
	if err != nil {
		return err
	}
	log.Info(desc, zap.String("device", dev), zap.String("backend", be.Name()))
	m, err := models.New(be, cfg.Model, cfg.ModelConfig)
	if err != nil {
		return err
	}
	ds, err := data.Open(cfg.Dataset, cfg.DataDir, "train", data.ForInput(m.Input).WithShared(func(msg string) { log.Info(msg) }))
	if err != nil {
		return err
	}
	if err := ds.Info().Fits(cfg.Model, m.Input, m.Classes); err != nil {
		return err
	}
	wcfg := cfg
	// NewWorker builds the objective from the coordinator's config and, for
	// ensemble-adv, loads the static models from its --static-models paths
	// (which must exist on this worker's machine too).
	tw, err := train.NewWorker(wcfg, m, data.NewLoader(ds, data.LoaderOptions{Seed: uint64(cfg.Seed), NoAugment: !cfg.Augment}))
	if err != nil {
		return err
	}
	if len(cfg.StaticModels) > 0 {
		log.Info("static models loaded", zap.Strings("static_models", cfg.StaticModels), zap.String("source_schedule", cfg.SourceSchedule))
	}
	conns := &connCache{opts: o.dialOptions(), conns: map[string]*grpc.ClientConn{}}
	defer conns.close()
	book := &addressBook{cc: cc, slot: slot, a: a, rejoin: func(ctx context.Context) error { return rejoinSlot(ctx, cc, slot, name, log) }}
	shards := make([]worker.Shard, len(a.GetShards()))
	ranges := make([]worker.Range, len(a.GetShards()))
	for k, si := range a.GetShards() {
		shards[k] = wm.Shard(k, &workerShard{k: k, slot: slot, book: book, conns: conns})
		ranges[k] = worker.Range{Lo: int(si.GetLo()), Hi: int(si.GetHi()), BufLo: int(si.GetBufferLo()), BufHi: int(si.GetBufferHi())}
	}
	gossip, err := o.startGossip(ctx, name, membership.Meta{Role: rpc.RoleWorker, Slot: slot}, nil)
	if err != nil {
		return err
	}
	// Deferred last, so it runs first: the worker leaves gossip, then closes
	// its shard connections and gives its slot back (Leave RPC).
	defer newGossipMember(gossip, log).leave()
	if o.AddrFile != "" {
		if err := WriteAddrs(o.AddrFile, Addrs{GRPC: "worker", Gossip: gossip.Addr(), HTTP: hs.Addr()}); err != nil {
			return err
		}
	}
	go rejoinGossip(ctx, gossip, o.GossipJoin)
	rc := &rejoiningCoord{CoordClient: cc, slot: slot, node: name, log: log, book: book}
	wk, err := worker.New(worker.Config{Slot: slot, Workers: int(a.GetDataShards()), Steps: cfg.Steps, PullTimeout: 10 * time.Second}, tw, shards, ranges, wm.Coordinator(rc), log)
	if err != nil {
		return err
	}
	log.Info("worker running", zap.Int("slot", slot), zap.Int("workers", int(a.GetDataShards())), zap.Int64("from_step", a.GetStartStep()))
	ready.Store(true)
	err = wk.Run(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	nanLoss = wm.RunError(err)
	return err
}

// addressBook keeps a worker's assignment and refreshes it from the
// coordinator when a shard cannot be reached (a restarted shard may listen
// elsewhere). When the coordinator no longer holds this worker's slot (it
// restarted, or gossip declared this worker dead while it was only slow), the
// worker joins again for the same slot instead of asking forever.
type addressBook struct {
	mu     sync.Mutex
	cc     *rpc.CoordClient
	slot   int
	a      *coordinatorv1.Assignment
	stale  bool
	rejoin func(ctx context.Context) error
}

func (b *addressBook) address(ctx context.Context, k int) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stale {
		a, err := b.cc.GetAssignment(ctx, rpc.RoleWorker, b.slot)
		if status.Code(err) == codes.NotFound && b.rejoin != nil {
			if jerr := b.rejoin(ctx); jerr != nil {
				return "", jerr
			}
			a, err = b.cc.GetAssignment(ctx, rpc.RoleWorker, b.slot)
		}
		if err != nil {
			return "", fmt.Errorf("refreshing the assignment: %w", err)
		}
		b.a, b.stale = a, false
	}
	addr := b.a.GetShards()[k].GetAddress()
	if addr == "" {
		b.stale = true
		return "", fmt.Errorf("shard %d has no address yet", k)
	}
	return addr, nil
}

func (b *addressBook) invalidate() {
	b.mu.Lock()
	b.stale = true
	b.mu.Unlock()
}

// workerShard is shard k as a worker reaches it, following its address.
type workerShard struct {
	k     int
	slot  int
	book  *addressBook
	conns *connCache
}

func (w *workerShard) client(ctx context.Context) (*rpc.PSClient, error) {
	addr, err := w.book.address(ctx, w.k)
	if err != nil {
		return nil, err
	}
	c, err := w.conns.get(addr)
	if err != nil {
		return nil, err
	}
	return rpc.NewPSClient(c, w.k, rpc.WithWorkerSlot(w.slot)), nil
}

func (w *workerShard) check(err error) error {
	if status.Code(err) == codes.Unavailable {
		w.book.invalidate()
	}
	return err
}

func (w *workerShard) Pull(ctx context.Context, step int64) ([]float32, []float32, error) {
	c, err := w.client(ctx)
	if err != nil {
		return nil, nil, err
	}
	p, b, err := c.Pull(ctx, step)
	return p, b, w.check(err)
}

func (w *workerShard) Push(ctx context.Context, step int64, worker int, g, b []float32) error {
	c, err := w.client(ctx)
	if err != nil {
		return err
	}
	return w.check(c.Push(ctx, step, worker, g, b))
}

// heartbeat calls fn every interval until ctx ends.
func heartbeat(ctx context.Context, every time.Duration, fn func(ctx context.Context)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, every)
			fn(cctx)
			cancel()
		}
	}
}

// rejoinGossip re-joins the gossip cluster through the coordinator's gossip
// address whenever no coordinator is among the live members (it restarted).
func rejoinGossip(ctx context.Context, n *membership.Node, addr string) {
	if addr == "" {
		return
	}
	heartbeat(ctx, 2*time.Second, func(context.Context) {
		for _, m := range n.Live() {
			if m.Role == "coordinator" {
				return
			}
		}
		_ = n.Join(addr)
	})
}

// rejoiningCoord is the coordinator as a worker reaches it: when the
// coordinator does not hold this worker's slot any more, the worker joins
// again asking for the same slot, then retries.
type rejoiningCoord struct {
	*rpc.CoordClient
	slot int
	node string
	log  *zap.Logger
	book *addressBook
}

func (r *rejoiningCoord) Report(ctx context.Context, step int64, slot int, terms objective.Terms, t worker.Timing) (bool, worker.StepState, error) {
	ok, st, err := r.CoordClient.Report(ctx, step, slot, terms, t)
	if status.Code(err) != codes.NotFound {
		return ok, st, err
	}
	if err := rejoinSlot(ctx, r.CoordClient, r.slot, r.node, r.log); err != nil {
		return false, st, err
	}
	r.book.invalidate()
	return r.CoordClient.Report(ctx, step, slot, terms, t)
}

// rejoinSlot joins the coordinator again for slot after it released it (a
// restarted coordinator forgot it; or gossip declared this worker dead while
// it was only slow — a loaded machine misses probe deadlines). Another
// worker holding the slot by now stops this one.
func rejoinSlot(ctx context.Context, cc *rpc.CoordClient, slot int, node string, log *zap.Logger) error {
	resp, err := cc.Join(ctx, rpc.RoleWorker, slot, "", node)
	if err != nil {
		return fmt.Errorf("joining the coordinator again: %w", err)
	}
	if int(resp.GetSlot()) != slot {
		_ = cc.Leave(ctx, rpc.RoleWorker, int(resp.GetSlot()))
		return fmt.Errorf("%w: the coordinator gave slot %d to another worker", worker.ErrFatal, slot)
	}
	log.Info("joined the coordinator again (it had released this worker's slot)", zap.Int("slot", slot))
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
