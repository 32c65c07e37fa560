package rpc

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/gob"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/tlsutil"
)

// serveTCP runs a gRPC server with opts on 127.0.0.1 (an OS-chosen port)
// until the test ends and returns its address.
func serveTCP(t *testing.T, opts []grpc.ServerOption, register func(grpc.ServiceRegistrar)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	register(s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return ln.Addr().String()
}

// dialTCP connects to addr with opts (transport credentials included),
// closed when the test ends.
func dialTCP(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// issue mints a certificate for 127.0.0.1 and localhost from ca, valid
// from notBefore for validity (zero values: now, one year).
func issue(t *testing.T, ca *tlsutil.CA, notBefore time.Time, validity time.Duration) tls.Certificate {
	t.Helper()
	c, k, err := ca.Issue(tlsutil.CertOptions{Hosts: []string{"127.0.0.1", "localhost"}, NotBefore: notBefore, Validity: validity})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// shardSnapshot is every byte of a shard's state and counters.
func shardSnapshot(t *testing.T, s *paramserver.Local) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(s.S.Checkpoint()); err != nil {
		t.Fatal(err)
	}
	if err := gob.NewEncoder(&b).Encode(s.S.Stats()); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// membershipSnapshot is every byte of the membership table's members, shard
// map and generation.
func membershipSnapshot(t *testing.T, r *coordinator.Membership) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := gob.NewEncoder(&b)
	for _, v := range []any{r.Members(), r.ShardMap(), r.Generation()} {
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// TestMutualTLS (issue 7): a shard and a coordinator served over TCP with
// mutual TLS and the join token. A plaintext client, a client without a
// certificate, with one from another CA, with an expired one, one that
// does not accept the server's name, and clients with the right
// certificate but no or a wrong token can neither Pull, Push, Apply,
// Checkpoint nor Restore on the shard, nor Join or Leave the coordinator;
// the shard's state and counters and the membership table stay byte-identical.
// The right certificate with the token does all of it.
func TestMutualTLS(t *testing.T) {
	const token = "s3cret"
	ctx := ctxFor(t, 2*time.Minute)
	ca, err := tlsutil.NewCA(tlsutil.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlsutil.NewCA(tlsutil.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, nodeKey, err := ca.Issue(tlsutil.CertOptions{Hosts: []string{"127.0.0.1", "localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := tlsutil.FromPEM(ca.CertPEM, nodeCert, nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	srvOpts := append([]grpc.ServerOption{grpc.Creds(id.ServerCredentials())}, TokenAuth(token)...)
	shard := newShard(t, 8, 2, 1, 3)
	psAddr := serveTCP(t, srvOpts, NewPSServer(shard).Register)
	reg := newMembership(t, 2, 0, nil)
	coordAddr := serveTCP(t, srvOpts, NewCoordServer(nil, reg).Register)

	good := []grpc.DialOption{grpc.WithTransportCredentials(id.ClientCredentials("")),
		grpc.WithPerRPCCredentials(TokenCredentials(token, true))}
	psc := NewPSClient(dialTCP(t, psAddr, good...), 0)
	cc := NewCoordClient(dialTCP(t, coordAddr, good...))
	// State an intruder could damage: a checkpoint to roll back to, a
	// step applied after it, a worker and a shard in the membership table.
	g := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	bufs := []float32{0.5, -0.5}
	if err := psc.Checkpoint(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := psc.Push(ctx, 0, 0, g, bufs); err != nil {
		t.Fatal(err)
	}
	if err := psc.Apply(ctx, 0, []int{0}, 0); err != nil {
		t.Fatal(err)
	}
	if r, err := cc.Join(ctx, RoleWorker, 0, "", "friend"); err != nil || r.Slot != 0 {
		t.Fatalf("join with certificate and token: %v, %v", r, err)
	}
	if _, err := cc.Join(ctx, RoleParamServer, 0, "ps-0:7071", "ps-0"); err != nil {
		t.Fatal(err)
	}
	shardBefore, membersBefore := shardSnapshot(t, shard), membershipSnapshot(t, reg)

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	withCert := func(certs ...tls.Certificate) credentials.TransportCredentials {
		return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, Certificates: certs})
	}
	tokenTLS := grpc.WithPerRPCCredentials(TokenCredentials(token, true))
	for _, tc := range []struct {
		name string
		opts []grpc.DialOption
		code codes.Code
		msg  string
	}{
		{"plaintext", []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), WithToken(token)}, codes.Unavailable, ""},
		{"no certificate", []grpc.DialOption{grpc.WithTransportCredentials(withCert()), tokenTLS}, codes.Unavailable, ""},
		{"certificate from another CA", []grpc.DialOption{grpc.WithTransportCredentials(withCert(issue(t, other, time.Time{}, 0))), tokenTLS}, codes.Unavailable, ""},
		{"expired certificate", []grpc.DialOption{grpc.WithTransportCredentials(withCert(issue(t, ca, time.Now().Add(-48*time.Hour), 24*time.Hour))), tokenTLS}, codes.Unavailable, ""},
		{"server name not in the certificate", []grpc.DialOption{grpc.WithTransportCredentials(id.ClientCredentials("ps-7")), tokenTLS}, codes.Unavailable, ""},
		{"right certificate, no token", []grpc.DialOption{grpc.WithTransportCredentials(id.ClientCredentials(""))}, codes.Unauthenticated, "missing or wrong join token"},
		{"right certificate, wrong token", []grpc.DialOption{grpc.WithTransportCredentials(id.ClientCredentials("")),
			grpc.WithPerRPCCredentials(TokenCredentials("guess", true))}, codes.Unauthenticated, "missing or wrong join token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cctx := ctxFor(t, 30*time.Second)
			bad := NewPSClient(dialTCP(t, psAddr, tc.opts...), 0)
			badc := NewCoordClient(dialTCP(t, coordAddr, tc.opts...))
			_, _, err := bad.Pull(cctx, 1)
			wantCode(t, "pull", err, tc.code, tc.msg)
			wantCode(t, "push", bad.Push(cctx, 1, 0, g, bufs), tc.code, tc.msg)
			wantCode(t, "apply", bad.Apply(cctx, 1, []int{0}, 0), tc.code, tc.msg)
			wantCode(t, "checkpoint", bad.Checkpoint(cctx, 1, nil), tc.code, tc.msg)
			wantCode(t, "restore", bad.Restore(cctx, 0), tc.code, tc.msg)
			_, err = badc.Join(cctx, RoleWorker, -1, "", "intruder")
			wantCode(t, "join", err, tc.code, tc.msg)
			_, err = badc.Join(cctx, RoleParamServer, 0, "evil:1", "intruder")
			wantCode(t, "shard join", err, tc.code, tc.msg)
			wantCode(t, "leave", badc.Leave(cctx, RoleWorker, 0), tc.code, tc.msg)
			if !bytes.Equal(shardSnapshot(t, shard), shardBefore) {
				t.Fatalf("the shard changed: %+v", shard.S.Stats())
			}
			if !bytes.Equal(membershipSnapshot(t, reg), membersBefore) {
				t.Fatalf("the membership table changed: %v, generation %d", reg.Members(), reg.Generation())
			}
		})
	}

	// The right certificate and token: every call works.
	if err := psc.Push(ctx, 1, 0, g, bufs); err != nil {
		t.Fatal(err)
	}
	if err := psc.Apply(ctx, 1, []int{0}, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := psc.Pull(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := psc.Restore(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if v := shard.S.Version(); v != 0 {
		t.Fatalf("version %d after restoring step 0", v)
	}
	if _, err := cc.Join(ctx, RoleWorker, -1, "", "friend-2"); err != nil {
		t.Fatal(err)
	}
	if err := cc.Leave(ctx, RoleWorker, 0); err != nil {
		t.Fatal(err)
	}
}

// TestTokenOverPlaintext: without TLS the join token is still sent and
// accepted on a plaintext connection (WithToken does not require transport
// security), as a cluster started without --tls-* works.
func TestTokenOverPlaintext(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	reg := newMembership(t, 1, 0, nil)
	addr := serveTCP(t, TokenAuth("tok"), NewCoordServer(nil, reg).Register)
	cc := NewCoordClient(dialTCP(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()), WithToken("tok")))
	if _, err := cc.Join(ctx, RoleWorker, -1, "", "w"); err != nil {
		t.Fatal(err)
	}
	bad := NewCoordClient(dialTCP(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()), WithToken("nope")))
	_, err := bad.Join(ctx, RoleWorker, -1, "", "w")
	wantCode(t, "wrong token", err, codes.Unauthenticated, "missing or wrong join token")
}
