package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/tlsutil"
)

// fakeCoordinator answers Status with a fixed cluster.
type fakeCoordinator struct {
	coordinatorv1.UnimplementedCoordinatorServer
}

func (fakeCoordinator) Status(context.Context, *coordinatorv1.StatusRequest) (*coordinatorv1.ClusterStatus, error) {
	return &coordinatorv1.ClusterStatus{Step: 42, LiveWorkers: 3, Required: 3, LastCheckpointStep: 40,
		Members: []*coordinatorv1.MemberStatus{{Role: "paramserver", Slot: 1, Address: "ps-1:7071", NodeName: "ps-1", Live: true, LastStep: 42}}}, nil
}

// mintTestDir writes a certificate set (one per role) for localhost into a
// fresh directory.
func mintTestDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := run(t, "certs", "--out", dir, "--hosts", "localhost,127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestClusterStatus: `cluster status` reaches a coordinator that requires
// mutual TLS, a join token and a role with the right certificate (any
// role's) and token, and is refused in plaintext, with a wrong token, and
// with a certificate from another CA.
func TestClusterStatus(t *testing.T) {
	top := mintTestDir(t)
	dir := filepath.Join(top, tlsutil.RoleWorker)
	id, err := tlsutil.Load(tlsutil.RoleFiles(top, tlsutil.RoleCoordinator), nil)
	if err != nil {
		t.Fatal(err)
	}
	const token = "0123456789abcdef0123456789abcdef"
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(id.ServerCredentials())}, rpc.NewGuard(rpc.GuardConfig{Token: token, Roles: true}).ServerOptions()...)...)
	coordinatorv1.RegisterCoordinatorServer(srv, fakeCoordinator{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
	addr := lis.Addr().String()
	tlsArgs := func(d string) []string {
		return []string{"--tls-ca", filepath.Join(d, "ca.crt"), "--tls-cert", filepath.Join(d, "tls.crt"), "--tls-key", filepath.Join(d, "tls.key")}
	}
	status := func(args ...string) (string, error) {
		return run(t, append([]string{"cluster", "status", "--coordinator", addr, "--timeout", "20s"}, args...)...)
	}

	out, err := status(append(tlsArgs(dir), "--join-token", token)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "(mutual TLS): step 42, 3 live workers") || !strings.Contains(out, "last consistent checkpoint 40") || !strings.Contains(out, "ps-1:7071") {
		t.Fatalf("output %q", out)
	}
	out, err = status(append(tlsArgs(dir), "--join-token", token, "--json")...)
	if err != nil || !strings.Contains(out, `"step": "42"`) {
		t.Fatalf("--json: %q %v", out, err)
	}

	_, err = status("--join-token", token)
	if err == nil || !strings.Contains(err.Error(), "(plaintext)") {
		t.Fatalf("plaintext client: %v, want a refusal", err)
	}
	t.Logf("plaintext client: %v", err)
	if _, err := status(append(tlsArgs(dir), "--join-token", "wrong")...); err == nil || !strings.Contains(err.Error(), "join token") {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := status(tlsArgs(dir)...); err == nil || !strings.Contains(err.Error(), "join token") {
		t.Fatalf("no token: %v", err)
	}
	for _, r := range []string{tlsutil.RoleCoordinator, tlsutil.RoleParamServer} {
		if _, err := status(append(tlsArgs(filepath.Join(top, r)), "--join-token", token)...); err != nil {
			t.Fatalf("with the %s certificate: %v", r, err)
		}
	}
	if _, err := status(append(tlsArgs(filepath.Join(mintTestDir(t), tlsutil.RoleWorker)), "--join-token", token)...); err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"cluster", "status"}, "--coordinator is required"},
		{[]string{"cluster", "status", "--coordinator", addr, "--tls-ca", "x"}, "--tls-cert and --tls-key missing"},
		{[]string{"cluster", "status", "--coordinator", addr, "--tls-server-name", "x"}, "--tls-server-name needs"},
		{[]string{"cluster", "status", "--coordinator", addr, "--timeout", "0s"}, "--timeout"},
	} {
		if _, err := run(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
