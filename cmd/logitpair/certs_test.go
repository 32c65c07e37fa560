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
