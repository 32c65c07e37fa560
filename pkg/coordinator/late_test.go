package coordinator_test

import (
	"context"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/paramserver"
)

// TestLate: Get is nil and Ready false until Set (a nil *Late too); Ready
// follows the bound coordinator's recovery; a second Set panics.
func TestLate(t *testing.T) {
	var nilLate *coordinator.Late
	if nilLate.Get() != nil || nilLate.Ready() {
		t.Fatal("a nil Late must read as unset")
	}
	var l coordinator.Late
	if l.Get() != nil || l.Ready() {
		t.Fatal("an unset Late must read as unset")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := coordinator.DefaultConfig()
	cfg.Workers, cfg.Backups, cfg.Steps, cfg.CheckpointEvery = 1, 0, 1, 0
	oc, _ := optim.DefaultConfig("sgd")
	shard, err := paramserver.NewLocal(paramserver.ShardConfig{Hi: 3, Workers: 1, Optim: oc, Schedule: "constant", LR: 0.5},
		[]float32{1, 2, 3}, paramserver.NewMemStepStore())
	if err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.New(ctx, cfg, paramserver.NewMemLog(), &checkpoint.MemRecord{}, []coordinator.ShardClient{shard}, coordinator.Hooks{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Set(c)
	if l.Get() != c {
		t.Fatal("Get after Set is not the coordinator")
	}
	if l.Ready() {
		t.Fatal("Ready before the coordinator recovered the global step")
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	defer func() { stop(); <-done }()
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("the coordinator stopped: %v", err)
	case <-ctx.Done():
		t.Fatal("the coordinator did not recover within the hang guard")
	}
	if !l.Ready() {
		t.Fatal("not Ready once the coordinator recovered")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a second Set did not panic")
		}
	}()
	l.Set(c)
}
