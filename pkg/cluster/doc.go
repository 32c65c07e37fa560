// Package cluster defines a cluster run from its training configuration:
// what the coordinator, every shard and every worker derive from it the
// same way.
//
//   - The layout (NewLayout): the model initialized exactly as local
//     training does, its flat parameter vector cut into shards
//     (paramserver.Partition), each shard's configuration — optimizer,
//     schedule, weight decay, EMA — (Layout.ShardConfig) and the ranges
//     workers pull and push (Layout.Ranges).
//   - The layout's inverse (ModelWriter): the shards' parameters, buffers
//     and optimizer state put back together and written by pkg/checkpoint
//     in local training's format, so that a cluster's checkpoint resumes
//     with `logitpair train --resume` and loads in `logitpair eval`; its
//     pruning spares the checkpoints ModelWriter.Keep names (the
//     coordinator's rollback target, coordinator.Coordinator.KeepCheckpoint).
//   - The run's identity (CheckRun, run.json): the training configuration
//     and cluster shape a coordinator's --dir was started with, checked at
//     every start, because the commit log replays only under the
//     configuration that wrote it. It lives here, not in pkg/checkpoint,
//     because it compares train.Config keys, and pkg/train imports
//     pkg/checkpoint.
//
// The processes' wiring (flags, gRPC, gossip) is pkg/node; the protocol is
// pkg/paramserver, pkg/coordinator and pkg/worker; a whole cluster in one
// process, for tests, is pkg/cluster/clustertest.
package cluster
