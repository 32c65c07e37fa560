package tlsutil

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DirCheck configures CheckDir: what a certificate directory must hold to
// be kept rather than minted again.
type DirCheck struct {
	// Hosts is the comma-separated host list (see ParseHosts) every entry
	// of which the certificate of each role that serves must cover: a name
	// as a DNS SAN (exactly, or matched by a wildcard SAN), an IP as an IP
	// SAN.
	Hosts string
	// Roles are the roles whose directories the set must hold (default
	// AllRoles).
	Roles []string
	// CAKey requires ca.key, which must be the key of ca.crt.
	CAKey bool
	// Extra names further files of the directory that must be present and
	// not empty (gossip.key, join.token).
	Extra []string
	// CA, if set, is a CA bundle every certificate must be signed by,
	// besides the directory's ca.crt.
	CA string
	// MinRemaining is how long the certificates and their CA must stay
	// valid from now.
	MinRemaining time.Duration
}

// CheckDir checks a certificate directory (as Mint and WriteDir write it)
// before it is reused. It returns (nil, nil) when none of the directory's
// files exists (nothing to keep: mint); the certificates, in o.Roles order,
// when the set is complete — ca.crt, ca.key with o.CAKey, the o.Extra
// files, and ROLE/ca.crt, ROLE/tls.crt, ROLE/tls.key for each role — and
// each role's directory loads as an Identity (Load: parses, the key
// matches, the CA signed it, currently valid) with the top ca.crt as its
// CA, carries its role, covers every host of o.Hosts if the role serves,
// and stays valid for o.MinRemaining; and otherwise an error naming the
// directory and what is wrong (missing files and the ones present, a set
// from before roles, a wrong role, hosts not covered, the expiry). It never
// writes.
func CheckDir(dir string, o DirCheck) ([]*x509.Certificate, error) {
	if dir == "" {
		return nil, errors.New("no certificate directory given (--out)")
	}
	roles := o.Roles
	if len(roles) == 0 {
		roles = AllRoles
	}
	var sans SANs
	if slices.ContainsFunc(roles, Serves) {
		var err error
		if sans, err = ParseHosts(o.Hosts); err != nil {
			return nil, err
		}
	}
	want := []string{CAFile}
	if o.CAKey {
		want = append(want, CAKeyFile)
	}
	want = append(want, o.Extra...)
	for _, r := range roles {
		want = append(want, filepath.Join(r, CAFile), filepath.Join(r, CertFile), filepath.Join(r, KeyFile))
	}
	var present, missing []string
	for _, name := range want {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.Mode().IsRegular():
			return nil, fmt.Errorf("%s is not a regular file", p)
		case err == nil:
			present = append(present, name)
		case errors.Is(err, os.ErrNotExist):
			missing = append(missing, name)
		default:
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	if len(missing) > 0 {
		if legacy := legacyFiles(dir); len(legacy) > 0 {
			return nil, fmt.Errorf("%s holds a certificate set from before roles (%s: one certificate for every process); the set is now one certificate per role in %s/: remove the old files",
				dir, strings.Join(legacy, ", "), strings.Join(roles, "/, "))
		}
	}
	if len(present) == 0 {
		// A lone ca.key that was not asked for still makes the set partial.
		if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err != nil {
			return nil, nil
		}
		present = append(present, CAKeyFile)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s holds an incomplete certificate set: %s missing (present: %s)",
			dir, strings.Join(missing, ", "), strings.Join(present, ", "))
	}
	for _, name := range o.Extra {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(b)) == 0 {
			return nil, fmt.Errorf("%s is empty", p)
		}
	}

	caPath := filepath.Join(dir, CAFile)
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		return nil, err
	}
	if o.CAKey {
		keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
		if err != nil {
			return nil, err
		}
		if _, err := ParseCA(caPEM, keyPEM); err != nil {
			return nil, fmt.Errorf("%s / %s: %w", caPath, filepath.Join(dir, CAKeyFile), err)
		}
	}
	var leaves []*x509.Certificate
	for _, r := range roles {
		leaf, err := checkRoleDir(filepath.Join(dir, r), r, caPEM, caPath, sans, o)
		if err != nil {
			return nil, err
		}
		leaves = append(leaves, leaf)
	}
	return leaves, nil
}

