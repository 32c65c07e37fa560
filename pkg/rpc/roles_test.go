package rpc

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	paramserverv1 "github.com/logitpair/logitpair/pkg/api/paramserver/v1"
	"github.com/logitpair/logitpair/pkg/tlsutil"
)

// TestRoleTableCoversEveryMethod: every method of the generated service
// descriptors is in the role table, and nothing else is; every entry names
// known roles; every request that names a role (and so is checked against
// the certificate's) belongs to a unary method, where the guard sees the
// request.
func TestRoleTableCoversEveryMethod(t *testing.T) {
	methods := map[string]bool{}
	for _, sd := range []grpc.ServiceDesc{coordinatorv1.Coordinator_ServiceDesc, paramserverv1.ParameterServer_ServiceDesc} {
		for _, m := range sd.Methods {
			methods["/"+sd.ServiceName+"/"+m.MethodName] = true
		}
		for _, s := range sd.Streams {
			methods["/"+sd.ServiceName+"/"+s.StreamName] = true
		}
	}
	if len(methods) < 13 {
		t.Fatalf("%d methods in the descriptors: %v", len(methods), methods)
	}
	for m := range methods {
		roles, ok := methodRoles[m]
		if !ok {
			t.Errorf("%s is not in the role table (methodRoles in roles.go), so every caller is refused: add it with the roles that call it", m)
		}
		if len(roles) == 0 {
			t.Errorf("%s: no role may call it", m)
		}
		for i, r := range roles {
			if err := tlsutil.CheckRole(r); err != nil || slices.Index(roles, r) != i {
				t.Errorf("%s: role %q (%v, or given twice)", m, r, err)
			}
		}
	}
	for m := range methodRoles {
		if !methods[m] {
			t.Errorf("the role table names %s, which no service has", m)
		}
	}

	var bound []string
	for _, fd := range []protoreflect.FileDescriptor{coordinatorv1.File_logitpair_coordinator_v1_coordinator_proto, paramserverv1.File_logitpair_paramserver_v1_paramserver_proto} {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				if md.Input().Fields().ByName("role") == nil {
					continue
				}
				name := string(md.Name())
				if md.IsStreamingClient() || md.IsStreamingServer() {
					t.Errorf("%s is streaming, but its request names a role the guard does not see", name)
				}
				mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := mt.New().Interface().(roleBound); !ok {
					t.Errorf("%s: %s has a role field but no GetRole", name, md.Input().FullName())
				}
				bound = append(bound, name)
			}
		}
	}
	slices.Sort(bound)
	if strings.Join(bound, ",") != "GetAssignment,Join,Leave" {
		t.Fatalf("requests naming a role: %v", bound)
	}
}

// pki is a CA and an identity per role (the serving roles' for localhost),
// plus one without a role ("", a certificate from before roles).
type pki struct {
	ca *tlsutil.CA
	id map[string]*tlsutil.Identity
}

