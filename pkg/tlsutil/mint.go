package tlsutil

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/logitpair/logitpair/pkg/atomicfile"
)

// The files of a certificate directory, named as Kubernetes TLS Secrets
// (kubernetes.io/tls, plus ca.crt) expect them.
const (
	CAFile        = "ca.crt"     // the CA certificate (the --tls-ca bundle)
	CAKeyFile     = "ca.key"     // the CA's private key (keep it off the cluster)
	CertFile      = "tls.crt"    // the node certificate (--tls-cert)
	KeyFile       = "tls.key"    // the node certificate's private key (--tls-key)
	GossipKeyFile = "gossip.key" // base64 gossip key (LOGITPAIR_GOSSIP_KEY)
	JoinTokenFile = "join.token" // join token (LOGITPAIR_JOIN_TOKEN)
)

// DefaultValidity is how long a minted CA and certificate are valid.
const DefaultValidity = 365 * 24 * time.Hour

// backdate makes a fresh certificate valid a little before it is minted
// (clock skew between machines).
const backdate = 5 * time.Minute

// CA is a certificate authority that can issue node certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// CAOptions configures NewCA.
type CAOptions struct {
	// Name is the CA's common name (default "logitpair development CA").
	Name string
	// NotBefore is the start of validity (zero: now − 5 minutes).
	NotBefore time.Time
	// Validity is how long it is valid from NotBefore (zero: one year).
	Validity time.Duration
}

// NewCA mints a self-signed ECDSA P-256 CA.
func NewCA(o CAOptions) (*CA, error) {
	if o.Name == "" {
		o.Name = "logitpair development CA"
	}
	nb, na, err := validity(o.NotBefore, o.Validity)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.Name, Organization: []string{"logitpair"}},
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM}, nil
}

// ParseCA loads an existing CA (its certificate and ECDSA key, PEM), to
// issue new node certificates from it (rotation).
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("CA certificate: not PEM: no CERTIFICATE block found")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("CA certificate %q is not a CA certificate", cert.Subject.CommonName)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("CA key: not PEM: no PRIVATE KEY block found")
	}
	var key *ecdsa.PrivateKey
	switch kb.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA key: %w", err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("CA key: a %T, want an ECDSA key", k)
		}
		key = ek
	case "EC PRIVATE KEY":
		if key, err = x509.ParseECPrivateKey(kb.Bytes); err != nil {
			return nil, fmt.Errorf("CA key: %w", err)
		}
	default:
		return nil, fmt.Errorf("CA key: PEM block %q, want PRIVATE KEY", kb.Type)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("CA key does not match the CA certificate")
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), KeyPEM: keyPEM}, nil
}

// CertOptions configures CA.Issue.
type CertOptions struct {
	// CommonName of the subject (default "logitpair ROLE", or "logitpair
	// node" without a role).
	CommonName string
	// Role goes into the certificate as the URI SAN logitpair://role/ROLE
	// (see RoleURI). A role that serves nothing (Serves: the worker) gets a
	// client-only certificate (ClientAuth, no host names). Empty: no role,
	// as certificates were before roles (tests of refusing them).
	Role string
	// Hosts become the subject alternative names: IP addresses as IP SANs,
	// names (wildcards such as *.ps.default.svc allowed) as DNS SANs. See
	// ParseHosts. Required unless the role serves nothing, and then not
	// allowed.
	Hosts []string
	// NotBefore is the start of validity (zero: now − 5 minutes).
	NotBefore time.Time
	// Validity is how long it is valid from NotBefore (zero: one year). The
	// certificate never outlives its CA: NotAfter is capped at the CA's.
	Validity time.Duration
}

