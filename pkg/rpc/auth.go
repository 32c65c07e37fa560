package rpc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// authHeader is the metadata key of the join token ("authorization: Bearer
// <token>", as in HTTP).
const authHeader = "authorization"

// TokenAuth returns the server options that make every RPC, unary and
// streaming, of a server require the metadata `authorization: Bearer
// <token>`, answering UNAUTHENTICATED "missing or wrong join token" before
// any handler runs. The comparison takes constant time (of SHA-256 digests,
// so not even the length leaks). An empty token returns no options: the
// server accepts everyone (tests, a trusted network). The interceptors are
// chained, so they compose with others.
func TokenAuth(token string) []grpc.ServerOption {
	if token == "" {
		return nil
	}
	want := sha256.Sum256([]byte("Bearer " + token))
	check := func(ctx context.Context) error {
		md, _ := metadata.FromIncomingContext(ctx)
		ok := 0
		for _, v := range md.Get(authHeader) {
			got := sha256.Sum256([]byte(v))
			ok |= subtle.ConstantTimeCompare(got[:], want[:])
		}
		if ok != 1 {
			return status.Error(codes.Unauthenticated, "missing or wrong join token")
		}
		return nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
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
