// Package tlsutil gives the cluster's gRPC connections mutual TLS: it loads
// a node's identity (a CA bundle, a certificate and its key, all PEM) into
// gRPC transport credentials — servers require and verify a client
// certificate signed by the CA, clients verify the server against the same
// CA, TLS 1.3 only — and it mints development CAs and one certificate per
// role (`logitpair certs`, `logitpair cluster local`).
//
// # Roles
//
// A certificate carries its role — coordinator, paramserver or worker
// (AllRoles) — as the URI subject alternative name logitpair://role/NAME
// (RoleURI, read back by CertRole). The gRPC servers (pkg/rpc) decide from
// the role of the verified client certificate which methods a caller may
// use, and every process checks at start that its certificate carries its
// own role (Identity.RequireRole). Certificates of the roles that serve
// (coordinator, paramserver) carry the hosts they are dialed by and both
// ServerAuth and ClientAuth; a worker serves nothing, so its certificate
// carries no host and ClientAuth only, and cannot pass for a server's.
//
// Loading checks everything a handshake would later trip over and names the
// file and the problem: a missing or unreadable file, a file with no PEM
// block of the expected type, a key that does not belong to the
// certificate, a certificate that has expired or is not yet valid, a
// certificate not signed by the CA.
//
// A loaded Identity re-reads its certificate and key when their files
// change (their size or modification time; checked at each new handshake),
// so a rotated certificate from the same CA is picked up without a restart;
// a pair that does not load (half written, mismatched, expired) is ignored
// and the previous one kept. The CA bundle is read once: a new CA needs a
// restart (put the old and the new CA in one bundle to roll it).
//
// A certificate directory (see Mint, WriteDir and the constants CAFile,
// CertFile, KeyFile, ...) holds the CA (ca.crt, ca.key) and a directory per
// role that uses the names Kubernetes TLS Secrets use: ROLE/ca.crt,
// ROLE/tls.crt, ROLE/tls.key.
package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// Files names the PEM files of a node's TLS identity: the CA bundle that
// signs every peer's certificate, this node's certificate and its private
// key.
type Files struct {
	CA, Cert, Key string
}

// Enabled reports whether any of the three files is set.
func (f Files) Enabled() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// Check returns nil when all three files or none are set, and otherwise an
// error naming the missing flags.
func (f Files) Check() error {
	if !f.Enabled() {
		return nil
	}
	var missing []string
	for _, m := range []struct{ flag, v string }{{"--tls-ca", f.CA}, {"--tls-cert", f.Cert}, {"--tls-key", f.Key}} {
		if m.v == "" {
			missing = append(missing, m.flag)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("TLS needs --tls-ca, --tls-cert and --tls-key together: %s missing", strings.Join(missing, " and "))
	}
	return nil
}

// Identity is a node's loaded TLS identity: the CA pool and the current
// certificate (re-read when its files change, for identities loaded from
// files).
type Identity struct {
	roots    *x509.CertPool
	caName   string
	files    Files // empty for FromPEM identities (no reload)
	role     string
	onReload func(leaf *x509.Certificate, err error)
	now      func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	certSt  fileStamp
	keySt   fileStamp
	lastErr string
}

// fileStamp is what tells a changed file.
type fileStamp struct {
	size int64
	mod  time.Time
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: fi.Size(), mod: fi.ModTime()}, nil
}

// Load reads and checks f (all three files must be set). onReload, if not
// nil, is called after the certificate files changed: with the new leaf
// certificate when it was taken, or with the reason it was not (the
// previous certificate stays in use).
func Load(f Files, onReload func(leaf *x509.Certificate, err error)) (*Identity, error) {
	if !f.Enabled() {
		return nil, errors.New("TLS: no --tls-ca, --tls-cert and --tls-key given")
	}
	if err := f.Check(); err != nil {
		return nil, err
	}
	caPEM, err := readFile("CA bundle (--tls-ca)", f.CA)
	if err != nil {
		return nil, err
	}
	roots, err := parseCABundle(caPEM, "TLS CA bundle (--tls-ca) "+f.CA)
	if err != nil {
		return nil, err
	}
	id := &Identity{roots: roots, caName: f.CA, files: f, onReload: onReload, now: time.Now}
	cert, cs, ks, err := id.loadPair()
	if err != nil {
		return nil, err
	}
	if id.role, err = CertRole(cert.Leaf); err != nil {
		return nil, fmt.Errorf("TLS certificate (--tls-cert) %s: %w", f.Cert, err)
	}
	id.cert, id.certSt, id.keySt = cert, cs, ks
	return id, nil
}

// FromPEM builds an identity from PEM bytes (tests, in-memory clusters):
// the same checks as Load, no reloading.
func FromPEM(caPEM, certPEM, keyPEM []byte) (*Identity, error) {
	roots, err := parseCABundle(caPEM, "TLS CA bundle")
	if err != nil {
		return nil, err
	}
	id := &Identity{roots: roots, caName: "the CA bundle", now: time.Now}
	cert, err := id.checkPair(certPEM, keyPEM, "TLS certificate", "TLS key")
	if err != nil {
		return nil, err
	}
	if id.role, err = CertRole(cert.Leaf); err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	id.cert = cert
	return id, nil
}

func readFile(what, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("TLS %s %s: no such file", what, path)
		}
		return nil, fmt.Errorf("TLS %s %s: %w", what, path, err)
	}
	return b, nil
}

