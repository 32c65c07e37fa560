package rpc

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
)

// ioBufferBytes is the size of each connection's read and write buffers,
// both ways (gRPC's default is 32 KiB: a system call per 32 KiB of the
// cluster's streams, which move whole parameter vectors; issue 13,
// BenchmarkPushPullLoopback). The write buffer is given back between
// flushes (gRPC shares write buffers by default), so an idle connection holds only its
// read buffer. The HTTP/2 flow-control windows keep gRPC's defaults: its
// bandwidth-delay estimator grows them with the link, and fixed windows
// of 8 and 16 MiB measured no faster on loopback.
const ioBufferBytes = 1 << 20

// TransportDialOptions are a client connection's transport: creds (with
// TLS, batched: batchedCreds), the buffers above and bufferPool. Every
// connection the cluster dials is made with them (pkg/node; the per-call
// token and other options go beside them).
func TransportDialOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(batched(creds)),
		grpc.WithReadBufferSize(ioBufferBytes),
		grpc.WithWriteBufferSize(ioBufferBytes),
		experimental.WithBufferPool(bufferPool),
	}
}

// TransportServerOptions are a server's transport: creds (nil: plaintext;
// with TLS, batched: batchedCreds), the buffers above, bufferPool and the
// chunk codec (chunkCodec) for what it sends and receives. Every server the
// cluster runs is made with them (pkg/node; the guard's interceptors and
// others go beside them). A server without them still serves every client,
// only slower.
func TransportServerOptions(creds credentials.TransportCredentials) []grpc.ServerOption {
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(batched(creds)))
	}
	return append(opts,
		grpc.ReadBufferSize(ioBufferBytes),
		grpc.WriteBufferSize(ioBufferBytes),
		experimental.BufferPool(bufferPool),
		grpc.ForceServerCodecV2(chunkCodec{}),
	)
}
