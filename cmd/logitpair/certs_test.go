package main

import (
	"crypto/x509"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/membership"
	"github.com/logitpair/logitpair/pkg/tlsutil"
)

// TestCertsCommand: `logitpair certs` writes one directory per role that
// loads as a mutual TLS identity carrying its role, with the requested
// SANs on the serving roles, private keys and secrets 0600; a second run
// refuses to overwrite without --force; --ca-cert/--ca-key with --roles
// issue one role's certificate again under the same CA.
func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out, err := run(t, "certs", "--out", dir, "--hosts", "coordinator,ps-0,*.ps.default.svc,localhost,127.0.0.1", "--secrets")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"logitpair-tls-worker", "logitpair-tls-coordinator", "logitpair-secrets",
		"run every worker with --tls-ca " + filepath.Join(dir, "worker", "ca.crt") + " --tls-cert " + filepath.Join(dir, "worker", "tls.crt")} {
		if !strings.Contains(out, want) {
			t.Fatalf("output %q lacks %q", out, want)
		}
	}
	leaves := map[string]*x509.Certificate{}
	for _, role := range tlsutil.AllRoles {
		id, err := tlsutil.Load(tlsutil.RoleFiles(dir, role), nil)
		if err != nil {
			t.Fatal(err)
		}
		if id.Role() != role {
			t.Fatalf("%s/: role %q", role, id.Role())
		}
		leaf := id.Leaf()
		leaves[role] = leaf
		if role == tlsutil.RoleWorker {
			if len(leaf.DNSNames)+len(leaf.IPAddresses) != 0 {
				t.Fatalf("worker SANs %v %v", leaf.DNSNames, leaf.IPAddresses)
			}
			continue
		}
		if strings.Join(leaf.DNSNames, ",") != "coordinator,ps-0,*.ps.default.svc,localhost" ||
			len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
			t.Fatalf("%s SANs %v %v", role, leaf.DNSNames, leaf.IPAddresses)
		}
	}
	perms := map[string]os.FileMode{"ca.crt": 0o644, "ca.key": 0o600, "gossip.key": 0o600, "join.token": 0o600}
	for _, r := range tlsutil.AllRoles {
		perms[r+"/ca.crt"], perms[r+"/tls.crt"], perms[r+"/tls.key"] = 0o644, 0o644, 0o600
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
	gk, _ := os.ReadFile(filepath.Join(dir, "gossip.key"))
	if _, err := membership.ParseKey(string(gk)); err != nil {
		t.Fatalf("gossip.key: %v", err)
	}
	if tok, _ := os.ReadFile(filepath.Join(dir, "join.token")); len(tok) != 32 || strings.ContainsAny(string(tok), "\n ") {
		t.Fatalf("join.token %q", tok)
	}

	before := readTree(t, dir)
	_, err = run(t, "certs", "--out", dir)
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second run without --force: %v", err)
	}
	if !sameFiles(before, readTree(t, dir)) {
		t.Fatal("files changed although the run was refused")
	}

	// A new worker certificate from the same CA, in place; the others stay.
	if _, err := run(t, "certs", "--out", dir, "--roles", "worker", "--ca-cert", filepath.Join(dir, "ca.crt"), "--ca-key", filepath.Join(dir, "ca.key"), "--force"); err != nil {
		t.Fatal(err)
	}
	after := readTree(t, dir)
	for name := range before {
		if changed := before[name] != after[name]; changed != (name == "worker/tls.crt" || name == "worker/tls.key") {
			t.Errorf("%s changed: %v", name, changed)
		}
	}
	id2, err := tlsutil.Load(tlsutil.RoleFiles(dir, tlsutil.RoleWorker), nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := id2.Leaf(); id2.Role() != tlsutil.RoleWorker || l.SerialNumber.Cmp(leaves[tlsutil.RoleWorker].SerialNumber) == 0 {
		t.Fatalf("reissued worker certificate: role %q, serial %v", id2.Role(), l.SerialNumber)
	}
	// Rotation of a serving role with other hosts.
	if _, err := run(t, "certs", "--out", dir, "--roles", "paramserver", "--hosts", "ps-1,10.0.0.7", "--ca-cert", filepath.Join(dir, "ca.crt"), "--ca-key", filepath.Join(dir, "ca.key"), "--force"); err != nil {
		t.Fatal(err)
	}
	if l := must(tlsutil.Load(tlsutil.RoleFiles(dir, tlsutil.RoleParamServer), nil)).Leaf(); len(l.DNSNames) != 1 || l.DNSNames[0] != "ps-1" {
		t.Fatalf("rotated shard certificate %v", l.DNSNames)
	}
	// --force with a new CA overwrites everything.
	if _, err := run(t, "certs", "--out", dir, "--force"); err != nil {
		t.Fatal(err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestCertsCommandErrors: bad --hosts and flag combinations are named.
func TestCertsCommandErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"certs"}, "--out is required"},
		{[]string{"certs", "--out", dir, "--hosts", ""}, "no host names"},
		{[]string{"certs", "--out", dir, "--hosts", "coordinator:7070"}, `"coordinator:7070"`},
		{[]string{"certs", "--out", dir, "--hosts", "a,,b"}, "entry 2 is empty"},
		{[]string{"certs", "--out", dir, "--hosts", "ps.*.svc"}, "leftmost"},
		{[]string{"certs", "--out", dir, "--ca-cert", "x.crt"}, "--ca-cert and --ca-key go together"},
		{[]string{"certs", "--out", dir, "--ca-cert", filepath.Join(dir, "no.crt"), "--ca-key", filepath.Join(dir, "no.key")}, "--ca-cert"},
		{[]string{"certs", "--out", dir, "--validity", "-1h"}, "--validity"},
		{[]string{"certs", "--out", dir, "--roles", "worker,admin"}, `unknown role "admin"`},
		{[]string{"certs", "--out", dir, "--roles", ""}, "--roles: no role given"},
	} {
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a refused run wrote %v", ents)
	}
}

