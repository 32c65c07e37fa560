// Package node runs the cluster's processes — coordinator, parameter server,
// worker — by wiring the packages together, and launches whole local
// clusters (`logitpair cluster local`, launcher.go). The binaries in cmd/
// only parse flags and call these functions. It decides nothing itself: the
// protocol is pkg/coordinator's (step, membership, liveness, rollback), the
// shard's pkg/paramserver's, the worker loop pkg/worker's, and the gRPC
// translation and the reconnecting clients are pkg/rpc's.
//
// Each process body has its own file — RunCoordinator (coordinator.go),
// RunParamServer (paramserver.go), RunWorker (worker.go) — and reads the
// same way: flags (validated first), components (built in dependency order;
// an error returns, and the deferred calls undo what was built), and an
// ordered run group (rungroup.go: github.com/oklog/run) of the long-lived
// components. The coordinator process serves before its coordinator runs,
// and its membership table, status page, readiness check and gRPC service
// are built before the coordinator (which needs the membership table to
// reach its shards): they reach it through a coordinator.Late, which the
// coordinator loop binds when it starts. The coordinator also runs the
// training sentinel on its checkpoints (sentinel.go).
//
// Shutdown order, on SIGINT/SIGTERM or when the run is done — the order of
// each run group's Adds, commented there: stop the process's own loop (the
// coordinator loop, the worker loop, a shard's re-joining of a restarted
// coordinator); leave the gossip cluster (memberlist Leave: the peers see a
// graceful departure, not a node that stopped answering probes); stop the
// gRPC server gracefully within a deadline and then hard (in-flight RPCs
// finish while the process is already known to be leaving; a worker, which
// serves no RPCs, closes its shard connections and gives its slot back
// instead); stop the HTTP endpoint (a worker that stopped on a non-finite
// loss serves /metrics a little longer first). Then the deferred calls
// flush and close what remains (the commit log, whose entries were fsynced
// when appended, and a shard's state, which is in its store; the
// coordinator's consistent checkpoints are written as the run goes), and
// the command syncs the logger (commands.go).
package node

import (
	"crypto/x509"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/logitpair/logitpair/pkg/metrics"
	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/tlsutil"
)

// Common are the flags every process takes.
type Common struct {
	JoinToken  string
	GossipKey  string // base64, 16/24/32 bytes
	GossipBind string // host:port of the gossip listener (port 0: OS-chosen)
	GossipJoin string // a member's gossip address (the coordinator's)
	GossipFast bool   // short gossip timers (loopback clusters, tests)
	AddrFile   string // where to announce the listen addresses (launchers)
	LogFormat  string // "json" (production) or "console" (development)
	// HTTPListen is the address of the process's HTTP endpoint (/metrics,
	// /healthz, /readyz); empty disables it.
	HTTPListen string
	// TLSCA, TLSCert and TLSKey are the PEM files of mutual TLS on every
	// gRPC connection (all three or none): the CA bundle, this process's
	// certificate and its key. TLSServerName overrides the name a server's
	// certificate must carry (default: the dialed host).
	TLSCA, TLSCert, TLSKey string
	TLSServerName          string
	// tls is the loaded identity (initTransport); nil without TLS.
	tls *tlsutil.Identity
	// transportReady is set by initTransport.
	transportReady bool
}

// NewLogger builds the process's zap logger.
func NewLogger(format string) (*zap.Logger, error) {
	switch format {
	case "json", "":
		return zap.NewProduction()
	case "console":
		c := zap.NewDevelopmentConfig()
		c.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
		c.DisableStacktrace = true
		return c.Build()
	}
	return nil, fmt.Errorf("--log-format must be json or console, got %q", format)
}

// tlsFiles are the --tls-* flags.
func (c Common) tlsFiles() tlsutil.Files {
	return tlsutil.Files{CA: c.TLSCA, Cert: c.TLSCert, Key: c.TLSKey}
}

