package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shardFile is shard k's saved state at step in c's run.
func shardFile(c *Cluster, k int, step int64) string {
	return filepath.Join(c.L.Dir, fmt.Sprintf("ps-%d", k), fmt.Sprintf("shard-%d-%012d.safetensors", k, step))
}

// TestCorruptShardStateRollsBackToWhatEveryShardHolds (issue 12, item 2):
// a shard dies and its newest state file (the consistent checkpoint at 20)
// is found corrupt when it restarts. The shard serves its older intact
// state (10), the coordinator rolls every shard back to 10 — the newest
// step all of them and the coordinator hold — and the run completes with
// each step once in the log and final parameters equal to the log's replay.
func TestCorruptShardStateRollsBackToWhatEveryShardHolds(t *testing.T) {
	const steps, every = 40, 10
	c, l, ctx := startFaultRun(t, 2, 0, 2, steps, every)
	waitStep(t, c, 2*every+2) // checkpoint 20 written (log 2 past it); the next at 30
	kill(t, c.PS[1])
	if atKill := int64(len(commitLog(t, c))); atKill >= 3*every {
		t.Fatalf("the run was at step %d when the shard died, past the checkpoint at %d: the fault did not land mid-run", atKill, 3*every)
	}
	if err := os.WriteFile(shardFile(c, 1, 2*every), []byte("not a safetensors file"), 0o644); err != nil {
		t.Fatal(err)
	}
	from := coordLogSize(t, c)
	p, err := l.StartPS(ctx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.PS[1] = p
	waitDone(t, c, steps)
	rb := coordLines(t, c, from, "rolling back")
	if len(rb) != 1 || num(t, rb[0], "to_step") != every {
		t.Fatalf("rollbacks %v, want one to step %d (shard 1's state at %d is corrupt)\n%s", rb, every, 2*every, c.LogTail("coordinator", 40))
	}
	if n := len(coordLines(t, c, from, "the newest consistent checkpoint is not held intact everywhere: rolling back further")); n != 1 {
		t.Fatalf("%d warnings that the rollback goes past the newest checkpoint, want 1", n)
	}
	b, _ := os.ReadFile(filepath.Join(c.L.Dir, "logs", "ps-1.log"))
	if !strings.Contains(string(b), "a saved shard state does not read back") {
		t.Fatalf("shard 1 did not report its corrupt file\n%s", c.LogTail("ps-1", 20))
	}
}

// TestNoCommonStepStopsTheCoordinatorWithWhatIsMissing (issue 12, item 2):
// a shard comes back on an empty disk after the others pruned their state
// of step 0, so no step is held by every shard: the coordinator stops (it
// does not loop) with an error naming what each shard holds.
func TestNoCommonStepStopsTheCoordinatorWithWhatIsMissing(t *testing.T) {
	const steps, every = 60, 5
	c, l, ctx := startFaultRun(t, 2, 0, 2, steps, every)
	waitStep(t, c, 4*every+1) // shards keep 3 states: step 0's is pruned once 15 is saved
	kill(t, c.PS[1])
	if atKill := int64(len(commitLog(t, c))); atKill >= steps-every {
		t.Fatalf("the run was at step %d of %d when the shard died: the fault did not land mid-run", atKill, steps)
	}
	if err := os.RemoveAll(filepath.Join(c.L.Dir, "ps-1")); err != nil {
		t.Fatal(err)
	}
	p, err := l.StartPS(ctx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.PS[1] = p
	if err := c.Coord.Wait(2 * time.Minute); err == nil || strings.Contains(err.Error(), "still running") {
		t.Fatalf("coordinator: %v, want it to stop with an error\n%s", err, c.LogTail("coordinator", 20))
	}
	b, _ := os.ReadFile(filepath.Join(c.L.Dir, "logs", "coordinator.log"))
	log := string(b)
	for _, want := range []string{"no step that every shard and the coordinator hold", "shard 1 holds [0]", "Copy the missing shards' state files"} {
		if !strings.Contains(log, want) {
			t.Fatalf("the coordinator's log does not say %q\n%s", want, c.LogTail("coordinator", 20))
		}
	}
}
