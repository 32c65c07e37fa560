// Package rpc is the cluster's gRPC transport: servers that expose a
// parameter-server shard (paramserver.Local) and the coordinator
// (coordinator.Coordinator and its coordinator.Membership) through the APIs
// of pkg/api, and clients that implement the interfaces the rest of the code
// programs against (worker.Shard, coordinator.ShardClient,
// worker.Coordinator) on top of a grpc.ClientConnInterface.
//
// Handlers only translate and delegate: they length-check what arrives from
// the network (a remote can never make this process panic or allocate more
// than the receiving shard's range), turn it into calls on the in-memory
// types, and turn their results and typed errors back into messages and
// status codes. Nothing here decides anything about training.
//
// # Reconnecting clients
//
// The client side of the recovery protocol lives here too, so that the
// processes only wire it: Join joins the coordinator with jittered, capped
// backoff (pkg/retry) and stops at a refusal that retrying cannot change;
// a restarted shard may listen elsewhere, so CoordinatorShard (the
// coordinator's view of shard k) looks its address up in the membership
// table on every call and WorkerShards (a worker's) reads its assignment
// again after UNAVAILABLE, both through a ConnPool of one connection per
// address; RejoiningCoordinator joins again for the worker's own slot when
// the coordinator answers NOT_FOUND (it restarted, or dropped the worker),
// and stops the worker (worker.ErrFatal) when another worker took the slot;
// KeepShardJoined makes a shard join a restarted coordinator again.
//
// # Chunked transfers
//
// Pull and Push move float32 vectors as little-endian bytes in chunks of at
// most 1 MiB by default (Pull: the request's max_chunk_bytes, clamped to
// [4 KiB, 3 MiB]), far below gRPC's default 4 MiB message limit, so a shard
// of any size streams. A push stream must cover [0, total_elements)
// contiguously from offset 0 in chunks of whole elements, with one step,
// worker and total in every chunk and the buffers in the last one; anything
// else is answered with INVALID_ARGUMENT naming the fault, without calling
// the shard (PSServer.Stats counts these), and is never applied. A push
// may carry its gradient as bfloat16 (WithWireFormat(wire.BF16): 2 bytes a
// value, each rounded by wire.BF16Bits; every chunk in the same encoding),
// which the shard widens to float32 before buffering it; buffers and pulls
// are float32 always.
//
// # Transport
//
// Every connection and server of the cluster is built with
// TransportDialOptions and TransportServerOptions, the one place of the
// transport's settings: 1 MiB socket buffers, a buffer pool that does not
// clear, TLS records batched into one system call per write (batchedCreds)
// and, on servers, the chunk codec (chunkCodec), which moves the data of
// pulls and pushes without protobuf's copies: a shard streams its pulls
// from the version's shared snapshot (paramserver.Shard.Snapshot) and
// receives pushes into gradient memory it recycles
// (paramserver.Shard.GradientBuffer, PushOwned); a client decodes a pull
// into the memory of its last one. BenchmarkPushPullLoopback measures the
// transport against raw TCP (pkg/netbench).
//
// # Errors
//
// A shard's *paramserver.Error becomes a status whose code follows the
// kind (see Code) and which carries an errdetails.ErrorInfo with domain
// ErrorDomain, the kind as reason (KindReason: "STALE", "FUTURE", …) and the
// shard, op, step, version and worker as metadata; the message is the
// shard's own error text, which includes the shard's version. PSClient turns
// such a status back into a *RemoteError that unwraps to a
// *paramserver.Error, so errors.Is(err, paramserver.ErrStale) and errors.As
// into a *paramserver.Error (kind, step, the shard's version, …) work across
// the network exactly as in memory, and status.Code(err) still gives the
// gRPC code. Codes: ErrLength, ErrNonFinite, ErrUnknownWorker, ErrConflict,
// ErrBadSet → INVALID_ARGUMENT; ErrStale, ErrFuture, ErrMissing,
// ErrSetMismatch, ErrRestore → FAILED_PRECONDITION; ErrClosed →
// UNAVAILABLE; context errors → DEADLINE_EXCEEDED / CANCELED; anything else
// → INTERNAL.
//
// The coordinator's membership table (coordinator.Membership, a plain state
// machine) returns typed errors that CoordServer turns into codes:
// ErrClusterFull → RESOURCE_EXHAUSTED, ErrSlotNotHeld → NOT_FOUND (the
// worker joins again), ErrBadIndex → INVALID_ARGUMENT on Join and NOT_FOUND
// on GetAssignment, ErrNoAddress → INVALID_ARGUMENT.
//
// # Authentication and roles
//
// A Guard (NewGuard; TokenAuth for the token alone) checks every RPC of both
// services before any handler runs: first the shared join token, sent as
// the metadata `authorization: Bearer <token>` (WithToken,
// TokenCredentials), then, with mutual TLS, the role of the caller's
// verified certificate (tlsutil.CertRole) against the role table
// (methodRoles in roles.go, the one place that says which role may call
// which method; a request that names a role — Join, GetAssignment, Leave —
// must name the certificate's). A wrong token is UNAUTHENTICATED, a role
// that may not make the call PERMISSION_DENIED naming the method and the
// role. Guard.Credentials wraps the server's TLS credentials so that failed
// handshakes are reported too; every refusal goes to a hook (pkg/metrics
// counts them) and to the log, at most a line a second per reason. The
// token works on plaintext connections (tests, a trusted network) and
// unchanged on TLS, where TokenCredentials(token, true) refuses to send it
// in the clear; roles need TLS.
package rpc
