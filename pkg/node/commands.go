package node

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/device"
	"github.com/logitpair/logitpair/pkg/train"
)

func bindCommon(fs *pflag.FlagSet, c *Common) {
	fs.StringVar(&c.JoinToken, "join-token", os.Getenv("LOGITPAIR_JOIN_TOKEN"), "cluster join token every RPC must carry (env LOGITPAIR_JOIN_TOKEN)")
	fs.StringVar(&c.GossipKey, "gossip-key", os.Getenv("LOGITPAIR_GOSSIP_KEY"), "base64 AES key (16/24/32 bytes) encrypting memberlist gossip (env LOGITPAIR_GOSSIP_KEY)")
	fs.StringVar(&c.GossipBind, "gossip-bind", "0.0.0.0:7946", "gossip listen address (port 0: OS-chosen)")
	fs.StringVar(&c.GossipJoin, "gossip-join", "", "gossip address of a member to join (the coordinator's)")
	fs.BoolVar(&c.GossipFast, "gossip-fast", false, "short gossip timers (loopback clusters and tests)")
	fs.StringVar(&c.AddrFile, "addr-file", "", "write the listen addresses here as JSON once listening")
	fs.StringVar(&c.LogFormat, "log-format", "json", "log format: json (production) or console (development)")
	fs.StringVar(&c.HTTPListen, "http-listen", "0.0.0.0:9400", "HTTP endpoint for /metrics (Prometheus), /healthz and /readyz (\"\": disabled)")
	fs.StringVar(&c.TLSCA, "tls-ca", os.Getenv("LOGITPAIR_TLS_CA"), "PEM CA bundle for mutual TLS on every gRPC connection; with --tls-cert and --tls-key (env LOGITPAIR_TLS_CA)")
	fs.StringVar(&c.TLSCert, "tls-cert", os.Getenv("LOGITPAIR_TLS_CERT"), "PEM certificate this process presents as server and client, signed by --tls-ca (env LOGITPAIR_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", os.Getenv("LOGITPAIR_TLS_KEY"), "PEM private key of --tls-cert (env LOGITPAIR_TLS_KEY)")
	fs.StringVar(&c.TLSServerName, "tls-server-name", os.Getenv("LOGITPAIR_TLS_SERVER_NAME"), "name servers' certificates must carry (default: the dialed host; env LOGITPAIR_TLS_SERVER_NAME)")
}

// SignalContext ends on SIGINT or SIGTERM (the processes, `cluster local`
// and `bench cluster` stop gracefully on either).
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// ProfileDirEnv names the environment variable that makes every process
// (coordinator, parameter server, worker) write a CPU profile of its whole
// life to DIR/ROLE-PID.prof, e.g.
// `LOGITPAIR_CPU_PROFILE_DIR=/tmp/prof logitpair bench cluster` (the
// launcher passes the environment on).
const ProfileDirEnv = "LOGITPAIR_CPU_PROFILE_DIR"

