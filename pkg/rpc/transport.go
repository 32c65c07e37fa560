package rpc

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
)

// The transport's settings for the cluster's streams, which move whole
// parameter vectors (issue 13; BenchmarkPushPullLoopback measures them).
// gRPC's defaults suit small messages: HTTP/2 windows of 64 KiB grown by
// its bandwidth-delay estimator (which on a fast, near link stays small,
// so a sender stalls until the receiver's window updates arrive) and 32 KiB
// read and write buffers (a system call per 32 KiB).
const (
	// streamWindowBytes is each stream's initial HTTP/2 flow-control
	// window: how far a sender runs ahead of the receiving application.
	streamWindowBytes = 8 << 20
	// connWindowBytes is each connection's window, shared by its streams
	// (a worker's pull and push of one shard, a shard's pushes from many
	// workers on their own connections).
	connWindowBytes = 16 << 20
	// ioBufferBytes is the size of each connection's read and write
	// buffers, both ways.
	ioBufferBytes = 1 << 20
)

// TransportDialOptions are a client connection's transport: creds (with
// TLS, batched: batchedCreds) and the settings above. Every connection the
// cluster dials is made with them (pkg/node; the per-call token and other
// options go beside them).
func TransportDialOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(batched(creds)),
		grpc.WithInitialWindowSize(streamWindowBytes),
		grpc.WithInitialConnWindowSize(connWindowBytes),
		grpc.WithReadBufferSize(ioBufferBytes),
		grpc.WithWriteBufferSize(ioBufferBytes),
		experimental.WithBufferPool(bufferPool),
	}
}

// TransportServerOptions are a server's transport: creds (nil: plaintext;
// with TLS, batched: batchedCreds), the settings above, and the chunk codec
// (chunkCodec) for what it sends and receives. Every server the cluster
// runs is made with them (pkg/node; the guard's interceptors and others go
// beside them). A server without them still serves every client, only
// slower.
func TransportServerOptions(creds credentials.TransportCredentials) []grpc.ServerOption {
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(batched(creds)))
	}
	return append(opts,
		grpc.InitialWindowSize(streamWindowBytes),
		grpc.InitialConnWindowSize(connWindowBytes),
		grpc.ReadBufferSize(ioBufferBytes),
		grpc.WriteBufferSize(ioBufferBytes),
		experimental.BufferPool(bufferPool),
		grpc.ForceServerCodecV2(chunkCodec{}),
	)
}
