package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/cluster"
)

// TestRestartedCoordinatorChecksItsConfiguration kills the coordinator
// mid-run and starts it again on the same --dir: with another --lr it exits
// non-zero naming the key and both values, and so it does with another log
// cadence but without --allow-config-change; with the new cadence and the
// flag it resumes, logs the change, records it, commits the remaining steps
// at the new cadence, and the commit log holds each step once.
func TestRestartedCoordinatorChecksItsConfiguration(t *testing.T) {
	const steps = 30
	c, l, ctx := startFaultRun(t, 2, 0, 1, steps, 5) // localCluster's checkpoint cadence
	waitStep(t, c, 4)
	kill(t, c.Coord)
	if n := int64(len(commitLog(t, c))); n >= steps {
		t.Fatalf("the run was done (%d steps) when the coordinator died: the kill did not land mid-run", n)
	}
	coordDir := filepath.Join(l.Dir, "coordinator")
	recorded, err := os.ReadFile(filepath.Join(coordDir, cluster.RunRecordFile))
	if err != nil {
		t.Fatalf("the first start recorded no configuration: %v", err)
	}

	changedDir := "--dir " + coordDir + " was started with a different training configuration"
	for _, r := range []struct {
		name  string
		extra []string
		want  []string
	}{
		{"coordinator-lr", []string{"--lr", "0.01"}, []string{changedDir, "lr 0.0001 (logged) vs 0.01 (now)", "start a new --dir"}},
		{"coordinator-cadence", []string{"--log-every", "2"}, []string{changedDir, "log-every 1 (logged) vs 2 (now)", "--allow-config-change=log-every"}},
		{"coordinator-lr-flag", []string{"--lr", "0.01", "--allow-config-change", "lr"}, []string{"--allow-config-change: lr cannot change on a run"}},
	} {
		p, err := l.launch(ctx, r.name, append(slices.Clone(c.Coord.Args), r.extra...))
		if err == nil {
			p.Kill()
			t.Fatalf("%v: the coordinator started", r.extra)
		}
		if !strings.Contains(err.Error(), "exited before listening (exit status 1)") {
			t.Fatalf("%v: %v", r.extra, err)
		}
		b, _ := os.ReadFile(filepath.Join(l.Dir, "logs", r.name+".log"))
		for _, w := range r.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%v: its output lacks %q:\n%s", r.extra, w, b)
			}
		}
	}
	if b, _ := os.ReadFile(filepath.Join(coordDir, cluster.RunRecordFile)); string(b) != string(recorded) {
		t.Fatal("a refused start changed the run record")
	}

	from := coordLogSize(t, c)
	p, err := l.StartCoordinator(ctx, c, "--log-every", "2", "--allow-config-change", "log-every")
	if err != nil {
		t.Fatal(err)
	}
	c.Coord = p
	waitDone(t, c, steps)
	changed := coordLines(t, c, from, "configuration changed on restart (--allow-config-change)")
	if len(changed) != 1 || changed[0]["key"] != "log-every" || changed[0]["logged"] != "1" || changed[0]["now"] != "2" {
		t.Fatalf("changes logged: %v", changed)
	}
	committed := coordLines(t, c, from, "step committed")
	if len(committed) == 0 {
		t.Fatal("the restarted coordinator logged no committed step")
	}
	for _, f := range committed {
		if s := num(t, f, "step"); s%2 != 0 {
			t.Fatalf("step %d logged at --log-every 2", s)
		}
	}
	var rec cluster.RunRecord
	b, _ := os.ReadFile(filepath.Join(coordDir, cluster.RunRecordFile))
	if err := json.Unmarshal(b, &rec); err != nil || rec.Train.LogEvery != 2 {
		t.Fatalf("run record after the allowed change: log-every %d (%v)", rec.Train.LogEvery, err)
	}
}
