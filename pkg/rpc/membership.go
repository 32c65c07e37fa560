package rpc

import (
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// The translation between the coordinator's membership table
// (coordinator.Membership, plain Go) and the coordinator API's messages.

// NewMembershipConfig returns the coordinator.MembershipConfig of a run: cfg is
// sent to every member as Assignment.train_config_json (its Model and
// ModelConfig also as Assignment.model and model_config_json, the wire form
// the members decode), ranges[k] is shard k's range.
func NewMembershipConfig(cfg train.Config, ranges []worker.Range, workers, backups int) (coordinator.MembershipConfig, error) {
	tj, err := json.Marshal(cfg)
	if err != nil {
		return coordinator.MembershipConfig{}, fmt.Errorf("rpc: the training config as JSON: %w", err)
	}
	mc := coordinator.MembershipConfig{Workers: workers, Backups: backups, TrainConfigJSON: string(tj), Model: cfg.Model}
	if len(cfg.ModelConfig) > 0 {
		mj, err := json.Marshal(cfg.ModelConfig)
		if err != nil {
			return coordinator.MembershipConfig{}, fmt.Errorf("rpc: the model config as JSON: %w", err)
		}
		mc.ModelConfigJSON = string(mj)
	}
	for _, r := range ranges {
		mc.Ranges = append(mc.Ranges, coordinator.Range{Lo: r.Lo, Hi: r.Hi, BufLo: r.BufLo, BufHi: r.BufHi})
	}
	return mc, nil
}

// membershipStatus turns a coordinator.Membership error into a status:
// ErrClusterFull is RESOURCE_EXHAUSTED, ErrSlotNotHeld NOT_FOUND, a bad
// shard index or a missing address INVALID_ARGUMENT (badIndex overrides the
// code of ErrBadIndex: asking for the assignment of a shard that does not
// exist is NOT_FOUND).
func membershipStatus(err error, badIndex codes.Code) error {
	c := codes.Internal
	switch {
	case err == nil:
		return nil
	case errors.Is(err, coordinator.ErrClusterFull):
		c = codes.ResourceExhausted
	case errors.Is(err, coordinator.ErrSlotNotHeld):
		c = codes.NotFound
	case errors.Is(err, coordinator.ErrBadIndex):
		c = badIndex
	case errors.Is(err, coordinator.ErrNoAddress):
		c = codes.InvalidArgument
	}
	return status.Error(c, err.Error())
}

// assignmentMsg is a's message.
func assignmentMsg(a coordinator.Assignment) *coordinatorv1.Assignment {
	m := &coordinatorv1.Assignment{
		Generation: a.Generation, WorkerSlot: int32(a.WorkerSlot), Workers: int32(a.Workers), Backups: int32(a.Backups),
		DataShard: int32(a.DataShard), DataShards: int32(a.DataShards), StartStep: a.StartStep,
		TrainConfigJson: a.TrainConfigJSON, Model: a.Model, ModelConfigJson: a.ModelConfigJSON,
	}
	for _, s := range a.Shards {
		m.Shards = append(m.Shards, &coordinatorv1.ShardInfo{Index: int32(s.Index), Lo: int64(s.Lo), Hi: int64(s.Hi),
			BufferLo: int64(s.BufLo), BufferHi: int64(s.BufHi), Address: s.Address})
	}
	return m
}

// memberRole is a member kind's role name.
func memberRole(k coordinator.MemberKind) string {
	if k == coordinator.KindShard {
		return RoleParamServer
	}
	return RoleWorker
}

// membersMsg is the members' messages.
func membersMsg(ms []coordinator.Member) []*coordinatorv1.MemberStatus {
	var out []*coordinatorv1.MemberStatus
	for _, m := range ms {
		s := &coordinatorv1.MemberStatus{Role: memberRole(m.Kind), Slot: int32(m.Slot), Address: m.Address, NodeName: m.Node,
			Live: m.Live, LastStep: m.LastStep}
		if !m.LastSeen.IsZero() {
			s.LastSeenUnixMs = m.LastSeen.UnixMilli()
		}
		out = append(out, s)
	}
	return out
}

func badRole(role string) error {
	return status.Errorf(codes.InvalidArgument, "role %q: want %q or %q", role, RoleWorker, RoleParamServer)
}
