package node

import (
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/logitpair/logitpair/pkg/data/datatest"
	"github.com/logitpair/logitpair/pkg/train"
)

// The coordinator's compute accounting learns the training split's size
// (for the per-example counts) from the data the workers read; without the
// data it records totals only and says why.
func TestTrainSetSizeForComputeAccounting(t *testing.T) {
	dir := t.TempDir()
	datatest.WriteMNIST(t, dir, 64, 1)
	cfg := train.DefaultConfig()
	cfg.DataDir = dir
	core, logs := observer.New(zap.InfoLevel)
	if n := trainSetSize(cfg, [3]int{1, 28, 28}, zap.New(core)); n != 64 {
		t.Fatalf("training split of 64 examples: size %d", n)
	}
	cfg.DataDir = filepath.Join(dir, "gone")
	if n := trainSetSize(cfg, [3]int{1, 28, 28}, zap.New(core)); n != 0 {
		t.Fatalf("no data: size %d, want 0", n)
	}
	if got := logs.FilterMessageSnippet("without per-example counts").Len(); got != 1 {
		t.Fatalf("%d log lines saying the per-example counts are left out, want 1", got)
	}
}
