package node

import (
	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/cluster"
)

type zapLogger = zap.Logger

// FileCheckpointsOf returns the newest consistent checkpoint step recorded
// in a coordinator directory.
func FileCheckpointsOf(dir string) (int64, bool, error) {
	return cluster.FileCheckpoints{Dir: dir}.LastCheckpoint()
}