// startProfile starts the CPU profile ProfileDirEnv asks for; the returned
// function stops and closes it.
func startProfile(log *zapLogger) func() {
	dir := os.Getenv(ProfileDirEnv)
	if dir == "" {
		return func() {}
	}
	role := "process"
	if len(os.Args) > 1 {
		role = filepath.Base(os.Args[1])
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.prof", role, os.Getpid()))
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		log.Warn("no CPU profile ("+ProfileDirEnv+")", zap.String("path", path), zap.Error(err))
		if f != nil {
			f.Close()
		}
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

func runWithLogger(format string, fn func(ctx context.Context, log *zapLogger) error) error {
	log, err := NewLogger(format)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // last in the shutdown order
	defer startProfile(log)()
	ctx, stop := SignalContext()
	defer stop()
	return fn(ctx, log)
}

// CoordinatorCommand is `coordinator`: the cluster's coordinator.
func CoordinatorCommand() *cobra.Command {
	return coordinatorCommand(func(o CoordinatorOptions) error {
		return runWithLogger(o.LogFormat, func(ctx context.Context, log *zapLogger) error { return RunCoordinator(ctx, o, log) })
	})
}

// coordinatorIgnoredFlags are the shared training flags (train.BindFlags)
// that mean nothing to the coordinator, with what to use instead. Given on
// its command line they are errors; set in a --config file (shared with
// `logitpair train`) they are ignored.
var coordinatorIgnoredFlags = []struct{ name, instead string }{
	{"out", "the coordinator writes its commit log and checkpoints to --dir; use --dir"},
	{"resume", "the coordinator always resumes from the commit log and checkpoints in --dir: start it again with the same --dir (and --listen)"},
	{"resume-from", "the coordinator resumes from the newest consistent checkpoint every shard holds in --dir and the shards' dirs"},
	{"validate-every", "the cluster does not run validation: evaluate its checkpoints (--dir/ckpt-*.safetensors) with logitpair eval (the training sentinel, --sentinel-every, does run: the coordinator checks its checkpoints)"},
	{"validate-examples", "the cluster does not run validation: evaluate its checkpoints (--dir/ckpt-*.safetensors) with logitpair eval (the training sentinel, --sentinel-every, does run: the coordinator checks its checkpoints)"},
	{"threads", "compute threads are a worker's: pass --threads to each logitpair worker"},
}

// coordinatorIgnoredKeys are the configuration keys of
// coordinatorIgnoredFlags: a restarted coordinator does not compare them
// with its run's record (cluster.CheckRun).
func coordinatorIgnoredKeys() []string {
	var out []string
	for _, f := range coordinatorIgnoredFlags {
		out = append(out, f.name)
	}
	return out
}

// refuseIgnoredFlags fails on the first flag of coordinatorIgnoredFlags
// given explicitly on the command line.
func refuseIgnoredFlags(cmd *cobra.Command) error {
	for _, f := range coordinatorIgnoredFlags {
		if cmd.Flags().Changed(f.name) {
			return fmt.Errorf("coordinator: --%s is not used by the coordinator: %s", f.name, f.instead)
		}
	}
	return nil
}

// coordinatorCommand builds `coordinator` around run (tests replace it).
func coordinatorCommand(run func(CoordinatorOptions) error) *cobra.Command {
	o := CoordinatorOptions{Train: train.DefaultConfig()}
	var finalize func() error
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run the cluster's coordinator: global step, membership, commit log, backup replicas dropped",
		Long: `Run the cluster's coordinator: global step, membership, commit log, backup replicas dropped.

It takes the training flags of logitpair train (or a --config file), which it
hands to the shards and workers, except --out (use --dir), --resume (resuming
from --dir is automatic), --validate-every and --validate-examples (the cluster
does not validate; use logitpair eval on its checkpoints) and --threads (a
worker flag): given on the command line these are errors; in a --config file
they are ignored.

The training sentinel (--sentinel-every and the other --sentinel-* flags;
docs/TRAINING.md) runs here: at every checkpoint of a multiple of
--sentinel-every (which must be a multiple of --checkpoint-every) the
coordinator measures the model on the test split of --data-dir (which must
be readable on its machine: logitpair data fetch), beside training, and on a
collapse of robust accuracy or a gap between the single-step and the
multi-step attack rolls every shard back to the last good checkpoint and
lowers the learning rate. Its state is DIR/sentinel.json; too many
rollbacks stop the coordinator with an error.

The first start on a --dir records the configuration in DIR/run.json. A
restart on that --dir with a different configuration refuses to start and
names the keys that differ: the commit log replays only under the
configuration that wrote it. --allow-config-change=KEY,... lets keys that
replay does not depend on change (log-every, checkpoint-every, keep, steps,
data-dir, elastic, ...; see docs/OPERATIONS.md); the others never change on a
run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := refuseIgnoredFlags(cmd); err != nil {
				return err
			}
			if err := finalize(); err != nil {
				return err
			}
			return run(o)
		},
	}
	fs := cmd.Flags()
	bindCommon(fs, &o.Common)
	fs.StringVar(&o.Listen, "listen", "0.0.0.0:7070", "gRPC listen address")
	fs.StringVar(&o.Dir, "dir", "coordinator", "directory for the commit log and the model checkpoints")
	fs.IntVar(&o.Workers, "workers", 53, "worker slots W, backups included")
	fs.IntVar(&o.Backups, "backups", 3, "backup replicas b: a step averages the first W − b gradients")
	fs.IntVar(&o.PS, "ps", 17, "parameter-server shards")
	fs.BoolVar(&o.Elastic, "elastic", false, "with fewer than W − b live workers, average over the live ones instead of pausing")
	fs.IntVar(&o.MissedSteps, "missed-steps", 3, "a worker gossip declares dead is dropped (its slot freed) only once it has also missed this many steps: steps committed without it, or, while a step waits on it, step times (at least 5 s each)")
	fs.StringSliceVar(&o.AllowConfigChange, "allow-config-change", nil, "KEY,...: on a restart, accept changes of these keys from the configuration --dir's run was started with (only keys replay does not depend on: log-every, checkpoint-every, keep, steps, data-dir, elastic, ...)")
	finalize = train.BindFlags(fs, &o.Train)
	for _, f := range coordinatorIgnoredFlags {
		fs.Lookup(f.name).Usage = "not used by the coordinator (an error here; ignored in --config): " + f.instead
	}
	return cmd
}

// ParamServerCommand is `paramserver`: one shard.
func ParamServerCommand() *cobra.Command {
	var o ParamServerOptions
	cmd := &cobra.Command{
		Use:   "paramserver",
		Short: "Run one parameter-server shard (applies the optimizer to its range of the parameters)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Coordinator == "" {
				return fmt.Errorf("--coordinator is required")
			}
			if o.Index < 0 {
				return fmt.Errorf("--index must be ≥ 0")
			}
			return runWithLogger(o.LogFormat, func(ctx context.Context, log *zapLogger) error { return RunParamServer(ctx, o, log) })
		},
	}
	fs := cmd.Flags()
	bindCommon(fs, &o.Common)
	fs.StringVar(&o.Coordinator, "coordinator", "", "coordinator gRPC address")
	fs.StringVar(&o.Listen, "listen", "0.0.0.0:7071", "gRPC listen address")
	fs.StringVar(&o.Advertise, "advertise", "", "host:port the coordinator and workers reach this shard at (default: the listen address, this host's name when listening on all interfaces)")
	fs.StringVar(&o.Dir, "dir", "", "directory for this shard's checkpoints (default ps-INDEX)")
	fs.IntVar(&o.Index, "index", 0, "shard index")
	cmd.PreRun = func(*cobra.Command, []string) {
		if o.Dir == "" {
			o.Dir = fmt.Sprintf("ps-%d", o.Index)
		}
	}
	return cmd
}

// SyntheticComputeFlag is the worker's flag that sets
// WorkerOptions.SyntheticCompute (LocalCluster.SyntheticCompute passes it).
const SyntheticComputeFlag = "synthetic-compute"

// WorkerCommand is `worker`.
func WorkerCommand() *cobra.Command {
	return workerCommand(func(o WorkerOptions) error {
		return runWithLogger(o.LogFormat, func(ctx context.Context, log *zapLogger) error { return RunWorker(ctx, o, log) })
	})
}

// workerCommand builds `worker` around run (tests replace it).
func workerCommand(run func(WorkerOptions) error) *cobra.Command {
	var o WorkerOptions
	var synthetic time.Duration
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker: PGD + the pairing loss, gradients pushed to the shards (training flags come from the coordinator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Coordinator == "" {
				return fmt.Errorf("--coordinator is required")
			}
			if _, err := device.Parse(o.Device); err != nil {
				return err
			}
			if cmd.Flags().Changed(SyntheticComputeFlag) {
				if synthetic < 0 {
					return fmt.Errorf("--%s must be ≥ 0 (the length of the synthetic compute phase), got %v", SyntheticComputeFlag, synthetic)
				}
				o.SyntheticCompute = &synthetic
			}
			return run(o)
		},
	}
	fs := cmd.Flags()
	bindCommon(fs, &o.Common)
	fs.StringVar(&o.Coordinator, "coordinator", "", "coordinator gRPC address")
	fs.IntVar(&o.Slot, "slot", -1, "preferred worker slot (a restarted worker takes its slot back; −1: any free slot)")
	fs.IntVar(&o.Threads, "threads", 0, "compute threads (0: all cores)")
	fs.StringVar(&o.DataDir, "data-dir", "", "dataset directory on this machine (default: the coordinator's --data-dir)")
	device.Flag(fs, &o.Device)
	fs.DurationVar(&synthetic, SyntheticComputeFlag, 0, "benchmarks only (logitpair bench cluster): replace the training step by a synthetic compute phase of this length, e.g. 20ms (no model, no data; the run learns nothing)")
	return cmd
}

// ClusterCommand is `cluster` with `local`.
func ClusterCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Run a cluster"}
	l := LocalCluster{Train: train.DefaultConfig()}
	var finalize func() error
	local := &cobra.Command{
		Use:   "local",
		Short: "Start a whole cluster as separate processes on loopback and wait for the run to finish",
		Long: `Start a whole cluster as separate processes on loopback (the coordinator first, then the shards and
the workers together) and wait for the run to finish.

It exits 0 when the run is complete (the coordinator has recorded its checkpoint at --steps), whatever
the processes did after that; anything odd is printed as a note. On a directory whose run is already
complete it says so and exits 0 without starting anything: use a new --out, or raise --steps to continue
the run from its last step. On a directory whose run stopped early, the coordinator resumes it from its
commit log.

Once the cluster runs it prints the coordinator's status page and /metrics addresses, then a progress
summary from the coordinator's status every --progress-every (step, steps/s, loss, batch accuracies,
elapsed, ETA); on a terminal a live progress bar instead. ` + "`logitpair cluster status`" + ` asks a running
coordinator for its members, ` + "`logitpair cluster log DIR/coordinator`" + ` prints the commit log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := finalize(); err != nil {
				return err
			}
			if err := l.Train.Validate(); err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			l.Exe, l.Out = exe, cmd.OutOrStdout()
			if f, ok := l.Out.(*os.File); ok {
				fi, err := f.Stat()
				l.Terminal = err == nil && fi.Mode()&os.ModeCharDevice != 0
			}
			ctx, stop := SignalContext()
			defer stop()
			return l.Run(ctx)
		},
	}
	fs := local.Flags()
	fs.IntVar(&l.Workers, "workers", 4, "worker processes (backups included)")
	fs.IntVar(&l.Backups, "backups", 1, "backup replicas")
	fs.IntVar(&l.PS, "ps", 2, "parameter-server processes")
	fs.BoolVar(&l.Elastic, "elastic", false, "elastic N")
	fs.StringSliceVar(&l.AllowConfigChange, "allow-config-change", nil, "KEY,...: the coordinator's flag: on a run directory used before, accept changes of these keys that replay does not depend on")
	fs.BoolVar(&l.NoTLS, "no-tls", false, "run without mutual TLS (default: a development CA and certificate are minted into DIR/tls)")
	fs.StringVar(&l.Dir, "dir", "", "run directory (default: --out)")
	fs.DurationVar(&l.ProgressEvery, "progress-every", DefaultProgressEvery, "how often to print a progress summary when the output is not a terminal (negative: never)")
	finalize = train.BindFlags(fs, &l.Train)
	cmd.AddCommand(local)
	return cmd
}