// Issue mints an ECDSA P-256 certificate signed by ca and its key, both PEM
// (the key PKCS #8): good for both ends of a mutual-TLS connection
// (ServerAuth and ClientAuth) with the hosts as SANs, or for the client end
// only for a role that serves nothing.
func (ca *CA) Issue(o CertOptions) (certPEM, keyPEM []byte, err error) {
	serves := true
	var uris []*url.URL
	if o.Role != "" {
		if err := CheckRole(o.Role); err != nil {
			return nil, nil, err
		}
		serves = Serves(o.Role)
		uris = []*url.URL{RoleURI(o.Role)}
	}
	if o.CommonName == "" {
		o.CommonName = "logitpair node"
		if o.Role != "" {
			o.CommonName = "logitpair " + o.Role
		}
	}
	var sans SANs
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if serves {
		if sans, err = ParseHosts(strings.Join(o.Hosts, ",")); err != nil {
			return nil, nil, err
		}
	} else {
		if len(o.Hosts) > 0 {
			return nil, nil, fmt.Errorf("a %s certificate is for clients only and carries no host names, got %s", o.Role, strings.Join(o.Hosts, ","))
		}
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	nb, na, err := validity(o.NotBefore, o.Validity)
	if err != nil {
		return nil, nil, err
	}
	if na.After(ca.Cert.NotAfter) {
		na = ca.Cert.NotAfter
	}
	if nb.Before(ca.Cert.NotBefore) {
		nb = ca.Cert.NotBefore
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: o.CommonName, Organization: []string{"logitpair"}},
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  eku,
		DNSNames:     sans.DNS,
		IPAddresses:  sans.IPs,
		URIs:         uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func validity(notBefore time.Time, d time.Duration) (time.Time, time.Time, error) {
	if d < 0 {
		return time.Time{}, time.Time{}, fmt.Errorf("validity %v is negative", d)
	}
	if d == 0 {
		d = DefaultValidity
	}
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-backdate)
	}
	return notBefore, notBefore.Add(d), nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// SANs are a certificate's subject alternative names.
type SANs struct {
	DNS []string
	IPs []net.IP
}

// ParseHosts parses a comma-separated host list (`--hosts
// coordinator,ps-0,*.ps.default.svc,localhost,127.0.0.1`): IP addresses
// (v4 or v6) become IP SANs, DNS names DNS SANs (lower-cased). A name is
// dot-separated labels of letters, digits and hyphens (1–63 characters, no
// hyphen at either end, at most 253 in all); a wildcard is allowed only as
// the whole leftmost label, followed by at least two labels. Empty
// entries, ports, schemes, paths and other characters are rejected with the
// entry named; duplicates are dropped.
func ParseHosts(s string) (SANs, error) {
	var out SANs
	seen := map[string]bool{}
	if strings.TrimSpace(s) == "" {
		return out, errors.New("--hosts: no host names given")
	}
	for i, h := range strings.Split(s, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return SANs{}, fmt.Errorf("--hosts: entry %d is empty", i+1)
		}
		if ip := net.ParseIP(h); ip != nil {
			if !seen[ip.String()] {
				seen[ip.String()] = true
				out.IPs = append(out.IPs, ip)
			}
			continue
		}
		name := strings.ToLower(h)
		if err := checkDNSName(name); err != nil {
			return SANs{}, fmt.Errorf("--hosts: %q is neither an IP address nor a DNS name: %v", h, err)
		}
		if !seen[name] {
			seen[name] = true
			out.DNS = append(out.DNS, name)
		}
	}
	return out, nil
}

func checkDNSName(name string) error {
	if len(name) > 253 {
		return fmt.Errorf("%d characters, at most 253", len(name))
	}
	labels := strings.Split(name, ".")
	for i, l := range labels {
		if l == "*" {
			if i != 0 {
				return errors.New("a wildcard is allowed only as the leftmost label")
			}
			if len(labels) < 3 {
				return errors.New("a wildcard needs at least two labels after it (*.example.svc)")
			}
			continue
		}
		if l == "" {
			return errors.New("empty label")
		}
		if len(l) > 63 {
			return fmt.Errorf("label %q longer than 63 characters", l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", l)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("character %q not allowed", r)
			}
		}
	}
	return nil
}

// DirFile is one file of a certificate directory.
type DirFile struct {
	Name string // file name inside the directory
	Data []byte
	Perm os.FileMode
}

