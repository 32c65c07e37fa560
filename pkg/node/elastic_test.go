package node

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 5, deliverable 4, with real processes: fewer than N live workers
// pause the cluster with a logged reason, or, with --elastic, lower N to the
// live count and raise it again as workers return (the learning rate is left
// as it is; see pkg/coordinator's package comment).
//
// Which steps a liveness change can affect follows from the coordinator's
// locking: SetLive logs its "worker liveness" line under the lock under
// which commitStep fixes a step's set, so once the line is in the log file,
// the step being committed (at most one: the entry the commit log lacks when
// the file is read) may still have been fixed before the change, and every
// later step after it.

// TestElasticLowersAndRaisesN: 3 workers, no backups, --elastic. A worker
// killed mid-run lowers N to 2 (logged), the steps after that are made by
// the two survivors; the worker restarted in its slot raises N back to 3
// (logged), the steps after that include it; the run reaches its step count
// with one commit-log entry per step.
func TestElasticLowersAndRaisesN(t *testing.T) {
	const steps, victim = 40, 1
	l := localCluster(t, 3, 0, 1, steps)
	l.Elastic = true
	faultRun(&l, steps)
	ctx := testCtx(t)
	c, err := l.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(10 * time.Second)
	waitStep(t, c, 3)

	// Phase 1: all three workers. Entries before l0 were fixed before the
	// kill.
	l0 := len(commitLog(t, c))
	from := coordLogSize(t, c)
	kill(t, c.Workers[victim])
	// The dead worker reported at most step atKill: step atKill+1 needs
	// step atKill applied, which had not been logged when it died.
	atKill := len(commitLog(t, c))
	if atKill >= steps-10 {
		t.Fatalf("the run was at step %d of %d when the worker died: the kill did not land mid-run", atKill, steps)
	}
	gone := waitCoordLine(t, c, from, "worker liveness", func(f map[string]any) bool {
		return num(t, f, "slot") == victim && f["alive"] == false
	})
	if num(t, gone, "live") != 2 || num(t, gone, "required") != 2 {
		t.Fatalf("the coordinator noticed the death with %v, want live = required = 2 (N lowered)", gone)
	}
	if p := coordLines(t, c, from, "paused"); len(p) != 0 {
		t.Fatalf("an elastic cluster paused: %v", p)
	}
	// Phase 2: N = 2. Entries from l1+1 on were fixed after N was lowered.
	l1 := len(commitLog(t, c))
	waitStep(t, c, l1+4)

	// Hold the run still while the replacement starts, so that steps are
	// left for it however long it takes to start on a loaded machine: a
	// stopped shard answers no pull, push or apply, so at most the step
	// whose set is already fixed gets logged (its apply then waits for the
	// shard; the workers' pulls time out and they ask again).
	ps := c.PS[0]
	signalGroup(t, ps, syscall.SIGSTOP)
	stopped := true
	cont := func() { // also deferred: no t.Fatal here
		if stopped {
			if err := syscall.Kill(-ps.Cmd.Process.Pid, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT to %s: %v", ps.Name, err)
			}
			stopped = false
		}
	}
	defer cont()
	// Entries before l2a were logged before the replacement started: fixed
	// with N = 2.
	l2a := len(commitLog(t, c))
	if l2a >= steps-5 {
		t.Fatalf("%d of %d steps done before the replacement started: too few left to see N rise", l2a, steps)
	}
	from2 := coordLogSize(t, c)
	p, err := l.StartWorker(ctx, c, victim)
	if err != nil {
		t.Fatal(err)
	}
	c.Workers[victim] = p
	back := waitCoordLine(t, c, from2, "worker liveness", func(f map[string]any) bool {
		return num(t, f, "slot") == victim && f["alive"] == true
	})
	if num(t, back, "live") != 3 || num(t, back, "required") != 3 {
		t.Fatalf("the coordinator saw the worker return with %v, want live = required = 3 (N raised)", back)
	}
	// Phase 3: N = 3. Entries from l2+1 on were fixed after N was raised.
	l2 := len(commitLog(t, c))
	if l2 > l2a+1 {
		t.Fatalf("%d steps logged while the shard was stopped, want at most 1", l2-l2a)
	}
	cont()

	waitElasticDone(t, c, steps)
	es := commitLog(t, c)
	liveness := livenessDuringRun(t, c, steps)
	if len(liveness) != 2 {
		t.Fatalf("liveness changes %v, want the death and the return of slot %d only", liveness, victim)
	}
	for i, e := range es {
		var want []int // nil: a step at a change, fixed before or after it
		switch {
		case i < l0 || i >= l2+1:
			want = []int{0, 1, 2}
		case i >= l1+1 && i < l2a:
			want = []int{0, 2}
		}
		if want != nil && !slices.Equal(e.Workers, want) {
			t.Fatalf("step %d was made by slots %v, want %v (kill at entry %d, N lowered by entry %d, replacement started at %d, N raised by %d)\nliveness changes: %v",
				e.Step, e.Workers, want, l0, l1+1, l2a, l2+1, liveness)
		}
		if want == nil && i > atKill && i < l2a && slices.Contains(e.Workers, victim) {
			t.Fatalf("step %d averaged slot %d's gradient, but its worker had died before the step began", e.Step, victim)
		}
	}
	if l2a-(l1+1) < 3 || int(steps)-(l2+1) < 3 {
		t.Fatalf("too few steps in a phase: N = 2 for entries %d..%d, N = 3 from %d of %d", l1+1, l2a-1, l2+1, steps)
	}
}

