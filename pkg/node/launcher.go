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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/logitpair/logitpair/pkg/atomicfile"
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
	// StartTimeout bounds waiting for a process to announce its address.
	StartTimeout time.Duration
	Out          io.Writer
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
}

func (l LocalCluster) logf(format string, a ...any) {
	if l.Out != nil {
		fmt.Fprintf(l.Out, format+"\n", a...)
	}
}

// Start launches the coordinator, the shards and the workers, each waiting
// for the previous to announce its address.
func (l LocalCluster) Start(ctx context.Context) (*Cluster, error) {
	if l.StartTimeout <= 0 {
		l.StartTimeout = 2 * time.Minute
	}
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
	if c.Coord, err = l.launch(ctx, "coordinator", coordArgs); err != nil {
		c.Stop(5 * time.Second)
		return nil, err
	}
	join := []string{"--coordinator", c.Coord.Addr.GRPC, "--gossip-join", c.Coord.Addr.Gossip}
	for k := 0; k < l.PS; k++ {
		args := append([]string{"paramserver", "--index", strconv.Itoa(k), "--listen", "127.0.0.1:0", "--dir", filepath.Join(l.Dir, fmt.Sprintf("ps-%d", k))}, append(join, common...)...)
		args = append(args, c.tlsArgs(tlsutil.RoleParamServer)...)
		p, err := l.launch(ctx, fmt.Sprintf("ps-%d", k), args)
		if err != nil {
			c.Stop(5 * time.Second)
			return nil, err
		}
		c.PS = append(c.PS, p)
	}
	for w := 0; w < l.Workers; w++ {
		p, err := l.StartWorker(ctx, c, w)
		if err != nil {
			c.Stop(5 * time.Second)
			return nil, err
		}
		c.Workers = append(c.Workers, p)
	}
	return c, nil
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
	logf, err := os.OpenFile(filepath.Join(l.Dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(l.Exe, args...)
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
	for {
		if a, err := ReadAddrs(addrFile); err == nil && a.GRPC != "" {
			p.Addr = a
			l.logf("started %s (pid %d) on %s", name, cmd.Process.Pid, a.GRPC)
			return p, nil
		}
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("%s exited before listening (%v); see %s", name, err, filepath.Join(l.Dir, "logs", name+".log"))
		case <-deadline.C:
			p.Kill()
			return nil, fmt.Errorf("%s did not announce its address within %v", name, l.StartTimeout)
		case <-ctx.Done():
			p.Kill()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill ends the process at once (SIGKILL), as a crash would.
func (p *Proc) Kill() {
	if p != nil && p.Cmd.Process != nil {
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Wait waits for the process to exit, at most timeout.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %v", p.Name, timeout)
	}
}

// Stop ends every process: SIGTERM (graceful shutdown), then SIGKILL after
// grace.
func (c *Cluster) Stop(grace time.Duration) {
	var all []*Proc
	all = append(all, c.Workers...)
	all = append(all, c.PS...)
	if c.Coord != nil {
		all = append(all, c.Coord)
	}
	for _, p := range all {
		if p != nil && p.Cmd.Process != nil {
			_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	for _, p := range all {
		if p != nil {
			if err := p.Wait(grace); err != nil && strings.Contains(err.Error(), "still running") {
				p.Kill()
				_ = p.Wait(grace)
			}
		}
	}
}

// LogTail returns the last n lines of a process's log (for error messages).
func (c *Cluster) LogTail(name string, n int) string {
	f, err := os.Open(filepath.Join(c.L.Dir, "logs", name+".log"))
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
