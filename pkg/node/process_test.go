package node

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/data/datatest"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/train"
)

// These tests run real processes on loopback (issue 5, test c): the
// logitpair binary is built once, and each test starts a whole cluster with
// LocalCluster, injures it, checks from the commit log that the fault landed
// mid-run and from the log or the coordinator's log that it had its effect
// (a dead worker's slot leaves the step sets, a restarted shard causes a
// rollback, a restarted coordinator resumes from its log), and that the run
// reaches its step count with exactly one commit-log entry per step of the
// final history.

var exe string

func TestMain(m *testing.M) {
	code := func() int {
		flag.Parse()
		if testing.Short() {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "logitpair-bin")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		exe = filepath.Join(dir, "logitpair")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", exe, "./cmd/logitpair")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			os.Stderr.Write(out)
			panic(err)
		}
		return m.Run()
	}()
	os.Exit(code)
}

func localCluster(t *testing.T, workers, backups, ps int, steps int64) LocalCluster {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := t.TempDir()
	if keep := os.Getenv("LOGITPAIR_TEST_KEEP"); keep != "" { // keep logs for debugging
		dir = filepath.Join(keep, t.Name())
		os.RemoveAll(dir)
		os.MkdirAll(dir, 0o755)
	}
	dataDir := filepath.Join(dir, "mnist")
	os.MkdirAll(dataDir, 0o755)
	datatest.WriteMNIST(t, dataDir, 64, 1)
	tc := train.DefaultConfig()
	tc.DataDir, tc.ModelConfig = dataDir, models.Config{"conv1": 2, "conv2": 4, "hidden": 16}
	tc.Objective, tc.AttackSteps, tc.StepSize, tc.Batch = "alp", 3, 0.1, 8
	tc.Steps, tc.CheckpointEvery, tc.LogEvery, tc.Out = steps, 5, 5, filepath.Join(dir, "run")
	return LocalCluster{Exe: exe, Dir: filepath.Join(dir, "run"), Workers: workers, Backups: backups, PS: ps, Train: tc,
		StartTimeout: time.Minute}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitDone waits for the coordinator to finish and checks the final
// checkpoint, the commit log (one entry per step 0..steps-1) and that the
// shards' final states equal the log's replay (replayMatches).
func waitDone(t *testing.T, c *Cluster, steps int64) {
	t.Helper()
	if err := c.Coord.Wait(90 * time.Second); err != nil {
		t.Fatalf("coordinator: %v\n%s", err, c.LogTail("coordinator", 30))
	}
	step, ok, err := FileCheckpointsOf(filepath.Join(c.L.Dir, "coordinator"))
	if err != nil || !ok || step != steps {
		t.Fatalf("final checkpoint %d %v %v, want %d\n%s", step, ok, err, steps, c.LogTail("coordinator", 30))
	}
	for _, f := range []string{"ckpt-" + pad(steps) + ".safetensors", "ckpt-" + pad(steps) + ".state.safetensors", "latest.json"} {
		if _, err := os.Stat(filepath.Join(c.L.Dir, "coordinator", f)); err != nil {
			t.Fatal(err) // the checkpoint in local training's format, optimizer state fetched from the shards
		}
	}
	es := commitLog(t, c)
	if int64(len(es)) != steps {
		t.Fatalf("commit log has %d entries for %d steps", len(es), steps)
	}
	for i, e := range es {
		if e.Step != int64(i) || len(e.Workers) != c.L.Workers-c.L.Backups {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	replayMatches(t, c, steps)
}

func pad(s int64) string { return fmt.Sprintf("%08d", s) }

// waitStep waits until the coordinator's log shows at least n entries.
func waitStep(t *testing.T, c *Cluster, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if l, err := paramserver.OpenFileLog(filepath.Join(c.L.Dir, "coordinator", "commit.log")); err == nil {
			es, _ := l.Entries()
			l.Close()
			if len(es) >= n {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the run did not reach step %d\n%s", n, c.LogTail("coordinator", 30))
}

// faultRun makes l's run long enough that a fault injected after its first
// steps lands mid-run even on a loaded machine: more steps, each doing more
// real work (a larger batch attacked with more PGD iterations), and a
// progress line per step in the coordinator's log.
func faultRun(l *LocalCluster, steps int64) {
	l.Train.Steps, l.Train.LogEvery = steps, 1
	l.Train.Batch, l.Train.AttackSteps = 64, 20
}

// startFaultRun starts a fault run (faultRun) of steps steps with a
// consistent checkpoint every `every` steps; the cluster is stopped when
// the test ends.
func startFaultRun(t *testing.T, workers, backups, ps int, steps, every int64) (*Cluster, LocalCluster, context.Context) {
	t.Helper()
	l := localCluster(t, workers, backups, ps, steps)
	faultRun(&l, steps)
	l.Train.CheckpointEvery = every
	ctx := testCtx(t)
	c, err := l.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(10 * time.Second) })
	return c, l, ctx
}

// kill SIGKILLs p and waits (bounded) until it has exited.
func kill(t *testing.T, p *Proc) {
	t.Helper()
	p.Kill()
	if err := p.Wait(10 * time.Second); err != nil && strings.Contains(err.Error(), "still running") {
		t.Fatal(err)
	}
}

// commitLog returns the coordinator's commit log as it is on disk.
func commitLog(t *testing.T, c *Cluster) []paramserver.Entry {
	t.Helper()
	l, err := paramserver.OpenFileLog(filepath.Join(c.L.Dir, "coordinator", "commit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	es, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// coordLogSize is the size of the coordinator's log now, to read only what
// comes after (coordLines).
func coordLogSize(t *testing.T, c *Cluster) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(c.L.Dir, "logs", "coordinator.log"))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// coordLines returns the fields of the coordinator's log lines with message
// msg, from byte offset from on (the launcher's console format: time, level,
// caller, message, JSON fields, tab-separated; every incarnation appends).
func coordLines(t *testing.T, c *Cluster, from int64, msg string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.L.Dir, "logs", "coordinator.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(string(b[min(from, int64(len(b))):]), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 4 || f[3] != msg {
			continue
		}
		fields := map[string]any{}
		if len(f) > 4 {
			if err := json.Unmarshal([]byte(f[4]), &fields); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
		}
		out = append(out, fields)
	}
	return out
}

// num is a JSON number field of a log line.
func num(t *testing.T, fields map[string]any, key string) int64 {
	t.Helper()
	v, ok := fields[key].(float64)
	if !ok {
		t.Fatalf("log fields %v: no number %q", fields, key)
	}
	return int64(v)
}

// TestKillAWorkerTrainingGoesOnThroughTheBackup kills mid-run one of three
// workers (one backup), one whose gradient was in the latest step: the steps
// after its death are made by the other two alone, and the run completes.
func TestKillAWorkerTrainingGoesOnThroughTheBackup(t *testing.T) {
	const steps = 40
	l := localCluster(t, 3, 1, 2, steps)
	faultRun(&l, steps)
	c, err := l.Start(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(10 * time.Second)
	waitStep(t, c, 5) // step 4 logged, so step 3 applied: the status page's step is ≥ 4
	checkStatusPage(t, c, steps)
	// The victim: a worker whose gradient made the latest step (worker w
	// asked for slot w and got it).
	es := commitLog(t, c)
	victim := es[len(es)-1].Workers[0]
	kill(t, c.Workers[victim])
	// The dead worker may have reported for step atKill (its parameters may
	// have been out when we read the log); step atKill+1 needs step atKill
	// applied, which had not happened when it died.
	atKill := int64(len(commitLog(t, c)))
	if atKill >= steps-1 {
		t.Fatalf("the run was at step %d of %d when the worker died: the kill did not land mid-run", atKill, steps)
	}
	waitDone(t, c, steps)
	for _, e := range commitLog(t, c)[atKill+1:] {
		if slices.Contains(e.Workers, victim) {
			t.Fatalf("step %d averaged slot %d's gradient, but its worker died before step %d began", e.Step, victim, atKill+1)
		}
	}
}

// checkStatusPage reads the coordinator's status page and its JSON from the
// process's HTTP port, as an operator's browser would.
func checkStatusPage(t *testing.T, c *Cluster, steps int64) {
	t.Helper()
	base := "http://" + c.Coord.Addr.HTTP
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(base + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Run struct {
			Step, Steps int64
		}
		Members []struct{ Role string }
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/status.json: %d %v", resp.StatusCode, err)
	}
	if st.Run.Step < 4 || st.Run.Steps != steps || len(st.Members) < 3+2 {
		t.Fatalf("/status.json: %+v, want step ≥ 4 of %d and 3 workers + 2 shards", st, steps)
	}
	resp, err = client.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "<svg") {
		t.Fatalf("status page: %d, %d bytes without a chart", resp.StatusCode, len(page))
	}
}

// TestKillAParameterServerRollsBackAndGoesOn kills a shard mid-run, between
// two checkpoints and at least two steps past the first: the restarted shard
// comes back at that checkpoint, behind the other, so the coordinator rolls
// every shard back to it, truncates the log, recomputes the steps after it,
// and the run completes with each step once in the log.
func TestKillAParameterServerRollsBackAndGoesOn(t *testing.T) {
	const steps, every = 40, 10
	c, l, ctx := startFaultRun(t, 2, 0, 2, steps, every)
	waitStep(t, c, every+2) // checkpoint 10 written, the log 2 steps past it (a restart at 10 cannot just re-apply), the next checkpoint at 20
	kill(t, c.PS[1])
	from := coordLogSize(t, c)
	atKill := int64(len(commitLog(t, c))) // no step is applied without shard 1 now
	if atKill >= 2*every {
		t.Fatalf("the run was at step %d when the shard died, past the checkpoint at %d: the kill did not land where a rollback is needed", atKill, 2*every)
	}
	deadShardIsVisibleAndCheap(t, c, 1)
	p, err := l.StartPS(ctx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.PS[1] = p
	waitDone(t, c, steps)
	rb := coordLines(t, c, from, "rolling back")
	if len(rb) != 1 {
		t.Fatalf("%d rollbacks after the shard restarted, want 1\n%s", len(rb), c.LogTail("coordinator", 40))
	}
	if ck := num(t, rb[0], "to_step"); ck != every {
		t.Fatalf("rolled back to %d, want the checkpoint at %d", ck, every)
	}
	vs, _ := rb[0]["shard_versions"].([]any)
	if len(vs) != 2 {
		t.Fatalf("shard versions at the rollback %v", vs)
	}
	if v0, _ := vs[0].(float64); vs[1] != float64(every) || v0 <= every {
		t.Fatalf("shard versions at the rollback %v: want shard 1 back at %d and shard 0 ahead", vs, every)
	}
	// The steps after the checkpoint were committed again.
	redone := map[int64]bool{}
	for _, f := range coordLines(t, c, from, "step committed") {
		redone[num(t, f, "step")] = true
	}
	for s := int64(every); s < steps; s++ {
		if !redone[s] {
			t.Fatalf("step %d not committed after the rollback", s)
		}
	}
}

// TestKillAndRestartTheCoordinator kills the coordinator mid-run and starts
// it again on the same directory: it resumes from its commit log at the step
// where it died (it does not start over), the shards and workers re-join it,
// and it commits exactly the remaining steps.
func TestKillAndRestartTheCoordinator(t *testing.T) {
	const steps = 40
	c, l, ctx := startFaultRun(t, 2, 0, 2, steps, 5) // localCluster's checkpoint cadence
	waitStep(t, c, 6)
	kill(t, c.Coord)
	atKill := int64(len(commitLog(t, c))) // only the coordinator appends
	if atKill >= steps {
		t.Fatalf("the run was done (%d steps) when the coordinator died: the kill did not land mid-run", atKill)
	}
	if n := len(coordLines(t, c, 0, "starting a new run")); n != 1 {
		t.Fatalf("%d new-run lines from the first coordinator", n)
	}
	from := coordLogSize(t, c)
	p, err := l.StartCoordinator(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	c.Coord = p
	waitDone(t, c, steps)
	if n := len(coordLines(t, c, from, "starting a new run")); n != 0 {
		t.Fatal("the restarted coordinator started a new run")
	}
	res := coordLines(t, c, from, "resuming from the commit log")
	if len(res) != 1 || num(t, res[0], "next_step") != atKill || num(t, res[0], "log_entries") != atKill {
		t.Fatalf("restarted coordinator: resume lines %v, want next_step = log_entries = %d", res, atKill)
	}
	var committed []int64
	for _, f := range coordLines(t, c, from, "step committed") {
		committed = append(committed, num(t, f, "step"))
	}
	if int64(len(committed)) != steps-atKill || committed[0] != atKill {
		t.Fatalf("the restarted coordinator committed steps %v, want %d..%d", committed, atKill, steps-1)
	}
}
