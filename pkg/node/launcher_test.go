package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/statuspage"
	"github.com/logitpair/logitpair/pkg/train"
)

// TestRunVerdict: `cluster local` succeeds exactly when the run is complete
// (its checkpoint at Steps is recorded), whatever the processes did; what
// went wrong around a complete run is a note, not an error.
func TestRunVerdict(t *testing.T) {
	exit1 := errors.New("exit status 1")
	for _, tc := range []struct {
		name      string
		end       runEnd
		wantErr   string // "" for success
		wantNotes []string
	}{
		{name: "clean", end: runEnd{steps: 30, checkpoint: 30, coordExited: true}},
		{name: "a worker failed after the last commit",
			end:       runEnd{steps: 30, checkpoint: 30, coordExited: true, exits: []procExit{{"worker-51", exit1}}},
			wantNotes: []string{"worker-51: exit status 1"}},
		{name: "a worker could not start: the run was over",
			end:       runEnd{steps: 30, checkpoint: 30, coordExited: true, notes: []string{"worker-51 did not start"}},
			wantNotes: []string{"worker-51 did not start"}},
		{name: "the coordinator failed after completing",
			end:       runEnd{steps: 30, checkpoint: 30, coordExited: true, coordErr: exit1, exits: []procExit{{"coordinator", exit1}}},
			wantNotes: []string{"the coordinator exited with exit status 1 after the run completed"}},
		{name: "the coordinator lingered after completing",
			end:       runEnd{steps: 30, checkpoint: 30, exits: []procExit{{"coordinator", errors.New("killed")}}},
			wantNotes: []string{"the coordinator had not exited", "coordinator: killed"}},
		{name: "interrupted after completing", end: runEnd{steps: 30, checkpoint: 30, coordExited: false, interrupted: context.Canceled},
			wantNotes: []string{"had not exited"}},
		{name: "a checkpoint beyond --steps", end: runEnd{steps: 20, checkpoint: 30, coordExited: true}},
		{name: "coordinator failed mid-run", end: runEnd{steps: 30, checkpoint: 10, coordExited: true, coordErr: exit1},
			wantErr: "coordinator: exit status 1 (newest checkpoint at step 10 of 30)"},
		{name: "coordinator exited 0 without completing", end: runEnd{steps: 30, checkpoint: -1, coordExited: true},
			wantErr: "before the run was done (no checkpoint recorded)"},
		{name: "interrupted", end: runEnd{steps: 30, checkpoint: 20, interrupted: context.Canceled},
			wantErr: "interrupted before the run completed (newest checkpoint at step 20 of 30; run the same command again to resume)"},
		{name: "a worker failed and the run did not complete",
			end:     runEnd{steps: 30, checkpoint: 0, coordExited: true, coordErr: exit1, exits: []procExit{{"worker-3", exit1}}},
			wantErr: "coordinator: exit status 1", wantNotes: []string{"worker-3: exit status 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			notes, err := tc.end.verdict()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("verdict: %v, want success", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("verdict: %v, want an error containing %q", err, tc.wantErr)
			}
			all := strings.Join(notes, "\n")
			if len(notes) != len(tc.wantNotes) {
				t.Fatalf("notes %q, want %d containing %q", notes, len(tc.wantNotes), tc.wantNotes)
			}
			for _, w := range tc.wantNotes {
				if !strings.Contains(all, w) {
					t.Errorf("notes %q lack %q", notes, w)
				}
			}
		})
	}
	if _, err := (runEnd{steps: 5, checkpoint: 2, coordExited: true}).verdict(); !errors.Is(err, ErrNotDone) {
		t.Errorf("an unfinished run with a clean coordinator exit: %v, want ErrNotDone", err)
	}
}

// TestRunOnFinishedFolder: on a directory whose completion is recorded, Run
// says so and returns nil at once, starting nothing (the executable does
// not even exist); with a higher --steps it does not stop there.
func TestRunOnFinishedFolder(t *testing.T) {
	dir := t.TempDir()
	if err := (checkpoint.FileRecord{Dir: filepath.Join(dir, "coordinator")}).SetLastCheckpoint(30); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tc := train.DefaultConfig()
	tc.Steps = 30
	l := LocalCluster{Exe: filepath.Join(dir, "no-such-logitpair"), Dir: dir, Workers: 2, PS: 1, Train: tc, NoTLS: true, Out: &out}
	if err := l.Run(context.Background()); err != nil {
		t.Fatalf("Run on a finished folder: %v", err)
	}
	want := "run in " + dir + " already finished at step 30; nothing to do (use a new --out, or raise --steps to continue)"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	// Raised --steps: Run goes on to start the cluster (here it cannot).
	out.Reset()
	l.Train.Steps = 40
	err := l.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "starting coordinator") {
		t.Fatalf("Run with --steps raised: %v, want it to try to start the coordinator", err)
	}
	if !strings.Contains(out.String(), "resuming the run in "+dir+": checkpoint at step 30 of 40") {
		t.Fatalf("output %q lacks the resume line", out.String())
	}
}