// TestElasticOffTooFewWorkersPauses: 2 workers, no backups, no --elastic.
// A killed worker (no replacement) pauses the cluster with the reason in
// the coordinator's log and on its status page, and no step is committed
// with fewer than N = 2 workers; the test then stops the cluster.
func TestElasticOffTooFewWorkersPauses(t *testing.T) {
	const steps, victim = 40, 1
	l := localCluster(t, 2, 0, 1, steps)
	faultRun(&l, steps)
	c, err := l.Start(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(10 * time.Second)
	waitStep(t, c, 3)
	from := coordLogSize(t, c)
	kill(t, c.Workers[victim])
	atKill := len(commitLog(t, c))
	if atKill >= steps-1 {
		t.Fatalf("the run was at step %d of %d when the worker died: the kill did not land mid-run", atKill, steps)
	}
	const reason = "1 live workers, 2 needed per step"
	paused := waitCoordLine(t, c, from, "paused", func(f map[string]any) bool {
		r, _ := f["reason"].(string)
		return strings.Contains(r, reason)
	})
	t.Logf("paused: %v", paused)
	gone := coordLines(t, c, from, "worker liveness")
	if len(gone) != 1 || num(t, gone[0], "slot") != victim || gone[0]["alive"] != false || num(t, gone[0], "required") != 2 {
		t.Fatalf("liveness changes %v, want slot %d dead with N still 2", gone, victim)
	}
	// The cluster stays paused: the surviving worker keeps asking, the
	// coordinator keeps running, and nothing is committed past the step the
	// dead worker may have reported before it died.
	time.Sleep(3 * time.Second)
	var st struct {
		Run struct {
			Phase       string
			Paused      bool
			Reason      string
			Required    int
			LiveWorkers int `json:"live_workers"`
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + c.Coord.Addr.HTTP + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Run.Paused || st.Run.Phase != "paused" || !strings.Contains(st.Run.Reason, reason) || st.Run.Required != 2 || st.Run.LiveWorkers != 1 {
		t.Fatalf("/status.json run: %+v, want paused with %q", st.Run, reason)
	}
	if err := c.Coord.Wait(0); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("the coordinator exited while paused: %v\n%s", err, c.LogTail("coordinator", 30))
	}
	es := commitLog(t, c)
	if len(es) > atKill+1 {
		t.Fatalf("%d steps committed after the worker died with no replacement (log at %d when it died)", len(es)-atKill, atKill)
	}
	for i, e := range es {
		if e.Step != int64(i) || !slices.Equal(e.Workers, []int{0, 1}) {
			t.Fatalf("entry %d: %+v, want step %d made by both workers", i, e, i)
		}
	}
}

// waitCoordLine waits (bounded) for a coordinator log line with message msg
// after byte offset from that satisfies match, and returns its fields.
func waitCoordLine(t *testing.T, c *Cluster, from int64, msg string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		for _, f := range coordLines(t, c, from, msg) {
			if match(f) {
				return f
			}
		}
		if err := c.Coord.Wait(0); err == nil || !strings.Contains(err.Error(), "still running") {
			t.Fatalf("the coordinator exited (%v) before logging %q\n%s", err, msg, c.LogTail("coordinator", 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no matching %q line in the coordinator's log\n%s", msg, c.LogTail("coordinator", 40))
	return nil
}

// livenessDuringRun returns the fields of the coordinator's "worker
// liveness" lines logged after step 0 and before step steps-2 was committed.
// The workers' joins come before step 0, which even with --elastic waits
// for all of them; up to steps-2 the run cannot be done (when it is, the
// workers leave, and the coordinator logs that too, possibly before its
// last "step committed" line).
func livenessDuringRun(t *testing.T, c *Cluster, steps int64) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.L.Dir, "logs", "coordinator.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	started := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 5 || (f[3] != "worker liveness" && f[3] != "step committed") {
			continue
		}
		fields := map[string]any{}
		if err := json.Unmarshal([]byte(f[4]), &fields); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if f[3] == "step committed" {
			started = true
			if num(t, fields, "step") == steps-2 {
				return out
			}
			continue
		}
		if started {
			out = append(out, fields)
		}
	}
	t.Fatalf("no \"step committed\" line for step %d in the coordinator's log", steps-2)
	return nil
}

// signalGroup sends sig to p's process group.
func signalGroup(t *testing.T, p *Proc, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(-p.Cmd.Process.Pid, sig); err != nil {
		t.Fatalf("%s to %s: %v", sig, p.Name, err)
	}
}

// waitElasticDone is waitDone for a run whose N changed: the coordinator
// finishes, the final checkpoint is at steps, the commit log holds one
// entry per step 0..steps-1, and its replay gives the shards' final states.
func waitElasticDone(t *testing.T, c *Cluster, steps int64) {
	t.Helper()
	if err := c.Coord.Wait(90 * time.Second); err != nil {
		t.Fatalf("coordinator: %v\n%s", err, c.LogTail("coordinator", 30))
	}
	step, ok, err := FileCheckpointsOf(filepath.Join(c.L.Dir, "coordinator"))
	if err != nil || !ok || step != steps {
		t.Fatalf("final checkpoint %d %v %v, want %d\n%s", step, ok, err, steps, c.LogTail("coordinator", 30))
	}
	es := commitLog(t, c)
	if int64(len(es)) != steps {
		t.Fatalf("commit log has %d entries for %d steps", len(es), steps)
	}
	for i, e := range es {
		if e.Step != int64(i) || len(e.Workers) == 0 {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	replayMatches(t, c, steps)
}
