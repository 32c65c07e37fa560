package node

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/logitpair/logitpair/pkg/atomicfile"
	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/statuspage"
	"github.com/logitpair/logitpair/pkg/tlsutil"
	"github.com/logitpair/logitpair/pkg/train"
)

// LocalCluster describes `logitpair cluster local`: a whole cluster as
// separate processes on loopback, each a subcommand of the same executable.
type LocalCluster struct {
	Exe              string // the logitpair executable
	Dir              string // run directory: logs, addresses, secrets, checkpoints
	Workers, Backups int
	PS               int
	Elastic          bool
	Train            train.Config
	// AllowConfigChange is the coordinator's --allow-config-change.
	AllowConfigChange []string
	// NoTLS runs the processes without mutual TLS (by default the
	// launcher mints a development CA and a certificate per role into DIR/tls).
	NoTLS bool
	// SyntheticCompute, when set, starts the workers with
	// --synthetic-compute (WorkerOptions.SyntheticCompute): benchmarks only.
	SyntheticCompute *time.Duration
	// StartTimeout bounds the start: the coordinator's, then that of the
	// shards and workers together (default 2 minutes).
	StartTimeout time.Duration
	// DoneGrace is how long Run lets the coordinator exit by itself once
	// the run's completion is recorded before stopping it (default 1
	// minute); StopGrace how long processes get between SIGTERM and
	// SIGKILL when Run stops them (default 15 seconds).
	DoneGrace, StopGrace time.Duration
	Out                  io.Writer
	// ProgressEvery is how often Run prints a progress summary from the
	// coordinator's status (0: DefaultProgressEvery; < 0: never).
	// Terminal (Out is one) redraws a live bar instead.
	ProgressEvery time.Duration
	Terminal      bool
}

// withDefaults fills the unset durations and the run directory.
func (l LocalCluster) withDefaults() LocalCluster {
	if l.StartTimeout <= 0 {
		l.StartTimeout = 2 * time.Minute
	}
	if l.DoneGrace <= 0 {
		l.DoneGrace = time.Minute
	}
	if l.StopGrace <= 0 {
		l.StopGrace = 15 * time.Second
	}
	if l.Dir == "" {
		l.Dir = l.Train.Out
	}
	return l
}

// Proc is one launched process.
type Proc struct {
	Name string
	Args []string
	Cmd  *exec.Cmd
	Addr Addrs
	done chan error
	log  *os.File
}

// Addrs is what a process writes to its address file once it listens.
type Addrs struct {
	GRPC   string `json:"grpc"`
	Gossip string `json:"gossip"`
	// HTTP is the /metrics, /healthz and /readyz endpoint (empty when
	// disabled).
	HTTP string `json:"http,omitempty"`
}

// ReadAddrs reads an address file.
func ReadAddrs(path string) (Addrs, error) {
	var a Addrs
	b, err := os.ReadFile(path)
	if err != nil {
		return a, err
	}
	return a, json.Unmarshal(b, &a)
}

// WriteAddrs writes an address file atomically.
func WriteAddrs(path string, a Addrs) error {
	b, _ := json.Marshal(a)
	return atomicfile.Write(path, b, 0o644)
}

// Secrets are a run's gossip key and join token.
type Secrets struct {
	GossipKey string `json:"gossip_key"`
	JoinToken string `json:"join_token"`
}

// NewSecrets draws a fresh 32-byte gossip key and a 128-bit join token.
func NewSecrets() (Secrets, error) {
	k := make([]byte, 32)
	t := make([]byte, 16)
	if _, err := rand.Read(k); err != nil {
		return Secrets{}, err
	}
	if _, err := rand.Read(t); err != nil {
		return Secrets{}, err
	}
	return Secrets{GossipKey: base64.StdEncoding.EncodeToString(k), JoinToken: hex.EncodeToString(t)}, nil
}

// Cluster is a running local cluster.
type Cluster struct {
	L       LocalCluster
	Secrets Secrets
	// TLS are the certificate files of each role's processes, by role
	// (empty with NoTLS).
	TLS     map[string]tlsutil.Files
	Coord   *Proc
	PS      []*Proc
	Workers []*Proc
	// Notes are what went wrong without stopping the run (e.g. a worker
	// that could not start because the run had already completed).
	Notes []string
}