func newPKI(t *testing.T) pki {
	t.Helper()
	ca, err := tlsutil.NewCA(tlsutil.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := pki{ca: ca, id: map[string]*tlsutil.Identity{}}
	for _, r := range append([]string{""}, tlsutil.AllRoles...) {
		o := tlsutil.CertOptions{Role: r}
		if tlsutil.Serves(r) {
			o.Hosts = []string{"localhost", "127.0.0.1"}
		}
		c, k, err := ca.Issue(o)
		if err != nil {
			t.Fatal(err)
		}
		if p.id[r], err = tlsutil.FromPEM(ca.CertPEM, c, k); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// serveGuarded serves over bufconn with mutual TLS (id's certificate) and
// g's credentials and interceptors.
func serveGuarded(t *testing.T, id *tlsutil.Identity, g *Guard, register func(grpc.ServiceRegistrar)) *bufconn.Listener {
	t.Helper()
	return serve(t, append([]grpc.ServerOption{grpc.Creds(g.Credentials(id.ServerCredentials()))}, g.ServerOptions()...), register)
}

// dialAs connects to lis over mutual TLS presenting id's certificate, with
// the join token.
func dialAs(t *testing.T, lis *bufconn.Listener, id *tlsutil.Identity, token string) *grpc.ClientConn {
	t.Helper()
	return dial(t, lis, grpc.WithTransportCredentials(id.ClientCredentials("localhost")),
		grpc.WithPerRPCCredentials(TokenCredentials(token, true)))
}

// refusals records OnRefused calls.
type refusals struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *refusals) add(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[reason]++
}

func (r *refusals) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

// testClock is a settable time source for the log limit.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestGuard is a guard with token and roles, its refusals recorded and
// logged to an observer, on a clock that moves only when told.
func newTestGuard(token string) (*Guard, *refusals, *observer.ObservedLogs, *testClock) {
	core, logs := observer.New(zapcore.InfoLevel)
	rec := &refusals{}
	g := NewGuard(GuardConfig{Token: token, Roles: true, Log: zap.New(core), OnRefused: rec.add})
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	g.now = clk.now
	return g, rec, logs, clk
}

// TestRolesEnforced: over mutual TLS with the role table on, a worker's
// certificate is refused PERMISSION_DENIED — the message naming the method
// and the role — for Apply, Checkpoint, Restore, State and FetchState on a
// shard and for the shards' calls on the coordinator (joining, reading the
// assignment of, or leaving as a shard); a shard's certificate for the
// workers' calls and for the coordinator's; the coordinator's for pushing
// and joining; a certificate without a role for everything, telling the
// operator to mint per-role certificates. Nothing refused changes the
// shard or the membership table. Each role's own calls go through; every refusal
// is counted, and logged at most once a second with the number left out.
func TestRolesEnforced(t *testing.T) {
	const token = "s3cret"
	ctx := ctxFor(t, 2*time.Minute)
	p := newPKI(t)
	g, rec, logs, clk := newTestGuard(token)
	shard := newShard(t, 8, 2, 1, 3)
	psLis := serveGuarded(t, p.id[RoleParamServer], g, NewPSServer(shard).Register)
	reg := newMembership(t, 2, 0, nil)
	coLis := serveGuarded(t, p.id[RoleCoordinator], g, NewCoordServer(nil, reg).Register)
	ps := map[string]*PSClient{}
	co := map[string]coordinatorv1.CoordinatorClient{}
	for r, id := range p.id {
		ps[r] = NewPSClient(dialAs(t, psLis, id, token), 0)
		co[r] = coordinatorv1.NewCoordinatorClient(dialAs(t, coLis, id, token))
	}

	// Each role's own calls: the coordinator checkpoints, a worker pushes,
	// the coordinator applies, reads the state, fetches the optimizer
	// state and pulls; a worker pulls; a shard and a worker join.
	g8, bufs := []float32{1, 2, 3, 4, 5, 6, 7, 8}, []float32{0.5, -0.5}
	if err := ps[RoleCoordinator].Checkpoint(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := ps[RoleWorker].Push(ctx, 0, 0, g8, bufs); err != nil {
		t.Fatal(err)
	}
	if err := ps[RoleCoordinator].Apply(ctx, 0, []int{0}, 0); err != nil {
		t.Fatal(err)
	}
	if v, err := ps[RoleCoordinator].Version(ctx); err != nil || v != 1 {
		t.Fatalf("State: %d %v", v, err)
	}
	if _, _, err := ps[RoleCoordinator].FetchState(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{RoleCoordinator, RoleWorker} {
		if _, _, err := ps[r].Pull(ctx, 1); err != nil {
			t.Fatalf("%s pull: %v", r, err)
		}
	}
	if _, err := co[RoleParamServer].Join(ctx, &coordinatorv1.JoinRequest{Role: RoleParamServer, PreferredSlot: 0, Address: "ps-0:7071", NodeName: "ps-0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := co[RoleWorker].Join(ctx, &coordinatorv1.JoinRequest{Role: RoleWorker, PreferredSlot: 0, NodeName: "w-0"}); err != nil {
		t.Fatal(err)
	}
	if n := rec.get(RefusedRole); n != 0 {
		t.Fatalf("%d refusals of allowed calls", n)
	}
	shardBefore, membersBefore := shardSnapshot(t, shard), membershipSnapshot(t, reg)

	denied := 0
	deny := func(what string, err error, parts ...string) {
		t.Helper()
		wantCode(t, what, err, codes.PermissionDenied, parts...)
		denied++
	}
	psDenied := func(role string, method string) []string {
		return []string{"/logitpair.paramserver.v1.ParameterServer/" + method, "role " + role}
	}
	// A worker: nothing that changes a shard's committed state.
	deny("worker apply", ps[RoleWorker].Apply(ctx, 1, []int{0}, 0), psDenied(RoleWorker, "Apply")...)
	deny("worker checkpoint", ps[RoleWorker].Checkpoint(ctx, 1, nil), psDenied(RoleWorker, "Checkpoint")...)
	deny("worker restore", ps[RoleWorker].Restore(ctx, 0), psDenied(RoleWorker, "Restore")...)
	_, err := ps[RoleWorker].State(ctx)
	deny("worker state", err, psDenied(RoleWorker, "State")...)
	_, _, err = ps[RoleWorker].FetchState(ctx, 1)
	deny("worker fetch state", err, psDenied(RoleWorker, "FetchState")...)
	// ... nor the shards' calls on the coordinator.
	_, err = co[RoleWorker].Join(ctx, &coordinatorv1.JoinRequest{Role: RoleParamServer, PreferredSlot: 0, Address: "evil:1", NodeName: "intruder"})
	deny("worker joins as a shard", err, "Coordinator/Join", `as "paramserver"`, "role worker")
	_, err = co[RoleWorker].GetAssignment(ctx, &coordinatorv1.AssignmentRequest{Role: RoleParamServer, Slot: 0})
	deny("worker reads a shard's assignment", err, "Coordinator/GetAssignment", "role worker")
	_, err = co[RoleWorker].Leave(ctx, &coordinatorv1.LeaveRequest{Role: RoleParamServer, Slot: 0})
	deny("worker leaves as a shard", err, "Coordinator/Leave", "role worker")
	// A shard: neither a worker's calls nor the coordinator's.
	deny("shard push", ps[RoleParamServer].Push(ctx, 1, 0, g8, bufs), psDenied(RoleParamServer, "Push")...)
	deny("shard apply", ps[RoleParamServer].Apply(ctx, 1, []int{0}, 0), psDenied(RoleParamServer, "Apply")...)
	_, err = co[RoleParamServer].ReportStep(ctx, &coordinatorv1.StepReport{Step: 1, Slot: 0})
	deny("shard report", err, "Coordinator/ReportStep", "role paramserver", "only worker")
	_, err = co[RoleParamServer].WaitStep(ctx, &coordinatorv1.WaitStepRequest{Step: 2})
	deny("shard wait", err, "Coordinator/WaitStep", "role paramserver")
	_, err = co[RoleParamServer].Join(ctx, &coordinatorv1.JoinRequest{Role: RoleWorker, PreferredSlot: 1})
	deny("shard joins as a worker", err, "Coordinator/Join", `as "worker"`, "role paramserver")
	// The coordinator: it pushes no gradient and joins nothing.
	deny("coordinator push", ps[RoleCoordinator].Push(ctx, 1, 0, g8, bufs), psDenied(RoleCoordinator, "Push")...)
	_, err = co[RoleCoordinator].Join(ctx, &coordinatorv1.JoinRequest{Role: RoleWorker, PreferredSlot: 1})
	deny("coordinator joins", err, "Coordinator/Join", "role coordinator", "only worker, paramserver")
	// A certificate from before roles: nothing, and what to do about it.
	_, _, err = ps[""].Pull(ctx, 1)
	deny("role-less pull", err, "ParameterServer/Pull", "carries no role", "logitpair certs")
	_, err = co[""].Status(ctx, &coordinatorv1.StatusRequest{})
	deny("role-less status", err, "Coordinator/Status", "carries no role")

	if !bytes.Equal(shardSnapshot(t, shard), shardBefore) {
		t.Fatalf("a refused call changed the shard: %+v", shard.S.Stats())
	}
	if !bytes.Equal(membershipSnapshot(t, reg), membersBefore) {
		t.Fatalf("a refused call changed the membership table: %v", reg.Members())
	}
	if n := rec.get(RefusedRole); n != denied {
		t.Fatalf("%d role refusals counted, %d made", n, denied)
	}
	// The clock stood still: one line, for the first refusal.
	lines := logs.FilterMessage("refused a call: not allowed for the caller's role").All()
	if len(lines) != 1 {
		t.Fatalf("%d log lines for %d refusals in the same second: %v", len(lines), denied, lines)
	}
	if f := lines[0].ContextMap(); f["method"] != paramserverv1.ParameterServer_Apply_FullMethodName || f["role"] != RoleWorker ||
		f["reason"] != RefusedRole || f["suppressed"] != int64(0) {
		t.Fatalf("first line %v", f)
	}
	clk.add(refusalLogEvery)
	deny("worker apply, a second later", ps[RoleWorker].Apply(ctx, 1, []int{0}, 0), psDenied(RoleWorker, "Apply")...)
	lines = logs.FilterMessage("refused a call: not allowed for the caller's role").All()
	if len(lines) != 2 || lines[1].ContextMap()["suppressed"] != int64(denied-2) {
		t.Fatalf("after a second: %v", lines)
	}

	// Still allowed after all that: Status for anyone with a role (the
	// coordinator is not running in this test: UNAVAILABLE, past the
	// guard), a shard's assignment, a worker leaving its slot, the
	// coordinator restoring.
	for _, r := range tlsutil.AllRoles {
		_, err := co[r].Status(ctx, &coordinatorv1.StatusRequest{})
		wantCode(t, r+" status", err, codes.Unavailable, "not running yet")
	}
	if _, err := co[RoleParamServer].GetAssignment(ctx, &coordinatorv1.AssignmentRequest{Role: RoleParamServer, Slot: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := co[RoleWorker].Leave(ctx, &coordinatorv1.LeaveRequest{Role: RoleWorker, Slot: 0}); err != nil {
		t.Fatal(err)
	}
	if err := ps[RoleCoordinator].Restore(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if v := shard.S.Version(); v != 0 {
		t.Fatalf("version %d after restoring step 0", v)
	}
	if n := rec.get(RefusedRole); n != denied {
		t.Fatalf("%d role refusals counted, %d made", n, denied)
	}
}

// TestGuardCountsAndLogsRefusals: a wrong token is refused UNAUTHENTICATED
// before the role is looked at, and failed TLS handshakes — no client
// certificate, a certificate from another CA, a plaintext client — are
// counted under "handshake" and logged (once per second: the clock stands
// still here), with the peer and the error.
func TestGuardCountsAndLogsRefusals(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	p := newPKI(t)
	other := newPKI(t)
	g, rec, logs, clk := newTestGuard("tok")
	reg := newMembership(t, 2, 0, nil)
	lis := serveGuarded(t, p.id[RoleCoordinator], g, NewCoordServer(nil, reg).Register)

	wrong := coordinatorv1.NewCoordinatorClient(dialAs(t, lis, p.id[RoleWorker], "guess"))
	_, err := wrong.Join(ctx, &coordinatorv1.JoinRequest{Role: RoleWorker, PreferredSlot: -1})
	wantCode(t, "wrong token", err, codes.Unauthenticated, "missing or wrong join token")
	// A worker's certificate with a wrong token on a shard's call: the
	// token is checked first, so the refusal is a token refusal.
	_, err = wrong.Leave(ctx, &coordinatorv1.LeaveRequest{Role: RoleParamServer, Slot: 0})
	wantCode(t, "wrong token, wrong role", err, codes.Unauthenticated, "missing or wrong join token")
	if rec.get(RefusedToken) != 2 || rec.get(RefusedRole) != 0 {
		t.Fatalf("refusals %v", rec.n)
	}
	tl := logs.FilterMessage("refused a call: missing or wrong join token").All()
	if len(tl) != 1 || tl[0].ContextMap()["method"] != coordinatorv1.Coordinator_Join_FullMethodName || tl[0].ContextMap()["reason"] != RefusedToken {
		t.Fatalf("token log lines %v", tl)
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.ca.CertPEM)
	noCert := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "localhost"})
	for i, opt := range []grpc.DialOption{
		grpc.WithTransportCredentials(noCert),
		grpc.WithTransportCredentials(other.id[RoleWorker].ClientCredentials("localhost")),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	} {
		before := rec.get(RefusedHandshake)
		c := coordinatorv1.NewCoordinatorClient(dial(t, lis, opt))
		_, err := c.Status(ctx, &coordinatorv1.StatusRequest{})
		wantCode(t, "bad handshake", err, codes.Unavailable)
		// The server's side of the handshake ends on its own goroutine.
		deadline := time.Now().Add(30 * time.Second)
		for rec.get(RefusedHandshake) == before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if rec.get(RefusedHandshake) == before {
			t.Fatalf("client %d: the failed handshake was not counted", i)
		}
	}
	hl := logs.FilterMessage("refused a TLS handshake").All()
	if len(hl) != 1 || hl[0].ContextMap()["peer"] == "" || hl[0].ContextMap()["error"] == "" {
		t.Fatalf("handshake log lines %v", hl)
	}
	if rec.get(RefusedRole) != 0 {
		t.Fatalf("refusals %v", rec.n)
	}
	// A second later the next refusal is logged with the count left out.
	clk.add(refusalLogEvery)
	_, err = wrong.Join(ctx, &coordinatorv1.JoinRequest{Role: RoleWorker, PreferredSlot: -1})
	wantCode(t, "wrong token again", err, codes.Unauthenticated)
	if tl = logs.FilterMessage("refused a call: missing or wrong join token").All(); len(tl) != 2 || tl[1].ContextMap()["suppressed"] != int64(1) {
		t.Fatalf("token log lines %v", tl)
	}
}

// TestHandshakeClosedBeforeHelloIsNotARefusal: a connection that closes
// before it sends anything (a TCP health probe) is not counted; garbage
// instead of a ClientHello is.
func TestHandshakeClosedBeforeHelloIsNotARefusal(t *testing.T) {
	p := newPKI(t)
	g, rec, _, _ := newTestGuard("")
	creds := g.Credentials(p.id[RoleCoordinator].ServerCredentials())
	for _, c := range []struct {
		name  string
		send  []byte
		count int
	}{{"closed at once", nil, 0}, {"not TLS", []byte("GET / HTTP/1.1\r\n\r\n"), 1}} {
		cc, sc := net.Pipe()
		go func() {
			if c.send != nil {
				_, _ = cc.Write(c.send)
			}
			cc.Close()
		}()
		sc.SetDeadline(time.Now().Add(30 * time.Second))
		if _, _, err := creds.ServerHandshake(sc); err == nil {
			t.Fatalf("%s: handshake succeeded", c.name)
		}
		sc.Close()
		if n := rec.get(RefusedHandshake); n != c.count {
			t.Fatalf("%s: %d handshake refusals counted, want %d", c.name, n, c.count)
		}
	}
	if _, ok := creds.Clone().(guardedCreds); !ok {
		t.Fatal("Clone loses the guard")
	}
}

// TestLogLimit: one line per interval, the next one carrying the number
// left out meanwhile.
func TestLogLimit(t *testing.T) {
	var l logLimit
	t0 := time.Unix(100, 0)
	for i, c := range []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0}, {0, false, 0}, {999 * time.Millisecond, false, 0}, {time.Second, true, 2},
		{1500 * time.Millisecond, false, 0}, {5 * time.Second, true, 1}, {5 * time.Second, false, 0},
	} {
		ok, n := l.allow(t0.Add(c.at))
		if ok != c.ok || n != c.suppressed {
			t.Fatalf("call %d at %v: %v %d, want %v %d", i, c.at, ok, n, c.ok, c.suppressed)
		}
	}
}

// TestRolesWithoutTLS: with roles on, a connection without a verified
// client certificate is refused (the guard fails closed); TokenAuth alone
// checks no role.
func TestRolesWithoutTLS(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	g, rec, _, _ := newTestGuard("tok")
	lis := serve(t, g.ServerOptions(), NewCoordServer(nil, newMembership(t, 1, 0, nil)).Register)
	c := coordinatorv1.NewCoordinatorClient(dial(t, lis, WithToken("tok")))
	_, err := c.Join(ctx, &coordinatorv1.JoinRequest{Role: RoleWorker, PreferredSlot: -1})
	wantCode(t, "plaintext with roles", err, codes.PermissionDenied, "no verified client certificate")
	if rec.get(RefusedRole) != 1 {
		t.Fatalf("refusals %v", rec.n)
	}
	lis = serve(t, TokenAuth("tok"), NewCoordServer(nil, newMembership(t, 1, 0, nil)).Register)
	c = coordinatorv1.NewCoordinatorClient(dial(t, lis, WithToken("tok")))
	if _, err := c.Join(ctx, &coordinatorv1.JoinRequest{Role: RoleParamServer, PreferredSlot: 0, Address: "ps:1"}); status.Code(err) != codes.OK {
		t.Fatalf("TokenAuth alone: %v", err)
	}
}
