package tlsutil

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzParseHosts parses a --hosts list. ParseHosts must either fail or
// return at least one name, DNS names lower-case, valid and without
// repeats, IP addresses without repeats, one for each entry of the list;
// and the result, written back as a list, must parse to itself.
func FuzzParseHosts(f *testing.F) {
	for _, s := range []string{
		"coordinator,ps-0,*.ps.default.svc,localhost,127.0.0.1",
		"::1, 10.0.0.1 ,Worker-3.Example.COM",
		"a,a,A",
		"*.b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sans, err := ParseHosts(s)
		if err != nil {
			if !strings.Contains(err.Error(), "--hosts") {
				t.Fatalf("error %q does not name --hosts", err)
			}
			return
		}
		if len(sans.DNS)+len(sans.IPs) == 0 {
			t.Fatalf("%q parsed to no names", s)
		}
		var list []string
		for i, d := range sans.DNS {
			if d != strings.ToLower(d) || checkDNSName(d) != nil || slices.Contains(sans.DNS[:i], d) {
				t.Fatalf("DNS name %q is not lower-case, not valid, or repeated", d)
			}
			list = append(list, d)
		}
		for i, ip := range sans.IPs {
			if ip == nil || slices.ContainsFunc(sans.IPs[:i], ip.Equal) {
				t.Fatalf("IP %v nil or repeated", ip)
			}
			list = append(list, ip.String())
		}
		for _, e := range strings.Split(s, ",") {
			e = strings.TrimSpace(e)
			if ip := net.ParseIP(e); ip != nil {
				if !slices.ContainsFunc(sans.IPs, ip.Equal) {
					t.Fatalf("entry %q is not among the IPs %v", e, sans.IPs)
				}
			} else if !slices.Contains(sans.DNS, strings.ToLower(e)) {
				t.Fatalf("entry %q is not among the names %v", e, sans.DNS)
			}
		}
		again, err := ParseHosts(strings.Join(list, ","))
		if err != nil {
			t.Fatalf("the parsed names %q do not parse: %v", list, err)
		}
		if !slices.Equal(again.DNS, sans.DNS) || !slices.EqualFunc(again.IPs, sans.IPs, net.IP.Equal) {
			t.Fatalf("%v parsed back to %v", sans, again)
		}
	})
}

// seedCA mints a CA and a node certificate valid from 2020 for a century,
// so that the seeds stay valid.
func seedCA(f *testing.F) (*CA, []byte, []byte) {
	from := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := NewCA(CAOptions{NotBefore: from, Validity: 100 * 365 * 24 * time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	cert, key, err := ca.Issue(CertOptions{Hosts: []string{"localhost", "127.0.0.1"}, NotBefore: from, Validity: 100 * 365 * 24 * time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	return ca, cert, key
}

// FuzzParseCA loads a CA certificate and key (PEM), as `logitpair certs`
// does to issue from an existing CA. ParseCA must either fail or return a
// CA certificate whose public key is the key's, and whose PEM loads back to
// the same certificate.
func FuzzParseCA(f *testing.F) {
	ca, cert, key := seedCA(f)
	f.Add(ca.CertPEM, ca.KeyPEM)
	f.Add(cert, key)       // not a CA
	f.Add(ca.CertPEM, key) // another key
	f.Add(append(ca.CertPEM, ca.KeyPEM...), []byte("junk"))
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		got, err := ParseCA(certPEM, keyPEM)
		if err != nil {
			if !strings.Contains(err.Error(), "CA") {
				t.Fatalf("error %q does not say it is about the CA", err)
			}
			return
		}
		if !got.Cert.IsCA || got.Key == nil {
			t.Fatalf("ParseCA returned a non-CA certificate or no key")
		}
		if pub, ok := got.Cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&got.Key.PublicKey) {
			t.Fatalf("the key does not match the certificate")
		}
		again, err := ParseCA(got.CertPEM, got.KeyPEM)
		if err != nil {
			t.Fatalf("the CA's own PEM does not load: %v", err)
		}
		if !bytes.Equal(again.Cert.Raw, got.Cert.Raw) || !again.Key.Equal(got.Key) {
			t.Fatalf("the CA changed in the round trip")
		}
	})
}

// FuzzFromPEM builds an identity from a CA bundle, a certificate and a key
// (the --tls-ca, --tls-cert and --tls-key files). FromPEM must either fail
// or return an identity whose certificate is valid now and verifies against
// the bundle.
func FuzzFromPEM(f *testing.F) {
	ca, cert, key := seedCA(f)
	f.Add(ca.CertPEM, cert, key)
	f.Add(ca.CertPEM, ca.CertPEM, ca.KeyPEM)
	f.Add(cert, cert, key)
	f.Add(append(append([]byte{}, ca.CertPEM...), cert...), append(append([]byte{}, cert...), ca.CertPEM...), key)
	f.Fuzz(func(t *testing.T, caPEM, certPEM, keyPEM []byte) {
		id, err := FromPEM(caPEM, certPEM, keyPEM)
		if err != nil {
			return
		}
		leaf := id.Leaf()
		if leaf == nil {
			t.Fatalf("identity without a certificate")
		}
		roots, err := parseCABundle(caPEM, "bundle")
		if err != nil {
			t.Fatalf("FromPEM accepted a bundle parseCABundle refuses: %v", err)
		}
		inter := x509.NewCertPool()
		for _, der := range id.current().Certificate[1:] {
			if c, err := x509.ParseCertificate(der); err == nil {
				inter.AddCert(c)
			}
		}
		now := time.Now()
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("accepted certificate does not verify: %v", err)
		}
	})
}