// parseCABundle parses every CERTIFICATE block of a bundle.
func parseCABundle(b []byte, name string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d does not parse: %w", name, n+1, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("%s: certificate %d (%q) is not a CA certificate", name, n+1, c.Subject.CommonName)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: not PEM: no CERTIFICATE block found", name)
	}
	return pool, nil
}

// loadPair reads and checks the certificate and key files, returning their
// stamps taken before reading (a change while reading is seen next time).
func (id *Identity) loadPair() (*tls.Certificate, fileStamp, fileStamp, error) {
	cs, err := stamp(id.files.Cert)
	if err != nil {
		_, err = readFile("certificate (--tls-cert)", id.files.Cert)
		return nil, cs, fileStamp{}, err
	}
	ks, err := stamp(id.files.Key)
	if err != nil {
		_, err = readFile("key (--tls-key)", id.files.Key)
		return nil, cs, ks, err
	}
	certPEM, err := readFile("certificate (--tls-cert)", id.files.Cert)
	if err != nil {
		return nil, cs, ks, err
	}
	keyPEM, err := readFile("key (--tls-key)", id.files.Key)
	if err != nil {
		return nil, cs, ks, err
	}
	cert, err := id.checkPair(certPEM, keyPEM, "TLS certificate (--tls-cert) "+id.files.Cert, "TLS key (--tls-key) "+id.files.Key)
	return cert, cs, ks, err
}

// checkPair parses a certificate (chain) and its key and checks the pair
// against the CA and the clock.
func (id *Identity) checkPair(certPEM, keyPEM []byte, certName, keyName string) (*tls.Certificate, error) {
	if !hasBlock(certPEM, "CERTIFICATE") {
		return nil, fmt.Errorf("%s: not PEM: no CERTIFICATE block found", certName)
	}
	if !hasBlock(keyPEM, "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY") {
		return nil, fmt.Errorf("%s: not PEM: no PRIVATE KEY block found", keyName)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, fmt.Errorf("%s does not match the certificate %s", keyName, certName)
		}
		return nil, fmt.Errorf("%s / %s: %w", certName, keyName, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", certName, err)
		}
		pair.Leaf = leaf
	}
	now := id.now()
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%s expired on %s", certName, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("%s is not valid before %s", certName, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: id.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%s is not signed by the CA in %s: %w", certName, id.caName, err)
	}
	return &pair, nil
}

func hasBlock(b []byte, types ...string) bool {
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return false
		}
		for _, t := range types {
			if blk.Type == t {
				return true
			}
		}
	}
}

// Role is the role of the certificate (CertRole), "" for a certificate
// without one. It is fixed at Load: a rotated certificate with another role
// is not taken.
func (id *Identity) Role() string { return id.role }

// Leaf is the certificate in use.
func (id *Identity) Leaf() *x509.Certificate {
	return id.current().Leaf
}

// current returns the certificate to present, first re-reading the files
// if they changed.
func (id *Identity) current() *tls.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.files.Cert == "" {
		return id.cert
	}
	cs, err1 := stamp(id.files.Cert)
	ks, err2 := stamp(id.files.Key)
	if err1 != nil || err2 != nil || (cs == id.certSt && ks == id.keySt) {
		return id.cert // a file being replaced: keep the current pair
	}
	cert, cs, ks, err := id.loadPair()
	if err == nil {
		err = id.sameRole(cert.Leaf)
	}
	if err != nil {
		// Report each distinct failure once; try again at the next change.
		id.certSt, id.keySt = cs, ks
		if id.onReload != nil && err.Error() != id.lastErr {
			id.onReload(nil, err)
		}
		id.lastErr = err.Error()
		return id.cert
	}
	id.cert, id.certSt, id.keySt, id.lastErr = cert, cs, ks, ""
	if id.onReload != nil {
		id.onReload(cert.Leaf, nil)
	}
	return id.cert
}

// ServerConfig is the server side: TLS 1.3, the node's certificate, and a
// client certificate signed by the CA required from every client.
func (id *Identity) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  id.roots,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return id.current(), nil
		},
	}
}

// ClientConfig is the client side: TLS 1.3, the server verified against
// the CA, the node's certificate presented. serverName overrides the name
// the server's certificate must carry; empty means the dialed host (gRPC
// fills it in from the target's authority).
func (id *Identity) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    id.roots,
		ServerName: serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return id.current(), nil
		},
	}
}

// ServerCredentials are ServerConfig as gRPC transport credentials
// (grpc.Creds).
func (id *Identity) ServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(id.ServerConfig())
}

// ClientCredentials are ClientConfig(serverName) as gRPC transport
// credentials (grpc.WithTransportCredentials).
func (id *Identity) ClientCredentials(serverName string) credentials.TransportCredentials {
	return credentials.NewTLS(id.ClientConfig(serverName))
}

// sameRole refuses a reloaded certificate whose role differs from the one
// the process started with: what a process may do is decided at start (its
// flags, the servers it talks to), so a role changes with a restart.
func (id *Identity) sameRole(leaf *x509.Certificate) error {
	r, err := CertRole(leaf)
	if err != nil {
		return fmt.Errorf("TLS certificate (--tls-cert) %s: %w", id.files.Cert, err)
	}
	if r != id.role {
		return fmt.Errorf("TLS certificate (--tls-cert) %s now carries role %q, not %q as at start: restart the process to change its role", id.files.Cert, r, id.role)
	}
	return nil
}
