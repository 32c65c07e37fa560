// Package api holds the Go code generated from the cluster's gRPC APIs in
// proto/ (do not edit it by hand; run `make proto`):
//
//   - paramserver/v1 (package paramserverv1): logitpair.paramserver.v1, a
//     parameter-server shard — Pull/Push in chunks, Apply, State,
//     Checkpoint, Restore;
//   - coordinator/v1 (package coordinatorv1): logitpair.coordinator.v1, the
//     coordinator — Join, GetAssignment, ReportStep, WaitStep, Leave, Status.
//
// `make proto-check` (part of `make test`) fails when the committed code
// differs from what proto/ generates.
package api
