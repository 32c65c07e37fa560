package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mintDir writes a CA and a certificate per role (the servers' for hosts)
// into a fresh directory and returns it with the CA.
func mintDir(t *testing.T, hosts string) (string, *CA) {
	t.Helper()
	ca, err := NewCA(CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := Mint(MintOptions{Hosts: hosts, CA: ca, WriteCAKey: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := WriteDir(dir, files, false); err != nil {
		t.Fatal(err)
	}
	return dir, ca
}

func wantErr(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("%s: error %q does not mention %q", what, err, p)
		}
	}
}

// TestMintAndLoad: a minted directory holds one directory per role, each
// of which loads on its own; the serving roles' certificates carry both
// EKUs and the SANs split into IP and DNS names, the worker's is for
// clients only with no host names; each carries its role as the URI SAN
// logitpair://role/ROLE, parsed back by CertRole; a one-year validity
// within the CA's; the keys are private files.
func TestMintAndLoad(t *testing.T) {
	dir, _ := mintDir(t, "coordinator,ps-0,*.ps.default.svc,LocalHost,127.0.0.1,::1")
	for _, role := range AllRoles {
		id, err := Load(RoleFiles(dir, role), nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf := id.Leaf()
		if id.Role() != role || len(leaf.URIs) != 1 || leaf.URIs[0].String() != "logitpair://role/"+role {
			t.Fatalf("%s: role %q, URIs %v", role, id.Role(), leaf.URIs)
		}
		if got, err := CertRole(leaf); err != nil || got != role {
			t.Fatalf("%s: CertRole %q %v", role, got, err)
		}
		if err := id.RequireRole(role); err != nil {
			t.Fatal(err)
		}
		if d := leaf.NotAfter.Sub(leaf.NotBefore); d != DefaultValidity {
			t.Fatalf("%s: validity %v", role, d)
		}
		if leaf.Subject.CommonName != "logitpair "+role {
			t.Fatalf("%s: common name %q", role, leaf.Subject.CommonName)
		}
		if role == RoleWorker {
			if len(leaf.DNSNames)+len(leaf.IPAddresses) != 0 || len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
				t.Fatalf("worker: SANs %v %v, EKU %v: want none and ClientAuth only", leaf.DNSNames, leaf.IPAddresses, leaf.ExtKeyUsage)
			}
			continue
		}
		if strings.Join(leaf.DNSNames, ",") != "coordinator,ps-0,*.ps.default.svc,localhost" {
			t.Fatalf("%s: DNS SANs %v", role, leaf.DNSNames)
		}
		if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
			t.Fatalf("%s: IP SANs %v", role, leaf.IPAddresses)
		}
		if len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || leaf.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
			t.Fatalf("%s: EKU %v", role, leaf.ExtKeyUsage)
		}
		for _, h := range []string{"ps-0", "x.ps.default.svc", "localhost", "127.0.0.1"} {
			if err := leaf.VerifyHostname(h); err != nil {
				t.Errorf("%s: host %s: %v", role, h, err)
			}
		}
		if err := leaf.VerifyHostname("ps-1"); err == nil {
			t.Errorf("%s: ps-1 is not among the SANs", role)
		}
	}
	if err := must(Load(RoleFiles(dir, RoleWorker), nil)).RequireRole(RoleCoordinator); err == nil ||
		!strings.Contains(err.Error(), "is a worker certificate, but this process is a coordinator") {
		t.Fatalf("RequireRole of another role: %v", err)
	}
	perms := map[string]os.FileMode{CAFile: 0o644, CAKeyFile: 0o600}
	for _, r := range AllRoles {
		perms[filepath.Join(r, CAFile)], perms[filepath.Join(r, CertFile)], perms[filepath.Join(r, KeyFile)] = 0o644, 0o644, 0o600
	}
	for name, perm := range perms {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), perm)
		}
	}
	// The CA loads back and issues certificates the same pool accepts.
	cb, _ := os.ReadFile(filepath.Join(dir, CAFile))
	kb, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	ca, err := ParseCA(cb, kb)
	if err != nil {
		t.Fatal(err)
	}
	c2, k2, err := ca.Issue(CertOptions{Hosts: []string{"ps-9"}, Role: RoleParamServer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromPEM(cb, c2, k2); err != nil {
		t.Fatal(err)
	}
	// A subset of the roles, and only workers need no hosts.
	files, err := Mint(MintOptions{Roles: []string{RoleWorker}, CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if want := "ca.crt worker/ca.crt worker/tls.crt worker/tls.key"; strings.Join(names, " ") != want {
		t.Fatalf("files %v, want %s", names, want)
	}
	_, err = Mint(MintOptions{Roles: []string{RoleCoordinator}, CA: ca})
	wantErr(t, "a serving role without hosts", err, "--hosts", "no host names")
	_, err = Mint(MintOptions{Hosts: "localhost", Roles: []string{"admin"}, CA: ca})
	wantErr(t, "unknown role", err, `unknown role "admin"`, "coordinator, paramserver, worker")
	_, _, err = ca.Issue(CertOptions{Role: RoleWorker, Hosts: []string{"localhost"}})
	wantErr(t, "worker with hosts", err, "clients only", "no host names")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestCertRole: a certificate without a role URI has role ""; other URI
// SANs are ignored; an unknown role and two roles are errors; ParseRoles
// names bad entries.
func TestCertRole(t *testing.T) {
	ca, err := NewCA(CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leafWith := func(uris ...string) *x509.Certificate {
		t.Helper()
		c := &x509.Certificate{Subject: pkix.Name{CommonName: "test"}}
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = append(c.URIs, u)
		}
		return c
	}
	for _, c := range []struct {
		uris []string
		role string
		err  string
	}{
		{nil, "", ""},
		{[]string{"spiffe://example.org/ns/x", "https://logitpair.example"}, "", ""},
		{[]string{"spiffe://example.org/ns/x", "logitpair://role/paramserver"}, RoleParamServer, ""},
		{[]string{"logitpair://role/worker", "logitpair://role/worker"}, RoleWorker, ""},
		{[]string{"logitpair://role/admin"}, "", `unknown role "admin"`},
		{[]string{"logitpair://role/worker", "logitpair://role/coordinator"}, "", "two roles, worker and coordinator"},
	} {
		got, err := CertRole(leafWith(c.uris...))
		if c.err != "" {
			wantErr(t, strings.Join(c.uris, " "), err, c.err)
			continue
		}
		if err != nil || got != c.role {
			t.Errorf("%v: %q %v, want %q", c.uris, got, err, c.role)
		}
	}
	// A role-less certificate (as before roles) loads, with role "".
	cp, kp, err := ca.Issue(CertOptions{Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := FromPEM(ca.CertPEM, cp, kp)
	if err != nil || id.Role() != "" {
		t.Fatalf("role-less: %q %v", id.Role(), err)
	}
	wantErr(t, "RequireRole without a role", id.RequireRole(RoleWorker), "carries no role", "logitpair certs", "worker/")

	if r, err := ParseRoles(" worker, coordinator "); err != nil || strings.Join(r, ",") != "worker,coordinator" {
		t.Fatalf("ParseRoles: %v %v", r, err)
	}
	for in, want := range map[string]string{"": "no role given", "worker,shard": `unknown role "shard"`, "worker,worker": `"worker" given twice`} {
		_, err := ParseRoles(in)
		wantErr(t, in, err, "--roles", want)
	}
}

// TestLoadErrors: each broken input is refused with the file and the
// problem named.
func TestLoadErrors(t *testing.T) {
	top, ca := mintDir(t, "localhost")
	dir := filepath.Join(top, RoleParamServer)
	f := DirFiles(dir)
	otop, _ := mintDir(t, "localhost")
	other := filepath.Join(otop, RoleParamServer)
	write := func(name string, b []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, err := Load(Files{CA: f.CA, Cert: filepath.Join(dir, "nope.crt"), Key: f.Key}, nil)
	wantErr(t, "missing cert", err, "--tls-cert", "nope.crt", "no such file")
	_, err = Load(Files{CA: filepath.Join(dir, "nope.crt"), Cert: f.Cert, Key: f.Key}, nil)
	wantErr(t, "missing CA", err, "--tls-ca", "nope.crt", "no such file")
	_, err = Load(Files{CA: f.CA, Cert: f.Cert, Key: filepath.Join(dir, "nope.key")}, nil)
	wantErr(t, "missing key", err, "--tls-key", "nope.key", "no such file")

	junk := write("junk.pem", []byte("hello, not a certificate\n"))
	_, err = Load(Files{CA: junk, Cert: f.Cert, Key: f.Key}, nil)
	wantErr(t, "CA not PEM", err, "--tls-ca", junk, "not PEM")
	_, err = Load(Files{CA: f.CA, Cert: junk, Key: f.Key}, nil)
	wantErr(t, "cert not PEM", err, "--tls-cert", junk, "not PEM")
	_, err = Load(Files{CA: f.CA, Cert: f.Cert, Key: junk}, nil)
	wantErr(t, "key not PEM", err, "--tls-key", junk, "not PEM")
	// A node certificate where the CA should be.
	_, err = Load(Files{CA: f.Cert, Cert: f.Cert, Key: f.Key}, nil)
	wantErr(t, "leaf as CA", err, "not a CA certificate")

	_, err = Load(Files{CA: f.CA, Cert: f.Cert, Key: filepath.Join(other, KeyFile)}, nil)
	wantErr(t, "mismatched key", err, filepath.Join(other, KeyFile), "does not match the certificate", f.Cert)

	_, err = Load(Files{CA: f.CA, Cert: filepath.Join(other, CertFile), Key: filepath.Join(other, KeyFile)}, nil)
	wantErr(t, "other CA", err, filepath.Join(other, CertFile), "not signed by the CA in "+f.CA)

	cp, kp, err := ca.Issue(CertOptions{Hosts: []string{"localhost"}, NotBefore: time.Now().Add(-48 * time.Hour), Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	expired := write("expired.crt", cp)
	_, err = Load(Files{CA: f.CA, Cert: expired, Key: write("expired.key", kp)}, nil)
	wantErr(t, "expired", err, expired, "expired on")
	cp, kp, _ = ca.Issue(CertOptions{Hosts: []string{"localhost"}, NotBefore: time.Now().Add(time.Hour)})
	future := write("future.crt", cp)
	_, err = Load(Files{CA: f.CA, Cert: future, Key: write("future.key", kp)}, nil)
	wantErr(t, "not yet valid", err, future, "not valid before")

	wantErr(t, "two of three", Files{CA: "a", Cert: "b"}.Check(), "--tls-key missing")
	wantErr(t, "one of three", Files{Key: "c"}.Check(), "--tls-ca and --tls-cert missing")
	if (Files{}).Check() != nil || (Files{"a", "b", "c"}).Check() != nil {
		t.Fatal("none or all three must pass")
	}
	_, err = Load(Files{}, nil)
	wantErr(t, "none", err, "no --tls-ca")
}

// TestParseHosts: IPs and names split, wildcards only leftmost, bad
// entries named.
func TestParseHosts(t *testing.T) {
	s, err := ParseHosts(" coordinator, ps-0 ,10.0.0.1,*.ps.default.svc,ps-0,fe80::1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.DNS, ",") != "coordinator,ps-0,*.ps.default.svc" || len(s.IPs) != 2 {
		t.Fatalf("%+v", s)
	}
	for _, c := range []struct{ in, want string }{
		{"", "no host names"},
		{"a,,b", "entry 2 is empty"},
		{"coordinator:7070", `"coordinator:7070"`},
		{"https://ps-0", `"https://ps-0"`},
		{"ps_0", "character '_'"},
		{"-ps", "hyphen"},
		{"a.*.svc", "leftmost"},
		{"*.svc", "two labels"},
		{"a..b", "empty label"},
		{strings.Repeat("a", 64), "longer than 63"},
	} {
		_, err := ParseHosts(c.in)
		wantErr(t, c.in, err, "--hosts", c.want)
	}
}

// TestWriteDirRefusesToOverwrite: existing files with other content are
// named and left alone without force, replaced with it; identical files
// are not a conflict.
func TestWriteDirRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	files := []DirFile{{"a.crt", []byte("A"), 0o644}, {"b.key", []byte("B"), 0o600}}
	if w, err := WriteDir(dir, files, false); err != nil || len(w) != 2 {
		t.Fatalf("%v %v", w, err)
	}
	if w, err := WriteDir(dir, files, false); err != nil || len(w) != 0 {
		t.Fatalf("identical files: %v %v", w, err)
	}
	changed := []DirFile{{"a.crt", []byte("A"), 0o644}, {"b.key", []byte("B2"), 0o600}, {"c", []byte("C"), 0o600}}
	_, err := WriteDir(dir, changed, false)
	wantErr(t, "overwrite", err, "refusing to overwrite", filepath.Join(dir, "b.key"), "--force")
	if b, _ := os.ReadFile(filepath.Join(dir, "b.key")); string(b) != "B" {
		t.Fatal("b.key changed")
	}
	if _, err := os.Stat(filepath.Join(dir, "c")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused write wrote c")
	}
	if w, err := WriteDir(dir, changed, true); err != nil || len(w) != 2 {
		t.Fatalf("force: %v %v", w, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "b.key")); string(b) != "B2" {
		t.Fatal("b.key not replaced")
	}
}

// TestMutualHandshake: two identities from one CA complete a TLS 1.3
// handshake in both roles; a client without a certificate, a server name
// not in the certificate, an identity from another CA and a worker's
// certificate as a server's do not.
func TestMutualHandshake(t *testing.T) {
	dir, _ := mintDir(t, "localhost,127.0.0.1")
	a, err := Load(RoleFiles(dir, RoleCoordinator), nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Load(RoleFiles(dir, RoleWorker), nil)
	if err != nil {
		t.Fatal(err)
	}
	odir, _ := mintDir(t, "localhost,127.0.0.1")
	other, err := Load(RoleFiles(odir, RoleCoordinator), nil)
	if err != nil {
		t.Fatal(err)
	}
	noCert := a.ClientConfig("localhost")
	noCert.GetClientCertificate = nil
	for _, c := range []struct {
		name   string
		server *tls.Config
		client *tls.Config
		ok     bool
	}{
		{"same CA", a.ServerConfig(), a.ClientConfig("localhost"), true},
		{"same CA by IP", a.ServerConfig(), a.ClientConfig("127.0.0.1"), true},
		{"worker as client", a.ServerConfig(), w.ClientConfig("localhost"), true},
		// A worker's certificate is for clients only (and names no host):
		// it cannot pass for a server's.
		{"worker as server", w.ServerConfig(), a.ClientConfig("localhost"), false},
		{"client without certificate", a.ServerConfig(), noCert, false},
		{"wrong server name", a.ServerConfig(), a.ClientConfig("ps-7"), false},
		{"client from another CA", a.ServerConfig(), other.ClientConfig("localhost"), false},
		{"server from another CA", other.ServerConfig(), a.ClientConfig("localhost"), false},
		{"TLS 1.2 client", a.ServerConfig(), func() *tls.Config {
			c := a.ClientConfig("localhost")
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}(), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := handshake(t, c.server, c.client); (err == nil) != c.ok {
				t.Fatalf("handshake: %v, want ok=%v", err, c.ok)
			}
		})
	}
}

// handshake runs both ends over a pipe; the server's error wins, as the
// client of TLS 1.3 finishes before the server has checked its
// certificate.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	deadline := time.Now().Add(10 * time.Second)
	cc.SetDeadline(deadline)
	sc.SetDeadline(deadline)
	serr := make(chan error, 1)
	go func() {
		s := tls.Server(sc, server)
		err := s.Handshake()
		if err == nil {
			_, err = s.Write([]byte{1}) // the client reads this only if the server accepted it
		}
		sc.Close()
		serr <- err
	}()
	c := tls.Client(cc, client)
	cerr := c.Handshake()
	if cerr == nil {
		_, cerr = c.Read(make([]byte, 1))
	}
	cc.Close()
	if err := <-serr; err != nil {
		return err
	}
	return cerr
}

// TestReload: a new certificate written over the files is presented at
// the next handshake; a half-written (mismatched) pair is ignored and
// reported, and the previous certificate kept.
func TestReload(t *testing.T) {
	top, ca := mintDir(t, "localhost")
	dir := filepath.Join(top, RoleCoordinator)
	var reloads []string
	id, err := Load(DirFiles(dir), func(leaf *x509.Certificate, err error) {
		if err != nil {
			reloads = append(reloads, "error: "+err.Error())
		} else {
			reloads = append(reloads, leaf.Subject.CommonName)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	first := id.Leaf().SerialNumber
	c2, k2, err := ca.Issue(CertOptions{CommonName: "rotated", Hosts: []string{"localhost"}, Role: RoleCoordinator})
	if err != nil {
		t.Fatal(err)
	}
	// The certificate first, as a rotation writes it: a mismatched pair.
	future := time.Now().Add(time.Hour)
	if err := os.WriteFile(filepath.Join(dir, CertFile), c2, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(filepath.Join(dir, CertFile), future, future)
	if id.Leaf().SerialNumber.Cmp(first) != 0 {
		t.Fatal("a mismatched pair replaced the certificate")
	}
	if err := os.WriteFile(filepath.Join(dir, KeyFile), k2, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(filepath.Join(dir, KeyFile), future, future)
	if got := id.Leaf(); got.Subject.CommonName != "rotated" {
		t.Fatalf("after rotation: %q", got.Subject.CommonName)
	}
	if len(reloads) != 2 || !strings.Contains(reloads[0], "does not match") || reloads[1] != "rotated" {
		t.Fatalf("reload reports %q", reloads)
	}
	if err := handshake(t, id.ServerConfig(), id.ClientConfig("localhost")); err != nil {
		t.Fatal(err)
	}
	// A certificate of another role written over the files is refused
	// (roles change with a restart), the rotated one kept.
	c3, k3, err := ca.Issue(CertOptions{CommonName: "other role", Hosts: []string{"localhost"}, Role: RoleParamServer})
	if err != nil {
		t.Fatal(err)
	}
	later := future.Add(time.Hour)
	for name, b := range map[string][]byte{CertFile: c3, KeyFile: k3} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(filepath.Join(dir, name), later, later)
	}
	if got := id.Leaf(); got.Subject.CommonName != "rotated" || id.Role() != RoleCoordinator {
		t.Fatalf("a certificate of another role was taken: %q", got.Subject.CommonName)
	}
	if len(reloads) != 3 || !strings.Contains(reloads[2], `now carries role "paramserver", not "coordinator"`) {
		t.Fatalf("reload reports %q", reloads)
	}
}
