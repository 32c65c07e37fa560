package node

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/tlsutil"
	"github.com/logitpair/logitpair/pkg/train"
)

// mintTestCerts writes a CA (its key too) and a certificate per role (the
// servers' for 127.0.0.1) into a fresh directory and returns each role's
// files.
func mintTestCerts(t *testing.T) map[string]tlsutil.Files {
	t.Helper()
	files, err := tlsutil.Mint(tlsutil.MintOptions{Hosts: "127.0.0.1,localhost", WriteCAKey: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := tlsutil.WriteDir(dir, files, false); err != nil {
		t.Fatal(err)
	}
	out := map[string]tlsutil.Files{}
	for _, r := range tlsutil.AllRoles {
		out[r] = tlsutil.RoleFiles(dir, r)
	}
	return out
}

// withTLS is c with f as its --tls-* flags.
func withTLS(c Common, f tlsutil.Files) Common {
	c.TLSCA, c.TLSCert, c.TLSKey = f.CA, f.Cert, f.Key
	return c
}

// serveCoord runs a coordinator's registry service with c's server options
// on 127.0.0.1 until the test ends.
func serveCoord(t *testing.T, c Common) string {
	t.Helper()
	cfg := train.DefaultConfig()
	cfg.ModelConfig = models.Config{"hidden": 8}
	// The real layout of cfg on one shard: a shard checks the range it is
	// assigned against the one it computes.
	layout, _, err := cluster.NewLayout(cpu.New(cpu.Options{Threads: 1}), cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := rpc.NewMembershipConfig(cfg, layout.Ranges(), 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := coordinator.NewMembership(mc)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := c.serverOptions(zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	rpc.NewCoordServer(nil, reg).Register(s)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String()
}

// join dials addr with c's dial options and joins as a worker.
func join(t *testing.T, c Common, addr string) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, c.dialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = rpc.NewCoordClient(conn).Join(ctx, rpc.RoleWorker, -1, "", "test")
	return err
}

func ready(t *testing.T, c Common, role string) (Common, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	if err := c.initTransport(zap.New(core), role); err != nil {
		t.Fatal(err)
	}
	return c, logs
}

// TestTransportTLS: with --tls-* a process's server requires the client
// certificate and its clients present it with the token; a process without
// TLS, with certificates from another CA, or with a certificate of the
// wrong role cannot join; a process refuses at start a certificate of
// another role than its own or one without a role.
func TestTransportTLS(t *testing.T) {
	f := mintTestCerts(t)
	srv, logs := ready(t, withTLS(Common{JoinToken: "tok"}, f[rpc.RoleCoordinator]), rpc.RoleCoordinator)
	if logs.FilterMessage("mutual TLS on").Len() != 1 || logs.FilterLevelExact(zapcore.WarnLevel).Len() != 0 {
		t.Fatalf("logs %v", logs.All())
	}
	if r := logs.FilterMessage("mutual TLS on").All()[0].ContextMap()["role"]; r != rpc.RoleCoordinator {
		t.Fatalf("role logged %v", r)
	}
	addr := serveCoord(t, srv)
	secure := withTLS(Common{JoinToken: "tok"}, f[rpc.RoleWorker])
	cli, _ := ready(t, secure, rpc.RoleWorker)
	if err := join(t, cli, addr); err != nil {
		t.Fatal(err)
	}
	byName := secure
	byName.TLSServerName = "localhost" // a DNS SAN of the coordinator's certificate
	byName, _ = ready(t, byName, rpc.RoleWorker)
	if err := join(t, byName, addr); err != nil {
		t.Fatal(err)
	}
	plain, _ := ready(t, Common{JoinToken: "tok"}, rpc.RoleWorker)
	if err := join(t, plain, addr); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext client: %v", err)
	}
	o := mintTestCerts(t)
	other, _ := ready(t, withTLS(Common{JoinToken: "tok"}, o[rpc.RoleWorker]), rpc.RoleWorker)
	if err := join(t, other, addr); status.Code(err) != codes.Unavailable {
		t.Fatalf("client from another CA: %v", err)
	}
	noToken, _ := ready(t, withTLS(Common{}, f[rpc.RoleWorker]), rpc.RoleWorker)
	if err := join(t, noToken, addr); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("client without the token: %v", err)
	}
	// A shard's certificate in a process that joins as a worker: the
	// coordinator refuses (a member acts only as its certificate's role).
	var asShard Common
	asShard, _ = ready(t, withTLS(Common{JoinToken: "tok"}, f[rpc.RoleParamServer]), rpc.RoleParamServer)
	if err := join(t, asShard, addr); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "Join") {
		t.Fatalf("worker join with a shard's certificate: %v", err)
	}
	// At start: another role's certificate, and one without a role.
	wrongRole := withTLS(Common{}, f[rpc.RoleCoordinator])
	err := wrongRole.initTransport(zap.NewNop(), rpc.RoleWorker)
	if err == nil || !strings.Contains(err.Error(), "is a coordinator certificate, but this process is a worker") {
		t.Fatalf("worker with the coordinator's certificate: %v", err)
	}
	legacy := withTLS(Common{}, roleless(t, f[rpc.RoleCoordinator]))
	err = legacy.initTransport(zap.NewNop(), rpc.RoleParamServer)
	if err == nil || !strings.Contains(err.Error(), "carries no role") || !strings.Contains(err.Error(), "logitpair certs") {
		t.Fatalf("a certificate without a role: %v", err)
	}
}

// roleless writes a certificate without a role (as every certificate was
// before roles) for 127.0.0.1, issued by the CA of the set mintTestCerts
// wrote f into, and returns its files.
func roleless(t *testing.T, f tlsutil.Files) tlsutil.Files {
	t.Helper()
	top := filepath.Dir(filepath.Dir(f.CA)) // the set's directory, above the role's
	caPEM, err := os.ReadFile(filepath.Join(top, tlsutil.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(top, tlsutil.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := tlsutil.ParseCA(caPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.Issue(tlsutil.CertOptions{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := tlsutil.WriteDir(dir, []tlsutil.DirFile{{Name: tlsutil.CAFile, Data: caPEM, Perm: 0o644},
		{Name: tlsutil.CertFile, Data: c, Perm: 0o644}, {Name: tlsutil.KeyFile, Data: k, Perm: 0o600}}, false); err != nil {
		t.Fatal(err)
	}
	return tlsutil.DirFiles(dir)
}

// TestTransportWithoutTLS: without --tls-* a server warns loudly (roles
// are not enforced either), and the join token is still sent and checked
// over plaintext.
func TestTransportWithoutTLS(t *testing.T) {
	srv, logs := ready(t, Common{JoinToken: "tok"}, rpc.RoleCoordinator)
	warn := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warn) != 1 || !strings.HasPrefix(warn[0].Message, "no TLS: anyone who can reach this port can") || !strings.Contains(warn[0].Message, "roles are not enforced") {
		t.Fatalf("warnings %v", warn)
	}
	cli, logs := ready(t, Common{JoinToken: "tok"}, rpc.RoleWorker)
	if w := logs.FilterLevelExact(zapcore.WarnLevel).All(); len(w) != 1 || !strings.HasPrefix(w[0].Message, "no TLS") {
		t.Fatalf("client warnings %v", w)
	}
	addr := serveCoord(t, srv)
	if err := join(t, cli, addr); err != nil {
		t.Fatal(err)
	}
	wrong, _ := ready(t, Common{JoinToken: "guess"}, rpc.RoleWorker)
	if err := join(t, wrong, addr); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong token: %v", err)
	}
}

// TestTransportFlagErrors: the TLS flags go together, and bad files are
// named before anything listens.
func TestTransportFlagErrors(t *testing.T) {
	f := mintTestCerts(t)[rpc.RoleParamServer]
	o := mintTestCerts(t)[rpc.RoleParamServer]
	for _, c := range []struct {
		c    Common
		want string
	}{
		{Common{TLSCA: f.CA, TLSCert: f.Cert}, "--tls-key missing"},
		{Common{TLSKey: f.Key}, "--tls-ca and --tls-cert missing"},
		{Common{TLSServerName: "x"}, "--tls-server-name needs"},
		{Common{TLSCA: f.CA, TLSCert: f.Cert, TLSKey: filepath.Join(t.TempDir(), "gone.key")}, "gone.key: no such file"},
		{Common{TLSCA: f.CA, TLSCert: f.Cert, TLSKey: o.Key}, "does not match the certificate"},
		{Common{TLSCA: f.CA, TLSCert: o.Cert, TLSKey: o.Key}, "not signed by the CA"},
	} {
		err := c.c.initTransport(zap.NewNop(), rpc.RoleParamServer)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.c, err, c.want)
		}
	}
	// The Run functions check before listening or dialing.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := RunWorker(ctx, WorkerOptions{Common: Common{TLSCA: f.CA}, Coordinator: "127.0.0.1:1"}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "--tls-cert and --tls-key missing") {
		t.Fatalf("RunWorker: %v", err)
	}
	err = RunParamServer(ctx, ParamServerOptions{Common: Common{TLSCA: f.CA, TLSCert: f.Cert}, Coordinator: "127.0.0.1:1", Listen: "127.0.0.1:0"}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "--tls-key missing") {
		t.Fatalf("RunParamServer: %v", err)
	}
}
