package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/logitpair/logitpair/pkg/membership"
	"github.com/logitpair/logitpair/pkg/node"
	"github.com/logitpair/logitpair/pkg/tlsutil"
)

// newCertsCmd is `logitpair certs`: a development CA, one certificate per
// role (coordinator, paramserver, worker) and optionally the gossip key and
// join token, in a directory laid out as Kubernetes TLS Secrets expect.
func newCertsCmd() *cobra.Command {
	var (
		out, hosts, caCert, caKey, rolesFlag string
		validity                             time.Duration
		secrets, force, keep                 bool
		noCAKey                              bool
	)
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Mint a development CA and the cluster's per-role mutual-TLS certificates (and, with --secrets, a gossip key and join token)",
		Long: `Mint a development CA (ECDSA P-256) and one certificate per role, signed by it:
coordinator, paramserver (the shards) and worker. The role is in the certificate as the
URI subject alternative name logitpair://role/ROLE, and the cluster's servers decide from
it what a caller may do: only the coordinator may Apply, Checkpoint or Restore a shard,
only shards may join the coordinator as shards, only workers may push gradients and
report steps (docs/OPERATIONS.md, "Threat model"). The coordinator's and the shards'
certificates are for servers and clients (ServerAuth and ClientAuth) with the --hosts as
subject alternative names (IPs as IP SANs, names as DNS SANs, wildcards such as
*.ps.default.svc allowed); a worker serves nothing, so its certificate is for clients
only and names no host. Files in --out:

  ca.crt           the CA certificate          (issuing more: --ca-cert)
  ca.key           the CA key (0600)           keep it off the cluster; needed to issue again
  ROLE/ca.crt      the CA certificate          --tls-ca    of ROLE's processes
  ROLE/tls.crt     ROLE's certificate          --tls-cert
  ROLE/tls.key     its key (0600)              --tls-key
  gossip.key       with --secrets (0600)       LOGITPAIR_GOSSIP_KEY
  join.token       with --secrets (0600)       LOGITPAIR_JOIN_TOKEN

Each ROLE directory is complete on its own: mount it (or make it a Kubernetes TLS
Secret) for that role's processes only, so that a worker never holds the coordinator's
key. --roles mints a subset.

Existing files are not overwritten without --force. To issue again without changing the
CA (rotation, or a role's key leaked), pass --ca-cert and --ca-key (e.g. DIR/ca.crt and
DIR/ca.key) with --force, and --roles to pick the roles: only their tls.crt and tls.key
change, and running processes pick them up.

--keep-existing makes the command idempotent (a container that runs before the
cluster at every start): when --out already holds a complete set — ca.crt, ca.key
unless --no-ca-key or --ca-cert, each role's directory, gossip.key and join.token with
--secrets — that loads (each key matches, the CA signed each certificate, each carries
its role, with --ca-cert that CA signed them too), whose serving certificates cover
every --hosts entry and which stays valid for at least 7 more days, nothing is
written. When none of these files exists a new set is minted. Anything else (some
files missing, a set from before roles, a set that does not load, hosts not covered,
expiring soon) is an error naming the problem: nothing is overwritten (--force
replaces the set).

--no-ca-key leaves the new CA's key unwritten (it exists only in memory while
the command runs): nothing can ever be issued from that CA again, and no
process that mounts the directory holds it. Rotate by minting a new set.`,
		Example: `  logitpair certs --out certs --hosts coordinator,ps-0,ps-1,*.ps.default.svc,localhost,127.0.0.1 --secrets
  logitpair certs --out /data --hosts coordinator,ps-0,ps-1 --keep-existing --no-ca-key    # docker-compose.yml
  logitpair certs --out certs --ca-cert certs/ca.crt --ca-key certs/ca.key --roles worker --force   # new worker certificates
  kubectl create secret generic logitpair-tls-worker --from-file=certs/worker/ca.crt --from-file=certs/worker/tls.crt --from-file=certs/worker/tls.key
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
			roles, err := tlsutil.ParseRoles(rolesFlag)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(roles, tlsutil.Serves) {
				if _, err := tlsutil.ParseHosts(hosts); err != nil {
					return err
				}
			}
			if keep && force {
				return fmt.Errorf("--keep-existing and --force exclude each other")
			}
			w := cmd.OutOrStdout()
			if keep {
				kept, err := keepExisting(out, hosts, caCert, roles, secrets, !noCAKey && caCert == "")
				if err != nil {
					return err
				}
				if kept != nil {
					until := kept[0].NotAfter
					for _, c := range kept {
						if c.NotAfter.Before(until) {
							until = c.NotAfter
						}
					}
					fmt.Fprintf(w, "kept the existing certificate set in %s (--keep-existing): %s certificates, valid until %s\n",
						out, strings.Join(roles, ", "), until.UTC().Format(time.RFC3339))
					printUsage(w, out, roles, secrets)
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
			files, err := tlsutil.Mint(tlsutil.MintOptions{Hosts: hosts, Roles: roles, CA: ca, WriteCAKey: ca == nil && !noCAKey, Validity: validity})
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
			if slices.ContainsFunc(roles, tlsutil.Serves) {
				sans, _ := tlsutil.ParseHosts(hosts)
				fmt.Fprintf(w, "server certificates (%s) for %s; the worker's is for clients only\n",
					strings.Join(slices.DeleteFunc(slices.Clone(roles), func(r string) bool { return !tlsutil.Serves(r) }), ", "),
					strings.Join(certNames(sans.DNS, sans.IPs), ", "))
			}
			printUsage(w, out, roles, secrets)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&out, "out", "", "output directory (created 0700 if missing)")
	fs.StringVar(&hosts, "hosts", "localhost,127.0.0.1", "comma-separated names and IPs the coordinator's and the shards' certificates are valid for")
	fs.StringVar(&rolesFlag, "roles", strings.Join(tlsutil.AllRoles, ","), "comma-separated roles to issue a certificate for")
	fs.DurationVar(&validity, "validity", tlsutil.DefaultValidity, "validity of a new CA and of the certificates (never beyond the CA's)")
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

// keepExisting checks --out for --keep-existing: the certificates (in
// roles order) of a complete, valid set to keep, nil when there is nothing
// (mint), or an error naming what is wrong.
func keepExisting(out, hosts, caCert string, roles []string, secrets, caKey bool) ([]*x509.Certificate, error) {
	var extra []string
	if secrets {
		extra = []string{tlsutil.GossipKeyFile, tlsutil.JoinTokenFile}
	}
	leaves, err := tlsutil.CheckDir(out, tlsutil.DirCheck{Hosts: hosts, Roles: roles, CAKey: caKey, Extra: extra, CA: caCert, MinRemaining: keepMinRemaining})
	if err == nil && leaves != nil && secrets {
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
	return leaves, nil
}

// certNames lists SANs, DNS names first.
func certNames(dns []string, ips []net.IP) []string {
	names := append([]string(nil), dns...)
	for _, ip := range ips {
		names = append(names, ip.String())
	}
	return names
}

// printUsage prints how each role's processes and Kubernetes use the
// directory.
func printUsage(w io.Writer, out string, roles []string, secrets bool) {
	for _, r := range roles {
		f := tlsutil.RoleFiles(out, r)
		fmt.Fprintf(w, "run every %s with --tls-ca %s --tls-cert %s --tls-key %s\n", r, f.CA, f.Cert, f.Key)
	}
	for _, r := range roles {
		f := tlsutil.RoleFiles(out, r)
		fmt.Fprintf(w, "Kubernetes: kubectl create secret generic logitpair-tls-%s --from-file=%s --from-file=%s --from-file=%s\n", r, f.CA, f.Cert, f.Key)
	}
	if secrets {
		fmt.Fprintf(w, "Kubernetes: kubectl create secret generic logitpair-secrets --from-file=gossip-key=%s --from-file=join-token=%s\n",
			filepath.Join(out, tlsutil.GossipKeyFile), filepath.Join(out, tlsutil.JoinTokenFile))
	}
}