// WriteDir writes files into dir (created 0700 if missing, as are the
// subdirectories a file name may include), each atomically
// (pkg/atomicfile) with its mode. Unless force is set it writes nothing
// when any of them exists with other content, naming them; a file that
// already holds exactly the same bytes is left alone. It returns the paths
// written.
func WriteDir(dir string, files []DirFile, force bool) ([]string, error) {
	if dir == "" {
		return nil, errors.New("no output directory given (--out)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var exist, write []string
	var todo []DirFile
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		old, err := os.ReadFile(p)
		switch {
		case err == nil && bytes.Equal(old, f.Data):
			continue
		case err == nil:
			exist = append(exist, p)
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		todo = append(todo, f)
	}
	if len(exist) > 0 && !force {
		return nil, fmt.Errorf("refusing to overwrite %s (use --force)", strings.Join(exist, ", "))
	}
	for _, f := range todo {
		p := filepath.Join(dir, f.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil { // a role's subdirectory
			return write, err
		}
		if err := atomicfile.Write(p, f.Data, f.Perm); err != nil {
			return write, fmt.Errorf("writing %s: %w", p, err)
		}
		write = append(write, p)
	}
	return write, nil
}

// MintOptions configures Mint.
type MintOptions struct {
	// Hosts is the comma-separated SAN list of the certificates of the
	// roles that serve (coordinator, paramserver); workers' certificates
	// carry none.
	Hosts string
	// Roles to issue a certificate for (default AllRoles).
	Roles []string
	// CA signs the certificates; nil mints a new CA.
	CA *CA
	// WriteCAKey puts the CA's key (ca.key) among the files; a launcher
	// that never issues again leaves it out.
	WriteCAKey bool
	// Validity of a new CA and of the certificates (zero: one year).
	Validity time.Duration
}

// Mint issues one certificate per role (from o.CA or a new CA) and returns
// the files of a certificate directory:
//
//	ca.crt, ca.key (with WriteCAKey)      the CA
//	ROLE/ca.crt, ROLE/tls.crt, ROLE/tls.key   for each role
//
// Each ROLE directory is complete on its own (the CA bundle, the role's
// certificate and key), so it can be mounted, or made a Kubernetes TLS
// Secret, for that role's processes alone. Keys are mode 0600,
// certificates 0644.
func Mint(o MintOptions) ([]DirFile, error) {
	roles := o.Roles
	if len(roles) == 0 {
		roles = AllRoles
	}
	for _, r := range roles {
		if err := CheckRole(r); err != nil {
			return nil, err
		}
	}
	if slices.ContainsFunc(roles, Serves) {
		if _, err := ParseHosts(o.Hosts); err != nil {
			return nil, err
		}
	}
	ca := o.CA
	if ca == nil {
		var err error
		if ca, err = NewCA(CAOptions{Validity: o.Validity}); err != nil {
			return nil, err
		}
	}
	files := []DirFile{{CAFile, ca.CertPEM, 0o644}}
	if o.WriteCAKey {
		files = append(files, DirFile{CAKeyFile, ca.KeyPEM, 0o600})
	}
	for _, r := range roles {
		co := CertOptions{Role: r, Validity: o.Validity}
		if Serves(r) {
			co.Hosts = strings.Split(o.Hosts, ",")
		}
		certPEM, keyPEM, err := ca.Issue(co)
		if err != nil {
			return nil, err
		}
		files = append(files, DirFile{filepath.Join(r, CAFile), ca.CertPEM, 0o644},
			DirFile{filepath.Join(r, CertFile), certPEM, 0o644}, DirFile{filepath.Join(r, KeyFile), keyPEM, 0o600})
	}
	return files, nil
}

// DirFiles are the Files of a directory holding ca.crt, tls.crt and
// tls.key: one role's directory of a set Mint wrote (RoleFiles), or a
// Kubernetes TLS Secret mounted as a volume.
func DirFiles(dir string) Files {
	return Files{CA: filepath.Join(dir, CAFile), Cert: filepath.Join(dir, CertFile), Key: filepath.Join(dir, KeyFile)}
}

// RoleFiles are the Files of role's directory in a set Mint wrote into
// dir.
func RoleFiles(dir, role string) Files { return DirFiles(filepath.Join(dir, role)) }
