package node

import (
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
)

// TestDesignCardCommandBuildsItsLayout: `coordinator --workers=53
// --backups=3 --ps=17` with the default model (madry-mnist, 8 tensors) is
// accepted and its layout — what RunCoordinator builds first — cuts the
// 3,274,634 parameters into 17 shards of 192,625 or 192,626.
func TestDesignCardCommandBuildsItsLayout(t *testing.T) {
	o, err := runCoordinatorCommand(t, "--workers=53", "--backups=3", "--ps=17", "--dir", t.TempDir())
	if err != nil || o == nil {
		t.Fatalf("the design card's command: %v", err)
	}
	if o.Workers != 53 || o.Backups != 3 || o.PS != 17 || o.Train.Model != "madry-mnist" {
		t.Fatalf("options: workers %d backups %d ps %d model %s", o.Workers, o.Backups, o.PS, o.Train.Model)
	}
	l, _, err := cluster.NewLayout(cpu.New(cpu.Options{Threads: 1}), o.Train, o.PS)
	if err != nil {
		t.Fatalf("layout of --ps=17 with %s: %v", o.Train.Model, err)
	}
	if len(l.Shards) != 17 || l.Params.Total != 3274634 {
		t.Fatalf("%d shards of %d parameters", len(l.Shards), l.Params.Total)
	}
	for _, s := range l.Shards {
		if s.Size() != 192625 && s.Size() != 192626 {
			t.Errorf("shard %d holds [%d,%d), %d parameters", s.Index, s.Lo, s.Hi, s.Size())
		}
	}
}

// TestSeventeenShardsOfMadryMNIST: processes of a tiny madry-mnist (8
// tensors, 3,578 parameters) with --ps=17, so every shard holds part of a
// tensor, complete their steps with one commit-log entry each and the
// consistent checkpoint assembled from the 17 shards.
func TestSeventeenShardsOfMadryMNIST(t *testing.T) {
	const steps = 4
	l := localCluster(t, 3, 1, 17, steps)
	c, err := l.Start(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(10 * time.Second)
	waitDone(t, c, steps)
}
