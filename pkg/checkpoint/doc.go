// Package checkpoint owns the checkpoint files of a run, local training's
// and the cluster's alike: their names (ckpt-<step>.safetensors, its
// .state and -ema companions), latest.json (Pointer) and best.* (local
// training's best model by robust validation); Save, Restore and Prune; the
// search for the newest intact checkpoint that --resume and --resume-from
// report; the refusal of an --out that holds another run (CheckOut,
// RemoveRun); and the cluster coordinator's record of its consistent
// checkpoints, cluster-checkpoint.json (FileRecord, and MemRecord in
// memory).
//
// Every file is written atomically (pkg/atomicfile), so a crash leaves
// either the old file or the new one. The package knows models and
// optimizers (pkg/models, pkg/optim) but no training loop: pkg/train and
// pkg/cluster call it, never the reverse.
package checkpoint
