package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/logitpair/logitpair/pkg/membership"
	"github.com/logitpair/logitpair/pkg/node"
	"github.com/logitpair/logitpair/pkg/tlsutil"
)

// newCertsCmd is `logitpair certs`: a development CA, the cluster's node
// certificate and optionally its gossip key and join token, in a directory
// laid out as Kubernetes TLS Secrets expect.
func newCertsCmd() *cobra.Command {
	var (
		out, hosts, caCert, caKey string
		validity                  time.Duration
		secrets, force, keep      bool
		noCAKey                   bool
	)
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Mint a development CA and the cluster's mutual-TLS certificate (and, with --secrets, a gossip key and join token)",
		Long: `Mint a development CA (ECDSA P-256) and one node certificate, signed by it, that every
process presents as server and client (ServerAuth and ClientAuth), with the --hosts as
subject alternative names (IPs as IP SANs, names as DNS SANs, wildcards such as
*.ps.default.svc allowed). Files in --out:

  ca.crt      the CA certificate          --tls-ca
  ca.key      the CA key (0600)           keep it off the cluster; needed to issue again
  tls.crt     the node certificate        --tls-cert
  tls.key     its key (0600)              --tls-key
  gossip.key  with --secrets (0600)       LOGITPAIR_GOSSIP_KEY
  join.token  with --secrets (0600)       LOGITPAIR_JOIN_TOKEN

Existing files are not overwritten without --force. To rotate the node certificate
without changing the CA, pass --ca-cert and --ca-key (e.g. DIR/ca.crt and DIR/ca.key)
with --force: only tls.crt and tls.key change, and running processes pick them up.

--keep-existing makes the command idempotent (a container that runs before the
cluster at every start): when --out already holds a complete set — ca.crt,
tls.crt, tls.key, ca.key unless --no-ca-key or --ca-cert, gossip.key and
join.token with --secrets — that loads (the key matches, the CA signed the
certificate, with --ca-cert that CA too), whose certificate covers every --hosts
entry and which stays valid for at least 7 more days, nothing is written. When
none of these files exists a new set is minted. Anything else (some files
missing, a set that does not load, hosts not covered, expiring soon) is an
error naming the problem: nothing is overwritten (--force replaces the set).

--no-ca-key leaves the new CA's key unwritten (it exists only in memory while
the command runs): nothing can ever be issued from that CA again, and no
process that mounts the directory holds it. Rotate by minting a new set.`,
		Example: `  logitpair certs --out certs --hosts coordinator,ps-0,ps-1,*.ps.default.svc,localhost,127.0.0.1 --secrets
  logitpair certs --out /data --hosts coordinator,ps-0,ps-1 --keep-existing --no-ca-key    # docker-compose.yml
  kubectl create secret generic logitpair-tls --from-file=certs/ca.crt --from-file=certs/tls.crt --from-file=certs/tls.key
  kubectl create secret generic logitpair-secrets --from-file=gossip-key=certs/gossip.key --from-file=join-token=certs/join.token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			if (caCert == "") != (caKey == "") {
				return fmt.Errorf("--ca-cert and --ca-key go together")
			}
			if validity < 0 {
				return fmt.Errorf("--validity must be positive, got %v", validity)
			}
			if _, err := tlsutil.ParseHosts(hosts); err != nil {
				return err
			}
			if keep && force {
				return fmt.Errorf("--keep-existing and --force exclude each other")
			}
			w := cmd.OutOrStdout()
			if keep {
				kept, err := keepExisting(out, hosts, caCert, secrets, !noCAKey && caCert == "")
				if err != nil {
					return err
				}
				if kept != nil {
					fmt.Fprintf(w, "kept the existing certificate set in %s (--keep-existing): node certificate for %s, valid until %s\n",
						out, strings.Join(certNames(kept.DNSNames, kept.IPAddresses), ", "), kept.NotAfter.UTC().Format(time.RFC3339))
					printUsage(w, out, secrets)
					return nil
				}
			}
			var ca *tlsutil.CA
			if caCert != "" {
				cb, err := os.ReadFile(caCert)
				if err != nil {
					return fmt.Errorf("--ca-cert: %w", err)
				}
				kb, err := os.ReadFile(caKey)
				if err != nil {
					return fmt.Errorf("--ca-key: %w", err)
				}
				if ca, err = tlsutil.ParseCA(cb, kb); err != nil {
					return fmt.Errorf("--ca-cert %s / --ca-key %s: %w", caCert, caKey, err)
				}
				if time.Now().After(ca.Cert.NotAfter) {
					return fmt.Errorf("--ca-cert %s expired on %s", caCert, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
				}
			}
			// A new CA's key is written (unless --no-ca-key); an existing one's
			// stays where it is.
			files, err := tlsutil.Mint(tlsutil.MintOptions{Hosts: hosts, CA: ca, WriteCAKey: ca == nil && !noCAKey, Validity: validity})
			if err != nil {
				return err
			}
			if secrets {
				s, err := node.NewSecrets()
				if err != nil {
					return err
				}
				files = append(files, tlsutil.DirFile{Name: tlsutil.GossipKeyFile, Data: []byte(s.GossipKey), Perm: 0o600},
					tlsutil.DirFile{Name: tlsutil.JoinTokenFile, Data: []byte(s.JoinToken), Perm: 0o600})
			}
			written, err := tlsutil.WriteDir(out, files, force)
			if err != nil {
				return err
			}
			for _, p := range written {
				fmt.Fprintf(w, "wrote %s\n", p)
			}
			sans, _ := tlsutil.ParseHosts(hosts)
			fmt.Fprintf(w, "node certificate for %s\n", strings.Join(certNames(sans.DNS, sans.IPs), ", "))
			printUsage(w, out, secrets)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&out, "out", "", "output directory (created 0700 if missing)")
	fs.StringVar(&hosts, "hosts", "localhost,127.0.0.1", "comma-separated names and IPs the node certificate is valid for")
	fs.DurationVar(&validity, "validity", tlsutil.DefaultValidity, "validity of a new CA and of the certificate (never beyond the CA's)")
	fs.StringVar(&caCert, "ca-cert", "", "issue from this existing CA certificate (PEM) instead of minting a CA")
	fs.StringVar(&caKey, "ca-key", "", "the existing CA's key (PEM), with --ca-cert")
	fs.BoolVar(&secrets, "secrets", false, "also write a fresh gossip key (gossip.key) and join token (join.token)")
	fs.BoolVar(&force, "force", false, "overwrite existing files")
	fs.BoolVar(&keep, "keep-existing", false, "keep a complete, valid set already in --out that covers --hosts; mint only into an empty one (see above)")
	fs.BoolVar(&noCAKey, "no-ca-key", false, "do not write a new CA's key (ca.key): no process mounting --out holds it, nothing can be issued from the CA again")
	return cmd
}

// keepMinRemaining is how long a set --keep-existing keeps must stay valid.
const keepMinRemaining = 7 * 24 * time.Hour

// keepExisting checks --out for --keep-existing: the node certificate of a
// complete, valid set to keep, nil when there is nothing (mint), or an
// error naming what is wrong.
func keepExisting(out, hosts, caCert string, secrets, caKey bool) (*x509.Certificate, error) {
	var extra []string
	if secrets {
		extra = []string{tlsutil.GossipKeyFile, tlsutil.JoinTokenFile}
	}
	leaf, err := tlsutil.CheckDir(out, tlsutil.DirCheck{Hosts: hosts, CAKey: caKey, Extra: extra, CA: caCert, MinRemaining: keepMinRemaining})
	if err == nil && leaf != nil && secrets {
		p := filepath.Join(out, tlsutil.GossipKeyFile)
		b, rerr := os.ReadFile(p)
		if rerr != nil {
			return nil, fmt.Errorf("--keep-existing: %w", rerr)
		}
		if _, perr := membership.ParseKey(strings.TrimSpace(string(b))); perr != nil {
			err = fmt.Errorf("%s: %w", p, perr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("--keep-existing: %w; nothing was written (remove the files, or use --force instead of --keep-existing to mint a new set)", err)
	}
	return leaf, nil
}

// certNames lists SANs, DNS names first.
func certNames(dns []string, ips []net.IP) []string {
	names := append([]string(nil), dns...)
	for _, ip := range ips {
		names = append(names, ip.String())
	}
	return names
}

// printUsage prints how processes and Kubernetes use the directory.
func printUsage(w io.Writer, out string, secrets bool) {
	fmt.Fprintf(w, "run every process with --tls-ca %s --tls-cert %s --tls-key %s\n",
		filepath.Join(out, tlsutil.CAFile), filepath.Join(out, tlsutil.CertFile), filepath.Join(out, tlsutil.KeyFile))
	fmt.Fprintf(w, "Kubernetes: kubectl create secret generic logitpair-tls --from-file=%s --from-file=%s --from-file=%s\n",
		filepath.Join(out, tlsutil.CAFile), filepath.Join(out, tlsutil.CertFile), filepath.Join(out, tlsutil.KeyFile))
	if secrets {
		fmt.Fprintf(w, "Kubernetes: kubectl create secret generic logitpair-secrets --from-file=gossip-key=%s --from-file=join-token=%s\n",
			filepath.Join(out, tlsutil.GossipKeyFile), filepath.Join(out, tlsutil.JoinTokenFile))
	}
}
