package rpc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// authHeader is the metadata key of the join token ("authorization: Bearer
// <token>", as in HTTP).
const authHeader = "authorization"

// The reasons a Guard refuses a caller: the values of the label reason of
// logitpair_auth_refused_total (pkg/metrics).
const (
	RefusedToken     = "token"     // a call without the join token, or with a wrong one
	RefusedHandshake = "handshake" // a TLS handshake that failed (no or a foreign certificate, plaintext, …)
	RefusedRole      = "role"      // a call the certificate's role may not make (MethodRoles)
)

// RefusalReasons are every reason, for metrics that export each from zero.
var RefusalReasons = []string{RefusedToken, RefusedHandshake, RefusedRole}

// refusalLogEvery bounds the log lines of refusals: at most one per reason
// per interval, carrying the number of refusals it left out since the
// previous line. A flood of refused calls or handshakes (a misconfigured
// fleet, a scan) thus costs a line a second, not a line a call, while the
// metric counts every one.
const refusalLogEvery = time.Second

// GuardConfig configures a Guard.
type GuardConfig struct {
	// Token is the join token every call must carry as the metadata
	// `authorization: Bearer <token>`; empty checks none.
	Token string
	// Roles enforces the role table (MethodRoles): every call must come over
	// a TLS connection whose verified client certificate carries a role
	// allowed to make it. Turn it on exactly when the server runs with
	// mutual TLS: without TLS there is no certificate and every call would
	// be refused.
	Roles bool
	// Log receives refusals at a bounded rate (nil: not logged).
	Log *zap.Logger
	// OnRefused, if set, is called with the reason of every refused call
	// and handshake (metrics); it must not block.
	OnRefused func(reason string)
}

// Guard is a gRPC server's gate: the join token and the caller's role,
// checked before any handler runs, and the report of every refusal —
// refused calls and, through Credentials, failed TLS handshakes.
type Guard struct {
	token     bool
	want      [sha256.Size]byte
	roles     bool
	log       *zap.Logger
	onRefused func(string)
	now       func() time.Time
	limits    map[string]*logLimit // by reason; fixed at construction
}

// NewGuard returns the guard of c.
func NewGuard(c GuardConfig) *Guard {
	g := &Guard{token: c.Token != "", want: sha256.Sum256([]byte("Bearer " + c.Token)), roles: c.Roles,
		log: c.Log, onRefused: c.OnRefused, now: time.Now, limits: map[string]*logLimit{}}
	for _, r := range RefusalReasons {
		g.limits[r] = &logLimit{}
	}
	return g
}

// TokenAuth returns the server options that make every RPC, unary and
// streaming, of a server require the metadata `authorization: Bearer
// <token>`, answering UNAUTHENTICATED "missing or wrong join token" before
// any handler runs; refusals are neither logged nor counted (NewGuard does
// both). An empty token returns no options: the server accepts everyone
// (tests, a trusted network).
func TokenAuth(token string) []grpc.ServerOption {
	return NewGuard(GuardConfig{Token: token}).ServerOptions()
}

// ServerOptions are the interceptors, unary and streaming, that check every
// call: the join token first (UNAUTHENTICATED "missing or wrong join
// token"; compared in constant time, of SHA-256 digests, so not even the
// length leaks), then the role (PERMISSION_DENIED naming the method and the
// role). None when there is nothing to check. The interceptors are
// chained, so they compose with others.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	if !g.token && !g.roles {
		return nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := g.check(ctx, info.FullMethod, req); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			// No streaming method carries a role in its request
			// (MethodRoles' test checks), so the first message need not be
			// read here.
			if err := g.check(ss.Context(), info.FullMethod, nil); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

// check is the gate of one call.
func (g *Guard) check(ctx context.Context, method string, req any) error {
	if g.token && !g.tokenOK(ctx) {
		g.refuse(RefusedToken, "refused a call: missing or wrong join token",
			zap.String("method", method), zap.String("peer", peerAddr(ctx)))
		return status.Error(codes.Unauthenticated, "missing or wrong join token")
	}
	if g.roles {
		if role, err := checkRole(ctx, method, req); err != nil {
			g.refuse(RefusedRole, "refused a call: not allowed for the caller's role",
				zap.String("method", method), zap.String("role", role), zap.String("peer", peerAddr(ctx)), zap.Error(err))
			return err
		}
	}
	return nil
}

func (g *Guard) tokenOK(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	ok := 0
	for _, v := range md.Get(authHeader) {
		got := sha256.Sum256([]byte(v))
		ok |= subtle.ConstantTimeCompare(got[:], g.want[:])
	}
	return ok == 1
}

// refuse counts a refusal and logs it, at most once per refusalLogEvery
// per reason.
func (g *Guard) refuse(reason, msg string, fields ...zap.Field) {
	if g.onRefused != nil {
		g.onRefused(reason)
	}
	if g.log == nil {
		return
	}
	ok, suppressed := g.limits[reason].allow(g.now())
	if !ok {
		return
	}
	g.log.Warn(msg, append(fields, zap.String("reason", reason), zap.Int("suppressed", suppressed))...)
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "unknown"
}

// logLimit lets one line through per refusalLogEvery and counts the rest.
type logLimit struct {
	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether to log now, and how many were left out since the
// last line.
func (l *logLimit) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.suppressed, l.next = 0, now.Add(refusalLogEvery)
	return true, n
}

// Credentials wraps a server's transport credentials so that every failed
// handshake is counted and logged (reason "handshake": a plaintext client,
// a client without a certificate or with one from another CA, an expired
// one, a client that refused the server's certificate). A connection that
// closes before sending anything (a TCP health probe, a port scan's
// connect) is not a refusal and is not reported.
func (g *Guard) Credentials(inner credentials.TransportCredentials) credentials.TransportCredentials {
	return guardedCreds{TransportCredentials: inner, g: g}
}

type guardedCreds struct {
	credentials.TransportCredentials
	g *Guard
}

// ServerHandshake implements credentials.TransportCredentials.
func (c guardedCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	remote := "unknown"
	if a := conn.RemoteAddr(); a != nil {
		remote = a.String()
	}
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil && !errors.Is(err, io.EOF) {
		c.g.refuse(RefusedHandshake, "refused a TLS handshake", zap.String("peer", remote), zap.Error(err))
	}
	return out, info, err
}

// Clone implements credentials.TransportCredentials.
func (c guardedCreds) Clone() credentials.TransportCredentials {
	return guardedCreds{TransportCredentials: c.TransportCredentials.Clone(), g: c.g}
}

// tokenCreds sends the join token with every call.
type tokenCreds struct {
	token      string
	requireTLS bool
}

// TokenCredentials returns per-RPC credentials that send `authorization:
// Bearer <token>` with every call (nothing for an empty token). With
// requireTLS gRPC refuses to use them on a connection without transport
// security, so the token never travels in the clear; without it they work
// on plaintext and on TLS connections alike.
func TokenCredentials(token string, requireTLS bool) credentials.PerRPCCredentials {
	return tokenCreds{token: token, requireTLS: requireTLS}
}

// WithToken is the dial option that sends token with every call, on a
// plaintext or a TLS connection (TokenCredentials(token, false)).
func WithToken(token string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(TokenCredentials(token, false))
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if t.token == "" {
		return nil, nil
	}
	return map[string]string{authHeader: "Bearer " + t.token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (t tokenCreds) RequireTransportSecurity() bool { return t.requireTLS }
