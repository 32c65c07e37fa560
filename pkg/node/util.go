package node

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/checkpoint"
)

type zapLogger = zap.Logger

// FileCheckpointsOf returns the newest consistent checkpoint step recorded
// in a coordinator directory.
func FileCheckpointsOf(dir string) (int64, bool, error) {
	return checkpoint.FileRecord{Dir: dir}.LastCheckpoint()
}

// memberName makes a process's gossip and registry name unique per
// incarnation: prefix-PID-RANDOM. In a container the PID is always 1, and
// memberlist refuses a name it still remembers at another address until the
// dead node is reaped, so a replacement pod must not reuse its predecessor's
// name.
func memberName(prefix string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return fmt.Sprintf("%s-%d-%s", prefix, os.Getpid(), hex.EncodeToString(b[:]))
}
