package node

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/tlsutil"
	"github.com/logitpair/logitpair/pkg/train"
)

// mintTestCerts writes a CA and a certificate for 127.0.0.1 into a fresh
// directory.
func mintTestCerts(t *testing.T) tlsutil.Files {
	t.Helper()
	files, err := tlsutil.Mint(tlsutil.MintOptions{Hosts: "127.0.0.1,localhost"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := tlsutil.WriteDir(dir, files, false); err != nil {
		t.Fatal(err)
	}
	return tlsutil.DirFiles(dir)
}

// serveCoord runs a coordinator's registry service with c's server options
// on 127.0.0.1 until the test ends.
func serveCoord(t *testing.T, c Common) string {
	t.Helper()
	cfg := train.DefaultConfig()
	cfg.ModelConfig = models.Config{"hidden": 8}
	reg, err := rpc.NewRegistry(rpc.RegistryConfig{Train: cfg, Workers: 2, Layout: &cluster.Layout{
		Params: nn.Layout{Total: 4}, Shards: []paramserver.ShardRange{{Index: 0, Lo: 0, Hi: 4}}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(c.serverOptions()...)
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

func ready(t *testing.T, c Common, serving bool) (Common, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	if err := c.initTransport(zap.New(core), serving); err != nil {
		t.Fatal(err)
	}
	return c, logs
}

// TestTransportTLS: with --tls-* a process's server requires the client
// certificate and its clients present it with the token; a process without
// TLS, or with certificates from another CA, cannot join.
func TestTransportTLS(t *testing.T) {
	f := mintTestCerts(t)
	secure := Common{JoinToken: "tok", TLSCA: f.CA, TLSCert: f.Cert, TLSKey: f.Key}
	srv, logs := ready(t, secure, true)
	if logs.FilterMessage("mutual TLS on").Len() != 1 || logs.FilterLevelExact(zapcore.WarnLevel).Len() != 0 {
		t.Fatalf("logs %v", logs.All())
	}
	addr := serveCoord(t, srv)
	cli, _ := ready(t, secure, false)
	if err := join(t, cli, addr); err != nil {
		t.Fatal(err)
	}
	byName := secure
	byName.TLSServerName = "localhost" // a DNS SAN of the certificate
	byName, _ = ready(t, byName, false)
	if err := join(t, byName, addr); err != nil {
		t.Fatal(err)
	}
	plain, _ := ready(t, Common{JoinToken: "tok"}, false)
	if err := join(t, plain, addr); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext client: %v", err)
	}
	o := mintTestCerts(t)
	other, _ := ready(t, Common{JoinToken: "tok", TLSCA: o.CA, TLSCert: o.Cert, TLSKey: o.Key}, false)
	if err := join(t, other, addr); status.Code(err) != codes.Unavailable {
		t.Fatalf("client from another CA: %v", err)
	}
	noToken, _ := ready(t, Common{TLSCA: f.CA, TLSCert: f.Cert, TLSKey: f.Key}, false)
	if err := join(t, noToken, addr); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("client without the token: %v", err)
	}
}

// TestTransportWithoutTLS: without --tls-* a server warns loudly, and the
// join token is still sent and checked over plaintext.
func TestTransportWithoutTLS(t *testing.T) {
	srv, logs := ready(t, Common{JoinToken: "tok"}, true)
	warn := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warn) != 1 || !strings.HasPrefix(warn[0].Message, "no TLS: anyone who can reach this port can") {
		t.Fatalf("warnings %v", warn)
	}
	cli, logs := ready(t, Common{JoinToken: "tok"}, false)
	if w := logs.FilterLevelExact(zapcore.WarnLevel).All(); len(w) != 1 || !strings.HasPrefix(w[0].Message, "no TLS") {
		t.Fatalf("client warnings %v", w)
	}
	addr := serveCoord(t, srv)
	if err := join(t, cli, addr); err != nil {
		t.Fatal(err)
	}
	wrong, _ := ready(t, Common{JoinToken: "guess"}, false)
	if err := join(t, wrong, addr); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong token: %v", err)
	}
}

// TestTransportFlagErrors: the TLS flags go together, and bad files are
// named before anything listens.
func TestTransportFlagErrors(t *testing.T) {
	f := mintTestCerts(t)
	o := mintTestCerts(t)
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
		err := c.c.initTransport(zap.NewNop(), true)
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