// readTree returns every file under dir by slash-separated relative path.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameFiles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestCertsKeepExisting: --keep-existing mints into an empty directory,
// keeps a complete valid set byte for byte (also for a subset of its
// hosts, a wildcard-covered name and a subset of its roles), and refuses —
// writing nothing — a partial set, a set from before roles, a certificate
// of the wrong role, a role directory with another CA, a set whose
// certificates do not cover the hosts, one expiring within 7 days, a
// mismatched key, a missing ca.key when one is expected, a bad gossip key,
// and the combination with --force.
func TestCertsKeepExisting(t *testing.T) {
	const hosts = "coordinator,ps-0,ps-1,*.ps.default.svc,localhost,127.0.0.1"
	dir := filepath.Join(t.TempDir(), "tls")
	out, err := run(t, "certs", "--out", dir, "--hosts", hosts, "--secrets", "--keep-existing")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wrote "+filepath.Join(dir, "worker", "tls.key")) {
		t.Fatalf("first run: %q", out)
	}
	orig := readTree(t, dir)
	if len(orig) != 13 { // ca.crt, ca.key, 3 files × 3 roles, gossip.key, join.token
		t.Fatalf("first run wrote %d files", len(orig))
	}
	for _, args := range [][]string{{"--hosts", hosts}, {"--hosts", "ps-1,localhost"}, {"--hosts", "shard-3.ps.default.svc,127.0.0.1"},
		{"--hosts", hosts, "--roles", "worker"}} {
		out, err = run(t, append([]string{"certs", "--out", dir, "--secrets", "--keep-existing"}, args...)...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.Contains(out, "kept the existing certificate set in "+dir) || strings.Contains(out, "wrote") {
			t.Fatalf("%v: %q", args, out)
		}
		if !sameFiles(orig, readTree(t, dir)) {
			t.Fatalf("%v: the kept set changed", args)
		}
	}
	// Without --secrets the two secret files are not part of the set.
	if _, err := run(t, "certs", "--out", dir, "--hosts", hosts, "--keep-existing"); err != nil {
		t.Fatal(err)
	}

	refused := func(what, want string, d string, args ...string) {
		t.Helper()
		before := readTree(t, d)
		_, err := run(t, append([]string{"certs", "--out", d, "--keep-existing"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--force") {
			t.Fatalf("%s: %v, want an error mentioning %q and --force", what, err, want)
		}
		if !sameFiles(before, readTree(t, d)) {
			t.Fatalf("%s: files changed", what)
		}
	}
	refused("hosts not covered", "does not cover ps-2, 10.0.0.7", dir, "--hosts", "coordinator,ps-2,10.0.0.7", "--secrets")
	refused("wildcard not covered", "does not cover *.shards.default.svc", dir, "--hosts", "*.shards.default.svc")

	// Partial and altered sets: a copy of orig without skip, with replace.
	copyDir := func(replace map[string]string, skip ...string) string {
		t.Helper()
		d := filepath.Join(t.TempDir(), "partial")
	files:
		for name, data := range orig {
			for _, s := range skip {
				if s == name {
					continue files
				}
			}
			if r, ok := replace[name]; ok {
				data = r
			}
			p := filepath.Join(d, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	refused("no worker/tls.key", "incomplete certificate set: "+filepath.Join("worker", "tls.key")+" missing (present: ca.crt, ca.key", copyDir(nil, "worker/tls.key"), "--hosts", hosts)
	refused("no join.token", "join.token missing", copyDir(nil, "join.token"), "--hosts", hosts, "--secrets")
	var allButCAKey []string
	for name := range orig {
		if name != "ca.key" {
			allButCAKey = append(allButCAKey, name)
		}
	}
	refused("only ca.key", "incomplete certificate set: ca.crt, "+filepath.Join("coordinator", "ca.crt"), copyDir(nil, allButCAKey...), "--hosts", hosts)
	refused("only ca.key (present)", "missing (present: ca.key)", copyDir(nil, allButCAKey...), "--hosts", hosts)
	refused("mismatched key", "does not match the certificate", copyDir(map[string]string{"worker/tls.key": orig["ca.key"]}), "--hosts", hosts)
	refused("wrong role", filepath.Join("worker", "tls.crt")+" carries role paramserver, want worker",
		copyDir(map[string]string{"worker/tls.crt": orig["paramserver/tls.crt"], "worker/tls.key": orig["paramserver/tls.key"]}), "--hosts", hosts)
	otherCA := readTree(t, mintTestDir(t))["ca.crt"]
	refused("role directory with another CA", filepath.Join("coordinator", "ca.crt")+" differs from",
		copyDir(map[string]string{"coordinator/ca.crt": otherCA}), "--hosts", hosts)
	refused("bad gossip key", "gossip.key", copyDir(map[string]string{"gossip.key": "not base64!"}), "--hosts", hosts, "--secrets")
	refused("empty join token", "join.token is empty", copyDir(map[string]string{"join.token": "\n"}), "--hosts", hosts, "--secrets")

	// A set from before roles: one tls.crt and tls.key for every process.
	legacy := filepath.Join(t.TempDir(), "legacy")
	for name, data := range map[string]string{"ca.crt": orig["ca.crt"], "ca.key": orig["ca.key"], "tls.crt": orig["coordinator/tls.crt"], "tls.key": orig["coordinator/tls.key"]} {
		if err := os.MkdirAll(legacy, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(legacy, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	refused("a set from before roles", "from before roles (tls.crt, tls.key", legacy, "--hosts", hosts)

	// A set without ca.key (--no-ca-key) is complete only for --no-ca-key.
	nokey := filepath.Join(t.TempDir(), "nokey")
	if _, err := run(t, "certs", "--out", nokey, "--hosts", hosts, "--keep-existing", "--no-ca-key"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(nokey, "ca.key")); !os.IsNotExist(err) {
		t.Fatalf("--no-ca-key wrote ca.key (%v)", err)
	}
	if _, err := tlsutil.Load(tlsutil.RoleFiles(nokey, tlsutil.RoleWorker), nil); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "certs", "--out", nokey, "--hosts", hosts, "--keep-existing", "--no-ca-key"); err != nil || !strings.Contains(out, "kept") {
		t.Fatalf("--no-ca-key rerun: %q %v", out, err)
	}
	refused("ca.key expected", "ca.key missing", nokey, "--hosts", hosts)

	// Expiring within 7 days.
	short := filepath.Join(t.TempDir(), "short")
	if _, err := run(t, "certs", "--out", short, "--hosts", hosts, "--validity", "72h"); err != nil {
		t.Fatal(err)
	}
	refused("expiring", "within 168h0m0s", short, "--hosts", hosts)

	// Issued by another CA than --ca-cert.
	other := filepath.Join(t.TempDir(), "other")
	if _, err := run(t, "certs", "--out", other, "--hosts", "localhost"); err != nil {
		t.Fatal(err)
	}
	refused("other CA", "was not issued by the CA "+filepath.Join(other, "ca.crt"), dir, "--hosts", hosts,
		"--ca-cert", filepath.Join(other, "ca.crt"), "--ca-key", filepath.Join(other, "ca.key"))
	// ... and kept when it is that CA.
	if out, err := run(t, "certs", "--out", dir, "--hosts", hosts, "--keep-existing",
		"--ca-cert", filepath.Join(dir, "ca.crt"), "--ca-key", filepath.Join(dir, "ca.key")); err != nil || !strings.Contains(out, "kept") {
		t.Fatalf("same CA: %q %v", out, err)
	}

	if _, err := run(t, "certs", "--out", dir, "--keep-existing", "--force"); err == nil || !strings.Contains(err.Error(), "exclude each other") {
		t.Fatalf("--keep-existing --force: %v", err)
	}
	if !sameFiles(orig, readTree(t, dir)) {
		t.Fatal("the set changed")
	}
}
