package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/tlsutil"
)

// newClusterStatusCmd is `cluster status`: one Status call to a
// running coordinator, over the same transport the cluster's processes use
// (mutual TLS with --tls-*, plaintext without; the join token either way).
func newClusterStatusCmd() *cobra.Command {
	var (
		addr, token                     string
		tlsCA, tlsCert, tlsKey, tlsName string
		timeout                         time.Duration
		asJSON                          bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Ask a running coordinator for the cluster's status (step, members, last checkpoint)",
		Long: `Calls the coordinator's Status RPC once and prints the global step, the live
workers, the last consistent checkpoint and every member. It connects like the
cluster's processes: with --tls-ca, --tls-cert and --tls-key over mutual TLS
(any role's certificate of ` + "`logitpair certs`" + `: Status is open to every role; the
coordinator's certificate must carry the dialed host, or --tls-server-name),
without them in plaintext; --join-token is sent with the call (over TLS only
when TLS is on). A coordinator that runs with TLS refuses a plaintext client,
and one with a join token refuses a call without it: both are errors here.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				return fmt.Errorf("--coordinator is required")
			}
			if timeout <= 0 {
				return fmt.Errorf("--timeout must be positive, got %v", timeout)
			}
			files := tlsutil.Files{CA: tlsCA, Cert: tlsCert, Key: tlsKey}
			if err := files.Check(); err != nil {
				return err
			}
			var opts []grpc.DialOption
			transport := "plaintext"
			if files.Enabled() {
				id, err := tlsutil.Load(files, nil)
				if err != nil {
					return err
				}
				opts = rpc.TransportDialOptions(id.ClientCredentials(tlsName))
				if token != "" {
					opts = append(opts, grpc.WithPerRPCCredentials(rpc.TokenCredentials(token, true)))
				}
				transport = "mutual TLS"
			} else {
				if tlsName != "" {
					return fmt.Errorf("--tls-server-name needs --tls-ca, --tls-cert and --tls-key")
				}
				opts = rpc.TransportDialOptions(insecure.NewCredentials())
				if token != "" {
					opts = append(opts, rpc.WithToken(token))
				}
			}
			conn, err := grpc.NewClient(addr, opts...)
			if err != nil {
				return fmt.Errorf("--coordinator %s: %w", addr, err)
			}
			defer conn.Close() //nolint:errcheck // nothing to do about it
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			st, err := rpc.NewCoordClient(conn).Status(ctx)
			if err != nil {
				return fmt.Errorf("coordinator %s (%s): %w", addr, transport, err)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				b, err := protojson.Marshal(st)
				if err != nil {
					return err
				}
				var v any // re-indent protojson's deliberately unstable spacing
				if err := json.Unmarshal(b, &v); err != nil {
					return err
				}
				b, err = json.MarshalIndent(v, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(w, "%s\n", b)
				return err
			}
			fmt.Fprintf(w, "coordinator %s (%s): step %d, %d live workers (a step needs %d), last consistent checkpoint %d\n",
				addr, transport, st.GetStep(), st.GetLiveWorkers(), st.GetRequired(), st.GetLastCheckpointStep())
			if st.GetPaused() {
				fmt.Fprintf(w, "paused: %s\n", st.GetPauseReason())
			}
			for _, m := range st.GetMembers() {
				fmt.Fprintf(w, "  %-11s slot %d  live=%-5t last_step=%d  %s %s\n", m.GetRole(), m.GetSlot(), m.GetLive(), m.GetLastStep(), m.GetNodeName(), m.GetAddress())
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&addr, "coordinator", "", "the coordinator's gRPC address (host:port)")
	fs.StringVar(&token, "join-token", os.Getenv("LOGITPAIR_JOIN_TOKEN"), "the cluster's join token (env LOGITPAIR_JOIN_TOKEN)")
	fs.StringVar(&tlsCA, "tls-ca", os.Getenv("LOGITPAIR_TLS_CA"), "PEM CA bundle for mutual TLS; with --tls-cert and --tls-key (env LOGITPAIR_TLS_CA)")
	fs.StringVar(&tlsCert, "tls-cert", os.Getenv("LOGITPAIR_TLS_CERT"), "PEM client certificate signed by --tls-ca (env LOGITPAIR_TLS_CERT)")
	fs.StringVar(&tlsKey, "tls-key", os.Getenv("LOGITPAIR_TLS_KEY"), "PEM private key of --tls-cert (env LOGITPAIR_TLS_KEY)")
	fs.StringVar(&tlsName, "tls-server-name", os.Getenv("LOGITPAIR_TLS_SERVER_NAME"), "name the coordinator's certificate must carry (default: the dialed host; env LOGITPAIR_TLS_SERVER_NAME)")
	fs.DurationVar(&timeout, "timeout", 10*time.Second, "give up after this long")
	fs.BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}