func (l LocalCluster) logf(format string, a ...any) {
	if l.Out != nil {
		fmt.Fprintf(l.Out, format+"\n", a...)
	}
}

// Start launches the coordinator and, once it listens, the shards and the
// workers all at once: they depend only on the coordinator's addresses (a
// worker learns the shards' from it and retries its join until they have
// registered), so starting them one by one only made a large layout slow
// to start (53 workers and 17 shards took minutes). Start returns when
// every process has announced its address, within StartTimeout.
//
// A process that fails to start stops the others and Start returns its
// error — unless the run completed meanwhile (a short run on a large
// layout can end before its last workers are up): such a process is only
// noted (Notes) and its entry in PS or Workers stays nil.
func (l LocalCluster) Start(ctx context.Context) (*Cluster, error) {
	l = l.withDefaults()
	for _, d := range []string{"logs", "addr", "coordinator"} {
		if err := os.MkdirAll(filepath.Join(l.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	sec, err := NewSecrets()
	if err != nil {
		return nil, err
	}
	sb, _ := json.Marshal(sec)
	if err := os.WriteFile(filepath.Join(l.Dir, "secrets.json"), sb, 0o600); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(l.Dir, "train-config.json")
	tc := l.Train
	tc.Out = filepath.Join(l.Dir, "coordinator")
	cb, _ := json.MarshalIndent(tc, "", "  ")
	if err := os.WriteFile(cfgPath, cb, 0o644); err != nil {
		return nil, err
	}
	c := &Cluster{L: l, Secrets: sec}
	if !l.NoTLS {
		if c.TLS, err = mintLocalCerts(filepath.Join(l.Dir, "tls")); err != nil {
			return nil, err
		}
	}
	common := []string{"--join-token", sec.JoinToken, "--gossip-key", sec.GossipKey, "--gossip-bind", "127.0.0.1:0", "--gossip-fast", "--log-format", "console"}
	coordArgs := append([]string{"coordinator", "--listen", "127.0.0.1:0", "--dir", filepath.Join(l.Dir, "coordinator"),
		"--workers", strconv.Itoa(l.Workers), "--backups", strconv.Itoa(l.Backups), "--ps", strconv.Itoa(l.PS),
		"--config", cfgPath, "--elastic=" + strconv.FormatBool(l.Elastic)}, append(common, c.tlsArgs(tlsutil.RoleCoordinator)...)...)
	if len(l.AllowConfigChange) > 0 {
		coordArgs = append(coordArgs, "--allow-config-change", strings.Join(l.AllowConfigChange, ","))
	}
	t0 := time.Now()
	if c.Coord, err = l.launch(ctx, "coordinator", coordArgs); err != nil {
		c.Stop(5 * time.Second)
		return nil, err
	}
	c.PS, c.Workers = make([]*Proc, l.PS), make([]*Proc, l.Workers)
	// One deadline for all of them (each launch also stops waiting after
	// StartTimeout); the first real failure cancels the rest.
	sctx, abort := context.WithCancel(ctx)
	defer abort()
	var mu sync.Mutex
	var failed []error
	var wg sync.WaitGroup
	start := func(name string, launch func() (*Proc, error), into **Proc) {
		wg.Go(func() {
			p, err := launch()
			if err == nil {
				*into = p
				return
			}
			if sctx.Err() != nil {
				return // aborted after another failure (reported) or interrupted (ctx's error is)
			}
			if c.runEnding(ctx) {
				mu.Lock()
				first, _, _ := strings.Cut(err.Error(), "\n")
				c.Notes = append(c.Notes, fmt.Sprintf("%s did not start (%s), but the run completed without it", name, first))
				mu.Unlock()
				return
			}
			mu.Lock()
			failed = append(failed, err)
			mu.Unlock()
			abort()
		})
	}
	for k := range l.PS {
		start(fmt.Sprintf("ps-%d", k), func() (*Proc, error) { return l.StartPS(sctx, c, k) }, &c.PS[k])
	}
	for w := range l.Workers {
		start(fmt.Sprintf("worker-%d", w), func() (*Proc, error) { return l.StartWorker(sctx, c, w) }, &c.Workers[w])
	}
	wg.Wait()
	if len(failed) > 0 || ctx.Err() != nil {
		c.Stop(5 * time.Second)
		if len(failed) == 0 {
			return nil, ctx.Err()
		}
		return nil, errors.Join(failed...)
	}
	l.logf("started %d shards and %d workers in %.1fs", l.PS, l.Workers, time.Since(t0).Seconds())
	return c, nil
}

// runEnding reports, after a process failed to start, whether that is
// because the run is over: its completion is recorded, or the coordinator
// has committed the last step (its /status.json says "done") and records
// the completion before the start deadline — the final checkpoint comes
// after the last commit, and a worker that joins in between finds nothing
// left to do. Every wait in it is bounded by StartTimeout.
func (c *Cluster) runEnding(ctx context.Context) bool {
	l := c.L
	if done, _ := l.completed(); done {
		return true
	}
	if !c.coordinatorSaysDone() {
		return false
	}
	deadline := time.Now().Add(l.StartTimeout)
	for wait := 100 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, 2*time.Second) {
		if done, _ := l.completed(); done {
			return true
		}
		select {
		case err := <-c.Coord.done:
			c.Coord.done <- err
			done, _ := l.completed()
			return done
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
	return false
}

// coordinatorSaysDone asks the coordinator's /status.json whether the run
// reached its step count (false when it cannot tell within 10 seconds).
func (c *Cluster) coordinatorSaysDone() bool {
	st, err := c.CoordinatorStatus(10 * time.Second)
	return err == nil && st.Run.Phase == statuspage.PhaseDone
}

// CoordinatorStatus reads the coordinator's /status.json (its state and
// its recent committed steps, with their commit times), waiting at most
// timeout.
func (c *Cluster) CoordinatorStatus(timeout time.Duration) (statuspage.Snapshot, error) {
	var st statuspage.Snapshot
	err := c.getStatus(timeout, &st)
	return st, err
}

// completed reports whether the run in l.Dir is complete: the coordinator
// records its newest consistent checkpoint in its directory, and writes the
// one at step Steps only once the last step is committed and applied on
// every shard, just before it reports the run done. It also returns that
// checkpoint's step (−1: none recorded).
func (l LocalCluster) completed() (bool, int64) {
	step, ok, err := FileCheckpointsOf(filepath.Join(l.Dir, "coordinator"))
	if err != nil || !ok {
		return false, -1
	}
	return step >= l.Train.Steps, step
}

// mintLocalCerts mints a development CA and one certificate per role
// (the servers' for localhost and the loopback addresses) into dir
// (replacing an earlier run's; the CA key is not kept) and returns each
// role's files.
func mintLocalCerts(dir string) (map[string]tlsutil.Files, error) {
	files, err := tlsutil.Mint(tlsutil.MintOptions{Hosts: "localhost,127.0.0.1,::1"})
	if err != nil {
		return nil, err
	}
	if _, err := tlsutil.WriteDir(dir, files, true); err != nil {
		return nil, err
	}
	out := map[string]tlsutil.Files{}
	for _, r := range tlsutil.AllRoles {
		out[r] = tlsutil.RoleFiles(dir, r)
	}
	return out, nil
}

// tlsArgs are the --tls-* flags of a process of role (none with NoTLS).
func (c *Cluster) tlsArgs(role string) []string {
	f, ok := c.TLS[role]
	if !ok {
		return nil
	}
	return []string{"--tls-ca", f.CA, "--tls-cert", f.Cert, "--tls-key", f.Key}
}

// StartWorker launches worker w (asking for slot w), e.g. to replace a
// killed one.
func (l LocalCluster) StartWorker(ctx context.Context, c *Cluster, w int) (*Proc, error) {
	args := []string{"worker", "--slot", strconv.Itoa(w), "--threads", "1", "--coordinator", c.Coord.Addr.GRPC, "--gossip-join", c.Coord.Addr.Gossip,
		"--join-token", c.Secrets.JoinToken, "--gossip-key", c.Secrets.GossipKey, "--gossip-bind", "127.0.0.1:0", "--gossip-fast", "--log-format", "console"}
	args = append(args, c.tlsArgs(tlsutil.RoleWorker)...)
	if l.SyntheticCompute != nil {
		args = append(args, "--"+SyntheticComputeFlag, l.SyntheticCompute.String())
	}
	return l.launch(ctx, fmt.Sprintf("worker-%d", w), args)
}

// StartPS launches (or relaunches) shard k.
func (l LocalCluster) StartPS(ctx context.Context, c *Cluster, k int) (*Proc, error) {
	args := []string{"paramserver", "--index", strconv.Itoa(k), "--listen", "127.0.0.1:0", "--dir", filepath.Join(l.Dir, fmt.Sprintf("ps-%d", k)),
		"--coordinator", c.Coord.Addr.GRPC, "--gossip-join", c.Coord.Addr.Gossip,
		"--join-token", c.Secrets.JoinToken, "--gossip-key", c.Secrets.GossipKey, "--gossip-bind", "127.0.0.1:0", "--gossip-fast", "--log-format", "console"}
	args = append(args, c.tlsArgs(tlsutil.RoleParamServer)...)
	return l.launch(ctx, fmt.Sprintf("ps-%d", k), args)
}

// StartCoordinator relaunches the coordinator on the same directory and
// addresses file (its listen address is kept so the others reconnect),
// with extra flags after its own (they override them).
func (l LocalCluster) StartCoordinator(ctx context.Context, c *Cluster, extra ...string) (*Proc, error) {
	args := append([]string(nil), c.Coord.Args...)
	for i := range args {
		if args[i] == "--listen" {
			args[i+1] = c.Coord.Addr.GRPC
		}
		if args[i] == "--gossip-bind" {
			args[i+1] = c.Coord.Addr.Gossip
		}
	}
	return l.launch(ctx, "coordinator", append(args, extra...))
}

func (l LocalCluster) launch(ctx context.Context, name string, args []string) (*Proc, error) {
	addrFile := filepath.Join(l.Dir, "addr", name+".json")
	os.Remove(addrFile)
	args = append(args, "--addr-file", addrFile, "--http-listen", "127.0.0.1:0")
	logPath := filepath.Join(l.Dir, "logs", name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(l.Exe, args...)
	cmd.Env = processEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{Name: name, Args: args, Cmd: cmd, done: make(chan error, 1), log: logf}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	deadline := time.NewTimer(l.StartTimeout)
	defer deadline.Stop()
	// Polls the address file, quickly at first (most processes announce
	// within a second), then every 250 ms.
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 250*time.Millisecond) {
		if a, err := ReadAddrs(addrFile); err == nil && a.GRPC != "" {
			p.Addr = a
			if !strings.HasPrefix(name, "worker-") { // 53 worker lines would drown the rest; their logs are in DIR/logs
				l.logf("started %s (pid %d) on %s", name, cmd.Process.Pid, a.GRPC)
			}
			return p, nil
		}
		select {
		case err := <-p.done:
			p.done <- err
			// Its last lines say why (e.g. a coordinator refusing a changed
			// configuration on an existing directory).
			return nil, fmt.Errorf("%s exited before listening (%v); the end of %s:\n%s", name, err, logPath, logTail(logPath, 5))
		case <-deadline.C:
			p.Kill()
			return nil, fmt.Errorf("%s did not announce its address within %v", name, l.StartTimeout)
		case <-ctx.Done():
			p.Kill()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// localGOGC is the Go garbage collector's target every process of a local
// cluster gets unless GOGC is set: they run by the dozen on one machine, so
// their headroom adds up, and collecting at 1.5× the live heap instead of
// Go's default 2× takes about a quarter off each process's memory for some
// 7% more CPU (measured at batch 8: docs/BENCHMARKS.md).
const localGOGC = "50"

// processEnv is env with GOGC=localGOGC added when env does not set GOGC.
func processEnv(env []string) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "GOGC=") {
			return env
		}
	}
	return append(env[:len(env):len(env)], "GOGC="+localGOGC)
}

// Kill ends the process at once (SIGKILL), as a crash would.
func (p *Proc) Kill() {
	if p != nil && p.Cmd.Process != nil {
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Exited reports, without waiting, whether the process has exited, and
// how (nil for exit status 0).
func (p *Proc) Exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Wait waits for the process to exit, at most timeout (with timeout 0 it
// only looks).
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case err := <-p.done:
		p.done <- err
		return err
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-t.C:
		return fmt.Errorf("%s still running after %v", p.Name, timeout)
	}
}

// Stop ends every process: SIGTERM (graceful shutdown), then SIGKILL to
// those still running after grace. It waits at most about twice grace in
// all, whatever the number of processes.
func (c *Cluster) Stop(grace time.Duration) { c.stop(grace) }

// procExit is how a process ended: Err is nil for exit status 0.
type procExit struct {
	Name string
	Err  error
}

// stop is Stop, returning the processes that exited with an error or had
// to be killed, in the order coordinator, shards, workers.
func (c *Cluster) stop(grace time.Duration) []procExit {
	var all []*Proc
	if c.Coord != nil {
		all = append(all, c.Coord)
	}
	all = append(all, c.PS...)
	all = append(all, c.Workers...)
	for _, p := range all {
		if p != nil && p.Cmd.Process != nil {
			_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(grace)
	exits := make([]*procExit, len(all))
	var wg sync.WaitGroup
	for i, p := range all {
		if p == nil {
			continue
		}
		wg.Go(func() {
			err := p.Wait(max(time.Until(deadline), 0))
			if err != nil && strings.Contains(err.Error(), "still running") {
				p.Kill()
				if werr := p.Wait(grace); werr != nil && strings.Contains(werr.Error(), "still running") {
					err = werr
				} else {
					err = fmt.Errorf("killed after not stopping within %v of SIGTERM", grace)
				}
			}
			if err != nil {
				exits[i] = &procExit{Name: p.Name, Err: err}
			}
		})
	}
	wg.Wait()
	var out []procExit
	for _, e := range exits {
		if e != nil {
			out = append(out, *e)
		}
	}
	return out
}

// LogTail returns the last n lines of a process's log (for error messages).
func (c *Cluster) LogTail(name string, n int) string {
	return logTail(filepath.Join(c.L.Dir, "logs", name+".log"), n)
}

// logTail returns the last n lines of the file at path ("" when unreadable).
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// ErrNotDone is returned when the coordinator exits before the run's end.
var ErrNotDone = errors.New("the coordinator exited before the run was done")

// Run is `logitpair cluster local`: it runs the cluster until its run is
// complete and returns nil exactly when it is, however the processes ended
// after that (their failures are printed as notes).
//
// Completion is what the coordinator records: its newest consistent
// checkpoint (DIR/coordinator/cluster-checkpoint.json), which reaches step
// Steps only once the last step is committed and applied on every shard.
// On a directory whose run is already complete Run says so and returns nil
// at once, starting nothing. On one whose run stopped early it starts the
// cluster, and the coordinator resumes from its commit log; so does a
// complete run with a higher --steps, which continues from its last step
// (with the same other training flags).
//
// Waits: the start is bounded by StartTimeout; the run itself takes as long
// as it takes and ends on ctx (SIGINT/SIGTERM); once the completion is
// recorded the coordinator gets DoneGrace to exit, and stopping the others
// takes at most about twice StopGrace.
func (l LocalCluster) Run(ctx context.Context) error {
	l = l.withDefaults()
	if done, step := l.completed(); done {
		l.logf("run in %s already finished at step %d; nothing to do (use a new --out, or raise --steps to continue)", l.Dir, step)
		return nil
	} else if step >= 0 {
		l.logf("resuming the run in %s: checkpoint at step %d of %d", l.Dir, step, l.Train.Steps)
		if l.startedWithFewerSteps() && !slices.Contains(l.AllowConfigChange, "steps") {
			// Raising --steps is how `cluster local` continues a run; the
			// coordinator only accepts that change when told.
			l.AllowConfigChange = append(slices.Clone(l.AllowConfigChange), "steps")
		}
	}
	start := time.Now()
	c, err := l.Start(ctx)
	if err != nil {
		return err
	}
	l.logf("cluster running: %d workers (%d backups), %d shards; logs in %s", l.Workers, l.Backups, l.PS, filepath.Join(l.Dir, "logs"))
	for _, line := range c.addressLines() {
		l.logf("%s", line)
	}
	pctx, stopProgress := context.WithCancel(ctx)
	progressDone := make(chan struct{})
	go func() { defer close(progressDone); c.reportProgress(pctx, start) }()
	end := c.waitRun(ctx)
	stopProgress()
	<-progressDone
	end.exits = c.stop(l.StopGrace)
	end.notes = c.Notes
	notes, err := end.verdict()
	for _, n := range notes {
		l.logf("note: %s", n)
	}
	if err != nil {
		if end.coordErr != nil {
			return fmt.Errorf("%w\n%s", err, c.LogTail("coordinator", 20))
		}
		return err
	}
	l.logf("done: %s", filepath.Join(l.Dir, "coordinator", checkpoint.ModelFileName(end.checkpoint)))
	return nil
}

// startedWithFewerSteps reports whether the coordinator's run record
// (DIR/coordinator/run.json) has a smaller --steps than l.
func (l LocalCluster) startedWithFewerSteps() bool {
	rec, ok, err := cluster.ReadRunRecord(filepath.Join(l.Dir, "coordinator"))
	return err == nil && ok && rec.Train.Steps < l.Train.Steps
}

// runEnd is what Run saw when the run ended; verdict turns it into Run's
// result.
type runEnd struct {
	steps int64 // the run's length
	// checkpoint is the newest consistent checkpoint's step (−1: none).
	checkpoint int64
	// coordExited: the coordinator exited by itself, with coordErr.
	coordExited bool
	coordErr    error
	// interrupted is ctx's error when Run was interrupted.
	interrupted error
	// exits are the processes that exited with an error or were killed;
	// notes what the start noted.
	exits []procExit
	notes []string
}

// waitRun waits until the coordinator exits, the run's completion has been
// recorded for DoneGrace, or ctx ends.
func (c *Cluster) waitRun(ctx context.Context) runEnd {
	l := c.L
	end := runEnd{steps: l.Train.Steps}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var doneAt time.Time
wait:
	for {
		select {
		case err := <-c.Coord.done:
			c.Coord.done <- err
			end.coordExited, end.coordErr = true, err
			break wait
		case <-ctx.Done():
			end.interrupted = ctx.Err()
			break wait
		case now := <-tick.C:
			if doneAt.IsZero() {
				if done, _ := l.completed(); done {
					doneAt = now
				}
			} else if now.Sub(doneAt) > l.DoneGrace {
				break wait
			}
		}
	}
	_, end.checkpoint = l.completed()
	return end
}

// verdict decides Run's result: nil when the run is complete, whatever
// else happened (each oddity becomes a note); otherwise an error saying how
// far the run got.
func (e runEnd) verdict() (notes []string, err error) {
	notes = append(notes, e.notes...)
	done := e.checkpoint >= e.steps
	if done && !e.coordExited {
		notes = append(notes, "the coordinator had not exited after the run completed; it was stopped")
	}
	if done && e.coordExited && e.coordErr != nil {
		notes = append(notes, fmt.Sprintf("the coordinator exited with %v after the run completed", e.coordErr))
	}
	for _, x := range e.exits {
		if x.Name == "coordinator" && e.coordExited {
			continue // said above
		}
		notes = append(notes, fmt.Sprintf("%s: %v", x.Name, x.Err))
	}
	if done {
		return notes, nil
	}
	progress := "no checkpoint recorded"
	if e.checkpoint >= 0 {
		progress = fmt.Sprintf("newest checkpoint at step %d of %d", e.checkpoint, e.steps)
	}
	switch {
	case e.interrupted != nil:
		return notes, fmt.Errorf("interrupted before the run completed (%s; run the same command again to resume): %w", progress, e.interrupted)
	case e.coordErr != nil:
		return notes, fmt.Errorf("coordinator: %w (%s)", e.coordErr, progress)
	default:
		return notes, fmt.Errorf("%w (%s)", ErrNotDone, progress)
	}
}