// TestRunEnding: a process that fails to start after the run's end is not
// an error. Whether the run is ending comes from the completion record, or
// from the coordinator's /status.json saying "done" followed by the record
// (the final checkpoint comes after the last commit); "running" is a real
// failure, at once.
func TestRunEnding(t *testing.T) {
	var phase atomic.Value
	phase.Store(statuspage.PhaseRunning)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(statuspage.Snapshot{Run: statuspage.Run{Phase: phase.Load().(string)}})
	}))
	t.Cleanup(srv.Close)
	setup := func(t *testing.T) (*Cluster, checkpoint.FileRecord) {
		dir := t.TempDir()
		tc := train.DefaultConfig()
		tc.Steps = 30
		c := &Cluster{L: LocalCluster{Dir: dir, Train: tc, StartTimeout: 2 * time.Minute},
			Coord: &Proc{Name: "coordinator", done: make(chan error, 1), Addr: Addrs{HTTP: strings.TrimPrefix(srv.URL, "http://")}}}
		return c, checkpoint.FileRecord{Dir: filepath.Join(dir, "coordinator")}
	}
	ctx := context.Background()

	c, rec := setup(t)
	if c.runEnding(ctx) {
		t.Error("running, nothing recorded: taken as the run's end")
	}
	if err := rec.SetLastCheckpoint(20); err != nil {
		t.Fatal(err)
	}
	if c.runEnding(ctx) {
		t.Error("running, checkpoint 20 of 30: taken as the run's end")
	}
	if err := rec.SetLastCheckpoint(30); err != nil {
		t.Fatal(err)
	}
	if !c.runEnding(ctx) {
		t.Error("completion recorded: not taken as the run's end")
	}

	phase.Store(statuspage.PhaseDone)
	c, rec = setup(t)
	go func() {
		time.Sleep(300 * time.Millisecond) // the final checkpoint being written
		rec.SetLastCheckpoint(30)
	}()
	if !c.runEnding(ctx) {
		t.Error("status done, then the record: not taken as the run's end")
	}
	c, _ = setup(t)
	c.Coord.done <- errors.New("exit status 1")
	if c.runEnding(ctx) {
		t.Error("status done, then the coordinator exited without recording the completion: taken as the run's end")
	}
}

// TestClusterLocalRunFinishAndContinue runs `cluster local`'s Run on a small
// layout: it completes (nil), a second Run on the finished folder returns at
// once, and a third with --steps raised continues from the last step to the
// new end, each step once in the commit log. The first Run names the
// coordinator's status page and metrics.
func TestClusterLocalRunFinishAndContinue(t *testing.T) {
	l := localCluster(t, 3, 1, 2, 3)
	var out bytes.Buffer
	l.Out = &out
	ctx := testCtx(t)
	if err := l.Run(ctx); err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "started 2 shards and 3 workers") || !strings.Contains(out.String(), "done: ") ||
		!strings.Contains(out.String(), "status page: http://127.0.0.1:") || !strings.Contains(out.String(), "/metrics") {
		t.Fatalf("output:\n%s", out.String())
	}
	out.Reset()
	if err := l.Run(ctx); err != nil || !strings.Contains(out.String(), "already finished at step 3") {
		t.Fatalf("second Run: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "started") {
		t.Fatalf("the second Run started processes:\n%s", out.String())
	}
	out.Reset()
	l.Train.Steps = 5
	if err := l.Run(ctx); err != nil {
		t.Fatalf("Run with --steps 5: %v\n%s", err, out.String())
	}
	c := &Cluster{L: l}
	es := commitLog(t, c)
	if len(es) != 5 {
		t.Fatalf("commit log has %d entries, want 5", len(es))
	}
	for i, e := range es {
		if e.Step != int64(i) || len(e.Workers) != 2 {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	if step, ok, err := FileCheckpointsOf(filepath.Join(l.Dir, "coordinator")); err != nil || !ok || step != 5 {
		t.Fatalf("final checkpoint %d %v %v, want 5", step, ok, err)
	}
}

func TestProcessEnvGOGC(t *testing.T) {
	env := []string{"PATH=/bin", "HOME=/root"}
	got := processEnv(env)
	if len(got) != 3 || got[2] != "GOGC="+localGOGC || len(env) != 2 {
		t.Errorf("processEnv(%q) = %q, want GOGC=%s added (and its argument untouched)", env, got, localGOGC)
	}
	set := []string{"GOGC=200", "PATH=/bin"}
	if got := processEnv(set); len(got) != 2 || got[0] != "GOGC=200" {
		t.Errorf("processEnv(%q) = %q, want the operator's GOGC kept", set, got)
	}
}

// TestStartReportsWhyAProcessExited: a process that exits before listening
// is reported with the end of its log, which says why.
func TestStartReportsWhyAProcessExited(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "fake-logitpair")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\necho 'coordinator: refusing to start: the configuration differs'\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tc := train.DefaultConfig()
	l := LocalCluster{Exe: exe, Dir: filepath.Join(dir, "run"), Workers: 2, PS: 1, Train: tc, NoTLS: true, StartTimeout: time.Minute}
	_, err := l.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "coordinator exited before listening (exit status 3)") ||
		!strings.Contains(err.Error(), "refusing to start: the configuration differs") {
		t.Fatalf("Start: %v, want the coordinator's exit and the end of its log", err)
	}
}