// legacyFiles are the files of a set from before roles (one tls.crt and
// tls.key at the top of the directory) that dir holds.
func legacyFiles(dir string) []string {
	var out []string
	for _, name := range []string{CertFile, KeyFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			out = append(out, name)
		}
	}
	return out
}

// checkRoleDir checks one role's directory of a set (see CheckDir) and
// returns its certificate.
func checkRoleDir(rdir, role string, caPEM []byte, caPath string, sans SANs, o DirCheck) (*x509.Certificate, error) {
	files := DirFiles(rdir)
	if b, err := os.ReadFile(files.CA); err != nil {
		return nil, err
	} else if !bytes.Equal(b, caPEM) {
		return nil, fmt.Errorf("%s differs from %s: every role's certificate comes from the one CA", files.CA, caPath)
	}
	id, err := Load(files, nil)
	if err != nil {
		return nil, fmt.Errorf("%s does not hold a usable certificate set: %w", rdir, err)
	}
	leaf := id.Leaf()
	if id.Role() != role {
		got := "no role"
		if id.Role() != "" {
			got = "role " + id.Role()
		}
		return nil, fmt.Errorf("%s carries %s, want %s", files.Cert, got, role)
	}
	if o.CA != "" {
		other, err := Load(Files{CA: o.CA, Cert: files.Cert, Key: files.Key}, nil)
		if err != nil {
			return nil, fmt.Errorf("%s was not issued by the CA %s: %w", files.Cert, o.CA, err)
		}
		if err := checkRootExpiry(other, o.MinRemaining); err != nil {
			return nil, err
		}
	}
	if Serves(role) {
		var uncovered []string
		for _, h := range sans.DNS {
			if !coversName(leaf, h) {
				uncovered = append(uncovered, h)
			}
		}
		for _, ip := range sans.IPs {
			if !coversIP(leaf, ip) {
				uncovered = append(uncovered, ip.String())
			}
		}
		if len(uncovered) > 0 {
			return nil, fmt.Errorf("%s does not cover %s (it names %s)", files.Cert, strings.Join(uncovered, ", "), strings.Join(certHosts(leaf), ", "))
		}
	}
	if limit := time.Now().Add(o.MinRemaining); leaf.NotAfter.Before(limit) {
		return nil, fmt.Errorf("%s expires on %s, within %v", files.Cert, leaf.NotAfter.UTC().Format(time.RFC3339), o.MinRemaining)
	}
	if err := checkRootExpiry(id, o.MinRemaining); err != nil {
		return nil, err
	}
	return leaf, nil
}

// checkRootExpiry checks that the CA that signed id's certificate stays
// valid for d.
func checkRootExpiry(id *Identity, d time.Duration) error {
	leaf := id.Leaf()
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: id.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("TLS certificate is not signed by the CA in %s: %w", id.caName, err)
	}
	limit := time.Now().Add(d)
	for _, ch := range chains {
		root := ch[len(ch)-1]
		if root.NotAfter.Before(limit) {
			return fmt.Errorf("the CA %q in %s expires on %s, within %v", root.Subject.CommonName, id.caName,
				root.NotAfter.UTC().Format(time.RFC3339), d)
		}
	}
	return nil
}

// coversName reports whether the certificate is valid for the DNS name h:
// h among its DNS SANs, or (h not itself a wildcard) matched by one.
func coversName(c *x509.Certificate, h string) bool {
	for _, n := range c.DNSNames {
		if strings.EqualFold(n, h) {
			return true
		}
	}
	return !strings.HasPrefix(h, "*.") && c.VerifyHostname(h) == nil
}

func coversIP(c *x509.Certificate, ip net.IP) bool {
	for _, a := range c.IPAddresses {
		if a.Equal(ip) {
			return true
		}
	}
	return false
}

// certHosts lists a certificate's SANs, DNS names first.
func certHosts(c *x509.Certificate) []string {
	out := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	if len(out) == 0 {
		out = []string{"no subject alternative names"}
	}
	return out
}