// initTransport checks the TLS flags (all three or none), loads the
// certificates and checks that the certificate carries this process's role
// (rpc.Role*), and without TLS warns loudly (a coordinator or shard listens
// for gRPC). Every Run function calls it before dialOptions and
// serverOptions.
func (c *Common) initTransport(log *zap.Logger, role string) error {
	serving := tlsutil.Serves(role)
	f := c.tlsFiles()
	if err := f.Check(); err != nil {
		return err
	}
	c.transportReady = true
	if !f.Enabled() {
		if c.TLSServerName != "" {
			return fmt.Errorf("--tls-server-name needs --tls-ca, --tls-cert and --tls-key")
		}
		if serving {
			log.Warn("no TLS: anyone who can reach this port can read the model's parameters, and the join token travels in the clear, so whoever sees it can join the cluster and push gradients; roles are not enforced either, so any caller with the token can Apply, Checkpoint or Restore a shard or join as one; set --tls-ca, --tls-cert and --tls-key (logitpair certs)")
		} else {
			log.Warn("no TLS: the join token, parameters and gradients travel in the clear and the servers are not authenticated; set --tls-ca, --tls-cert and --tls-key (logitpair certs)")
		}
		c.warnNoJoinToken(log, serving, false)
		return nil
	}
	id, err := tlsutil.Load(f, func(leaf *x509.Certificate, err error) {
		if err != nil {
			log.Error("TLS certificate changed on disk but does not load; keeping the previous one", zap.Error(err))
			return
		}
		log.Info("TLS certificate reloaded", zap.String("subject", leaf.Subject.CommonName), zap.Time("not_after", leaf.NotAfter))
	})
	if err != nil {
		return err
	}
	if err := id.RequireRole(role); err != nil {
		return err
	}
	c.tls = id
	leaf := id.Leaf()
	log.Info("mutual TLS on", zap.String("ca", f.CA), zap.String("cert", f.Cert), zap.String("subject", leaf.Subject.CommonName),
		zap.String("role", id.Role()), zap.Strings("dns", leaf.DNSNames), zap.Time("not_after", leaf.NotAfter))
	c.warnNoJoinToken(log, serving, true)
	return nil
}

// warnNoJoinToken warns loudly, like the missing-TLS warning, when no join
// token is configured: rpc.TokenAuth("") installs no check at all, so the
// cluster's gRPC servers accept every caller that reaches them (with TLS:
// every holder of a certificate from the CA).
func (c *Common) warnNoJoinToken(log *zap.Logger, serving, tls bool) {
	if c.JoinToken != "" {
		return
	}
	switch {
	case serving && !tls:
		log.Warn("no join token: this server checks none, so anyone who can reach this port can join the cluster, push gradients and read the model's parameters; set --join-token (env LOGITPAIR_JOIN_TOKEN; logitpair certs --secrets mints one) on every process")
	case serving:
		log.Warn("no join token: this server checks none, so any process with a certificate from --tls-ca (another cluster's included) can join the cluster and push gradients; set --join-token (env LOGITPAIR_JOIN_TOKEN; logitpair certs --secrets mints one) on every process")
	default:
		log.Warn("no join token: this worker sends none, so it can join only servers that check none, which let anyone who reaches them join the cluster and push gradients; set --join-token (env LOGITPAIR_JOIN_TOKEN; logitpair certs --secrets mints one) on every process")
	}
}

func (c Common) checkTransport() {
	if !c.transportReady && c.tlsFiles().Enabled() {
		panic("node: initTransport was not called before dialing or serving") // a wiring bug, never input
	}
}

// dialOptions are a client connection's transport (rpc.TransportDialOptions)
// and the join token.
func (c Common) dialOptions() []grpc.DialOption {
	c.checkTransport()
	if c.tls == nil {
		opts := rpc.TransportDialOptions(insecure.NewCredentials())
		if c.JoinToken != "" {
			opts = append(opts, rpc.WithToken(c.JoinToken)) // accepted on plaintext too
		}
		return opts
	}
	opts := rpc.TransportDialOptions(c.tls.ClientCredentials(c.TLSServerName))
	if c.JoinToken != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(rpc.TokenCredentials(c.JoinToken, true)))
	}
	return opts
}

// serverOptions are a gRPC server's transport (rpc.TransportServerOptions:
// credentials, windows, buffers, codec) and guard (rpc.Guard: the join
// token, with TLS the role table; refusals logged at a bounded rate and
// counted in reg's logitpair_auth_refused_total).
func (c Common) serverOptions(log *zap.Logger, reg prometheus.Registerer) ([]grpc.ServerOption, error) {
	c.checkTransport()
	am, err := metrics.NewAuth(reg)
	if err != nil {
		return nil, err
	}
	g := rpc.NewGuard(rpc.GuardConfig{Token: c.JoinToken, Roles: c.tls != nil, Log: log, OnRefused: am.Refused})
	var creds credentials.TransportCredentials // plaintext
	if c.tls != nil {
		creds = g.Credentials(c.tls.ServerCredentials())
	}
	return append(rpc.TransportServerOptions(creds), g.ServerOptions()...), nil
}
