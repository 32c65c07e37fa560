package node

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/tlsutil"
)

// TestTLSRolesInLocalCluster: `cluster local` gives each process its own
// role's certificate (each logs "mutual TLS on" with its role) and the run
// commits steps; meanwhile a worker's certificate, with the cluster's
// token, is refused PERMISSION_DENIED when it tries to Apply, Checkpoint or
// Restore on the live shard, a plaintext client fails the TLS handshake,
// the shard's /metrics counts both refusals, and training goes on. The run
// is long (faultRun) so that it is still going when the test probes it; the
// test stops it.
func TestTLSRolesInLocalCluster(t *testing.T) {
	const steps = 200
	l := localCluster(t, 1, 0, 1, steps)
	faultRun(&l, steps)
	c, err := l.Start(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(10 * time.Second)
	for _, r := range tlsutil.AllRoles {
		if !strings.HasPrefix(c.TLS[r].Cert, filepath.Join(l.Dir, "tls", r)+string(filepath.Separator)) {
			t.Fatalf("%s certificate %s, want one in DIR/tls/%s", r, c.TLS[r].Cert, r)
		}
	}
	waitStep(t, c, 2)

	id, err := tlsutil.Load(c.TLS[rpc.RoleWorker], nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(c.PS[0].Addr.GRPC, grpc.WithTransportCredentials(id.ClientCredentials("")),
		grpc.WithPerRPCCredentials(rpc.TokenCredentials(c.Secrets.JoinToken, true)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ps := rpc.NewPSClient(conn, 0)
	for what, err := range map[string]error{"apply": ps.Apply(ctx, 0, []int{0}, 0), "checkpoint": ps.Checkpoint(ctx, 0, nil), "restore": ps.Restore(ctx, 0)} {
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "role worker") {
			t.Fatalf("%s with a worker's certificate: %v, want PERMISSION_DENIED naming the role", what, err)
		}
	}
	plain, err := grpc.NewClient(c.PS[0].Addr.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()), rpc.WithToken(c.Secrets.JoinToken))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, _, err := rpc.NewPSClient(plain, 0).Pull(ctx, 0); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext pull: %v, want UNAVAILABLE", err)
	}
	// The shard's handshake ends on its own goroutine: wait for the count.
	deadline := time.Now().Add(time.Minute)
	for {
		_, body := get(t, "http://"+c.PS[0].Addr.HTTP+"/metrics")
		role := strings.Contains(body, `logitpair_auth_refused_total{reason="role"} 3`)
		hs := strings.Contains(body, `logitpair_auth_refused_total{reason="handshake"} `) && !strings.Contains(body, `logitpair_auth_refused_total{reason="handshake"} 0`)
		if role && hs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shard's /metrics does not count 3 role refusals and a failed handshake:\n%s", grepLines(body, "logitpair_auth_refused_total"))
		}
		time.Sleep(50 * time.Millisecond)
	}

	atProbe := len(commitLog(t, c))
	if atProbe >= steps {
		t.Fatalf("the run was over (%d steps) when the test probed it", atProbe)
	}
	waitStep(t, c, atProbe+2) // the refusals did not stop training
	for name, role := range map[string]string{"coordinator": rpc.RoleCoordinator, "ps-0": rpc.RoleParamServer, "worker-0": rpc.RoleWorker} {
		if got := tlsRoleLogged(t, filepath.Join(l.Dir, "logs", name+".log")); got != role {
			t.Errorf("%s: mutual TLS on with role %q, want %q", name, got, role)
		}
	}
}

// tlsRoleLogged is the role of a process's first "mutual TLS on" log line
// (the launcher's console format: time, level, caller, message, JSON
// fields, tab-separated).
func tlsRoleLogged(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 5 || f[3] != "mutual TLS on" {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(f[4]), &fields); err != nil {
			t.Fatalf("%s: %q: %v", path, line, err)
		}
		r, _ := fields["role"].(string)
		return r
	}
	t.Fatalf("%s: no \"mutual TLS on\" line", path)
	return ""
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
