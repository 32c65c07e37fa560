package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/membership"
	"github.com/logitpair/logitpair/pkg/tlsutil"
)

// TestCertsCommand: `logitpair certs` writes files that load as a mutual
// TLS identity with the requested SANs, private keys and secrets 0600; a
// second run refuses to overwrite without --force; --ca-cert/--ca-key
// rotate the node certificate under the same CA.
func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out, err := run(t, "certs", "--out", dir, "--hosts", "coordinator,ps-0,*.ps.default.svc,localhost,127.0.0.1", "--secrets")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "logitpair-tls") || !strings.Contains(out, "--tls-ca "+filepath.Join(dir, "ca.crt")) {
		t.Fatalf("output %q", out)
	}
	id, err := tlsutil.Load(tlsutil.DirFiles(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf := id.Leaf()
	if strings.Join(leaf.DNSNames, ",") != "coordinator,ps-0,*.ps.default.svc,localhost" ||
		len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("SANs %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	for name, perm := range map[string]os.FileMode{"ca.crt": 0o644, "ca.key": 0o600, "tls.crt": 0o644, "tls.key": 0o600, "gossip.key": 0o600, "join.token": 0o600} {
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

	before, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
	_, err = run(t, "certs", "--out", dir)
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second run without --force: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "tls.crt")); string(after) != string(before) {
		t.Fatal("tls.crt changed although the run was refused")
	}

	// Rotation: a new node certificate from the same CA, in place.
	caBefore, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	if _, err := run(t, "certs", "--out", dir, "--hosts", "ps-1,10.0.0.7", "--ca-cert", filepath.Join(dir, "ca.crt"), "--ca-key", filepath.Join(dir, "ca.key"), "--force"); err != nil {
		t.Fatal(err)
	}
	id2, err := tlsutil.Load(tlsutil.DirFiles(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := id2.Leaf(); len(l.DNSNames) != 1 || l.DNSNames[0] != "ps-1" || l.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatalf("rotated certificate %v %v", l.DNSNames, l.SerialNumber)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(dir, "ca.key")); string(caAfter) != string(caBefore) {
		t.Fatal("rotation replaced the CA key")
	}
	// --force with a new CA overwrites everything.
	if _, err := run(t, "certs", "--out", dir, "--force"); err != nil {
		t.Fatal(err)
	}
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

// readDir returns every file of dir by name.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
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
// hosts and a wildcard-covered name), and refuses — writing nothing — a
// partial set, a set whose certificate does not cover the hosts, one
// expiring within 7 days, a mismatched key, a missing ca.key when one is
// expected, a bad gossip key, and the combination with --force.
func TestCertsKeepExisting(t *testing.T) {
	const hosts = "coordinator,ps-0,ps-1,*.ps.default.svc,localhost,127.0.0.1"
	dir := filepath.Join(t.TempDir(), "tls")
	out, err := run(t, "certs", "--out", dir, "--hosts", hosts, "--secrets", "--keep-existing")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wrote "+filepath.Join(dir, "tls.key")) {
		t.Fatalf("first run: %q", out)
	}
	orig := readDir(t, dir)
	if len(orig) != 6 {
		t.Fatalf("first run wrote %d files", len(orig))
	}
	for _, hs := range []string{hosts, "ps-1,localhost", "shard-3.ps.default.svc,127.0.0.1"} {
		out, err = run(t, "certs", "--out", dir, "--hosts", hs, "--secrets", "--keep-existing")
		if err != nil {
			t.Fatalf("--hosts %s: %v", hs, err)
		}
		if !strings.Contains(out, "kept the existing certificate set in "+dir) || strings.Contains(out, "wrote") {
			t.Fatalf("--hosts %s: %q", hs, out)
		}
		if !sameFiles(orig, readDir(t, dir)) {
			t.Fatalf("--hosts %s: the kept set changed", hs)
		}
	}
	// Without --secrets the two secret files are not part of the set.
	if _, err := run(t, "certs", "--out", dir, "--hosts", hosts, "--keep-existing"); err != nil {
		t.Fatal(err)
	}

	refused := func(what, want string, d string, args ...string) {
		t.Helper()
		before := readDir(t, d)
		_, err := run(t, append([]string{"certs", "--out", d, "--keep-existing"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--force") {
			t.Fatalf("%s: %v, want an error mentioning %q and --force", what, err, want)
		}
		if !sameFiles(before, readDir(t, d)) {
			t.Fatalf("%s: files changed", what)
		}
	}
	refused("hosts not covered", "does not cover ps-2, 10.0.0.7", dir, "--hosts", "coordinator,ps-2,10.0.0.7", "--secrets")
	refused("wildcard not covered", "does not cover *.shards.default.svc", dir, "--hosts", "*.shards.default.svc")

	// Partial sets.
	copyDir := func(skip ...string) string {
		t.Helper()
		d := filepath.Join(t.TempDir(), "partial")
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	files:
		for name, data := range orig {
			for _, s := range skip {
				if s == name {
					continue files
				}
			}
			if err := os.WriteFile(filepath.Join(d, name), []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	refused("no tls.key", "incomplete certificate set: tls.key missing (present: ca.crt, tls.crt, ca.key", copyDir("tls.key"), "--hosts", hosts)
	refused("no join.token", "join.token missing", copyDir("join.token"), "--hosts", hosts, "--secrets")
	refused("only ca.key", "incomplete certificate set: ca.crt, tls.crt, tls.key missing (present: ca.key)",
		copyDir("ca.crt", "tls.crt", "tls.key"), "--hosts", hosts)
	d := copyDir()
	if err := os.WriteFile(filepath.Join(d, "tls.key"), []byte(orig["ca.key"]), 0o600); err != nil {
		t.Fatal(err)
	}
	refused("mismatched key", "does not match the certificate", d, "--hosts", hosts)
	d = copyDir()
	if err := os.WriteFile(filepath.Join(d, "gossip.key"), []byte("not base64!"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused("bad gossip key", "gossip.key", d, "--hosts", hosts, "--secrets")
	d = copyDir()
	if err := os.WriteFile(filepath.Join(d, "join.token"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused("empty join token", "join.token is empty", d, "--hosts", hosts, "--secrets")

	// A set without ca.key (--no-ca-key) is complete only for --no-ca-key.
	nokey := filepath.Join(t.TempDir(), "nokey")
	if _, err := run(t, "certs", "--out", nokey, "--hosts", hosts, "--keep-existing", "--no-ca-key"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(nokey, "ca.key")); !os.IsNotExist(err) {
		t.Fatalf("--no-ca-key wrote ca.key (%v)", err)
	}
	if _, err := tlsutil.Load(tlsutil.DirFiles(nokey), nil); err != nil {
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
	if !sameFiles(orig, readDir(t, dir)) {
		t.Fatal("the set changed")
	}
}
