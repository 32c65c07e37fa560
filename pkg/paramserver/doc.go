// Package paramserver is the parameter-server side of synchronous
// distributed adversarial training, without any networking: sharding of the
// flat parameter vector, the Shard that buffers gradients and applies
// optimizer steps, its saved states per version (StepStore: FileStore,
// MemStepStore), Local (the shard as the coordinator calls it: checkpoint
// at its version, restore any version it holds, list them), the
// coordinator's commit log, and Replay. Transports wrap a Local
// (rpc.PSServer; the in-process cluster of pkg/cluster/clustertest);
// nothing here opens a socket, so the whole protocol is tested in memory.
//
// # Protocol
//
// One synchronous step t (docs/architecture.md, "One synchronous cluster
// step"):
//
//  1. Every worker w calls Pull(ctx, t) on every shard k. A shard still at
//     version t−1 answers when it reaches t (long-poll bounded by ctx); a
//     shard already past t answers ErrStale with its version.
//  2. The worker computes its gradient on its own batch (plus the new
//     batch-norm running statistics) and calls Push(t, w, grad[lo_k:hi_k],
//     bufs[blo_k:bhi_k]) on every shard k. A shard buffers it per worker and
//     rejects, with a typed *Error and no state change, a wrong length, a
//     NaN/±Inf, an unknown worker, a step other than its version, or a second
//     push by the same worker with different content.
//  3. The worker reports done(t, w) to the coordinator, which takes the first
//     N reports as the set S_t, appends Entry{t, S_t} to its CommitLog
//     durably (fsync), and only then sends Apply(t, S_t) to every shard.
//  4. Apply(t, S_t) averages the buffered gradients of exactly the workers in
//     S_t, adds weight decay, runs the optimizer with the scheduled learning
//     rate of step t (times the step's logged scale, Entry.LRScale: 1 unless
//     a requested rollback lowered it; ApplyScaled), averages the buffers of S_t, updates the EMA, moves the
//     version to t+1, frees step t's buffers and counts the gradients of the
//     workers outside S_t as dropped (backups). Apply is idempotent: for a
//     step below the version it acknowledges and does nothing, so a
//     coordinator restarting from its log may resend the last Apply.
//
// # Invariant
//
// Every shard applies, for step t, the mean of the gradients of the same set
// S_t of workers, chosen once by the coordinator and logged durably before
// any shard applies it. This is stronger than TensorFlow's
// SyncReplicasOptimizer, whose per-variable conditional accumulators each
// take the first N gradients that reach them, so different variables can
// average gradients of different workers in the same step. Here a shard
// cannot apply anything but a logged set: it never chooses, and Apply
// refuses (ErrMissing, nothing changed) if one of the named workers has not
// pushed. A resend of the most recently applied step with a different set is
// refused with ErrSetMismatch, which catches a coordinator whose log
// disagrees with what the shards did.
//
// # Determinism
//
// The mean is computed per element in float64, summing the workers'
// gradients in the order of the (sorted) set, dividing by N and rounding to
// float32 once. It therefore depends only on the set and the gradients,
// never on the order in which pushes arrived, and Replay of a commit log
// reproduces a run bit for bit. Every rule after that (weight decay, the
// optimizer, the EMA) is elementwise float32 from package optim, so a shard
// holding [lo, hi) gives the same bits as one shard holding the whole vector.
//
// # Sharding and buffers
//
// Partition cuts the flat vector into contiguous ranges whose sizes differ
// by at most one, cutting inside tensors where the balance falls, so any
// number of shards from 1 to the number of parameters works with any model.
// A split tensor trains exactly as a whole one: the mean is per element and
// every rule after it is elementwise over the shard's range, with the
// weight-decay mask (global coordinates) clipped to it. A shard's saved
// states hold its range only, so Restore refuses, naming both ranges, a
// state saved under another partition (another number of shards, or a
// release that cut shards only at tensor boundaries).
//
// The non-trainable buffers (batch-norm running statistics) are a second
// flat vector; BufferRange puts all of it on shard 0: it is tiny (two floats
// per batch-norm channel, a few thousand in all) next to the parameters, so
// there is nothing to balance, and one owner keeps the buffer vector whole
// in one checkpoint. A Shard accepts any buffer range (ShardConfig.BufLo,
// BufHi), so another placement needs no change here. Buffers are averaged
// over S_t, never optimized.
//
// # Weight decay
//
// The shard adds TF-slim's l2 gradient wd·θ to the mean gradient (after
// averaging, once), over the decayed ranges clipped to the shard
// (optim.WeightDecay, the one implementation, which train.Trainer also
// calls). Workers push the gradient of the objective alone: train.Worker
// never adds weight decay.
//
// # Commit log
//
// CommitLog is the coordinator's record of (t, S_t). MemLog keeps it in
// memory; FileLog (OpenFileLog) writes one CRC32-checked, length-prefixed
// binary record per step, fsyncs every Append, truncates a torn last record
// on open with a warning, and reports corruption elsewhere with its byte
// offset. Rolling back to a checkpoint at version c is TruncateAfter(c−1)
// on the log plus Restore on every shard. Each entry carries the step's
// learning-rate scale (written only when it is not 1, so older logs read as
// unscaled), which Replay applies. A StepStore keeps, besides its newest
// states, those SaveKeeping names (the coordinator's rollback target).
package paramserver
