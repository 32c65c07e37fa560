package tlsutil

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// The roles a certificate can carry. A cluster has one CA and one
// certificate per role; the gRPC servers (pkg/rpc) decide from the role of
// the verified client certificate which methods a caller may use.
const (
	RoleCoordinator = "coordinator"
	RoleParamServer = "paramserver" // a parameter-server shard
	RoleWorker      = "worker"
)

// AllRoles are the roles in the order `logitpair certs` mints them.
var AllRoles = []string{RoleCoordinator, RoleParamServer, RoleWorker}

// The role is a URI subject alternative name logitpair://role/NAME (e.g.
// logitpair://role/worker): URI SANs are what SPIFFE-style workload
// identities use, every X.509 tool shows them, and a certificate authority
// such as cert-manager or Vault can put one into a certificate it issues.
const (
	roleURIScheme = "logitpair"
	roleURIHost   = "role"
)

// RoleURI is the URI SAN that gives a certificate role.
func RoleURI(role string) *url.URL {
	return &url.URL{Scheme: roleURIScheme, Host: roleURIHost, Path: "/" + role}
}

// CheckRole returns an error unless role is one of AllRoles.
func CheckRole(role string) error {
	if !slices.Contains(AllRoles, role) {
		return fmt.Errorf("unknown role %q (the roles are %s)", role, strings.Join(AllRoles, ", "))
	}
	return nil
}

// ParseRoles parses a comma-separated role list (`--roles
// coordinator,worker`), naming an unknown or repeated entry; an empty list
// is an error.
func ParseRoles(s string) ([]string, error) {
	var out []string
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if err := CheckRole(r); err != nil {
			return nil, fmt.Errorf("--roles: %w", err)
		}
		if slices.Contains(out, r) {
			return nil, fmt.Errorf("--roles: %q given twice", r)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--roles: no role given (the roles are %s)", strings.Join(AllRoles, ", "))
	}
	return out, nil
}

// CertRole returns the role a certificate carries in its
// logitpair://role/NAME URI SAN: "" when it carries none (a certificate
// minted before roles, or by a CA that does not set one), an error when it
// carries an unknown role or more than one.
func CertRole(c *x509.Certificate) (string, error) {
	role := ""
	for _, u := range c.URIs {
		if u.Scheme != roleURIScheme || u.Host != roleURIHost {
			continue
		}
		r := strings.TrimPrefix(u.Path, "/")
		if err := CheckRole(r); err != nil {
			return "", fmt.Errorf("certificate %q: URI SAN %s: %w", c.Subject.CommonName, u, err)
		}
		if role != "" && role != r {
			return "", fmt.Errorf("certificate %q carries two roles, %s and %s: a certificate has one role", c.Subject.CommonName, role, r)
		}
		role = r
	}
	return role, nil
}

// Serves reports whether a role runs a gRPC server: its certificate needs
// the hosts it is dialed by and the ServerAuth usage. A worker serves
// nothing, so its certificate is for clients only and cannot pass for a
// server's.
func Serves(role string) bool { return role != RoleWorker }

// RequireRole returns an error unless the identity's certificate carries
// role: a process checks at start that it was given its role's
// certificate, since the servers refuse the calls of any other role (and
// every call of a certificate without a role).
func (id *Identity) RequireRole(role string) error {
	name := "TLS certificate"
	if id.files.Cert != "" {
		name += " (--tls-cert) " + id.files.Cert
	}
	switch id.role {
	case role:
		return nil
	case "":
		return fmt.Errorf("%s carries no role (minted before roles), and the cluster's servers refuse such certificates: mint per-role certificates with `logitpair certs` and give this %s process the one in %s/", name, role, role)
	}
	return fmt.Errorf("%s is a %s certificate, but this process is a %s: give it its own role's certificate (%s/ of `logitpair certs`)", name, id.role, role, role)
}
