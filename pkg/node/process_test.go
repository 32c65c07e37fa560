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
// LocalCluster, injures it, and checks that the run reaches its step count
// with exactly one commit-log entry per step of the final history.

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
// checkpoint and the commit log: one entry per step 0..steps-1.
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
	l, err := paramserver.OpenFileLog(filepath.Join(c.L.Dir, "coordinator", "commit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	es, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(es)) != steps {
		t.Fatalf("commit log has %d entries for %d steps", len(es), steps)
	}
	for i, e := range es {
		if e.Step != int64(i) || len(e.Workers) != c.L.Workers-c.L.Backups {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
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
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the run did not reach step %d\n%s", n, c.LogTail("coordinator", 30))
}

func TestKillAWorkerTrainingGoesOnThroughTheBackup(t *testing.T) {
	l := localCluster(t, 3, 1, 2, 20)
	c, err := l.Start(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(10 * time.Second)
	waitStep(t, c, 4)
	checkStatusPage(t, c)
	c.Workers[1].Kill()
	waitDone(t, c, 20)
}

// checkStatusPage reads the coordinator's status page and its JSON from the
// process's HTTP port, as an operator's browser would.
func checkStatusPage(t *testing.T, c *Cluster) {
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
	if st.Run.Step < 4 || st.Run.Steps != 20 || len(st.Members) < 3+2 {
		t.Fatalf("/status.json: %+v, want step ≥ 4 of 20 and 3 workers + 2 shards", st)
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

func TestKillAParameterServerRollsBackAndGoesOn(t *testing.T) {
	l := localCluster(t, 2, 0, 2, 20)
	ctx := testCtx(t)
	c, err := l.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(10 * time.Second)
	waitStep(t, c, 8) // past the checkpoint at 5
	c.PS[1].Kill()
	_ = c.PS[1].Wait(10 * time.Second)
	time.Sleep(500 * time.Millisecond) // the cluster pauses on the dead shard
	p, err := l.StartPS(ctx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.PS[1] = p
	waitDone(t, c, 20)
}

func TestKillAndRestartTheCoordinator(t *testing.T) {
	l := localCluster(t, 2, 0, 2, 20)
	ctx := testCtx(t)
	c, err := l.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(10 * time.Second)
	waitStep(t, c, 6)
	c.Coord.Kill()
	_ = c.Coord.Wait(10 * time.Second)
	p, err := l.StartCoordinator(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	c.Coord = p
	waitDone(t, c, 20)
}
