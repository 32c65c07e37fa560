package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/data/datatest"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/train"
)

// TestPaperLayoutOverGRPC (issue 12, item 4): `coordinator --workers=53
// --backups=3 --ps=17` with madry-mnist over real gRPC and gossip on
// loopback — every process a goroutine of this test — completes its steps
// with the machine oversubscribed (4 busy processes per core running
// beside it, so gossip probes miss their deadlines), each step averaging
// exactly 50 workers' gradients: gossip's suspicions alone never drop a
// worker whose pushes arrive.
func TestPaperLayoutOverGRPC(t *testing.T) {
	if testing.Short() {
		t.Skip("71 members")
	}
	const workers, backups, ps, steps = 53, 3, 17, 12
	oversubscribe(t, 4*runtime.NumCPU())
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "mnist")
	os.MkdirAll(dataDir, 0o755)
	datatest.WriteMNIST(t, dataDir, 64, 1)
	sec, _ := NewSecrets()
	common := Common{JoinToken: sec.JoinToken, GossipKey: sec.GossipKey, GossipBind: "127.0.0.1:0", GossipFast: true}
	tc := train.DefaultConfig()
	tc.DataDir, tc.ModelConfig = dataDir, models.Config{"conv1": 2, "conv2": 4, "hidden": 16} // madry-mnist, narrow
	tc.Objective, tc.AttackSteps, tc.StepSize, tc.Batch = "alp", 1, 0.1, 2
	tc.Steps, tc.CheckpointEvery, tc.LogEvery, tc.Out = steps, 3, 1, filepath.Join(dir, "coordinator")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a hang guard on an oversubscribed machine
	defer cancel()
	logBuf := &syncBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(logBuf), zapcore.InfoLevel))
	defer func() {
		if t.Failed() {
			t.Logf("last log lines:\n%s", logBuf.tail(60))
		}
	}()
	co := CoordinatorOptions{Common: common, Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "coordinator"),
		Workers: workers, Backups: backups, PS: ps, Train: tc}
	co.AddrFile = filepath.Join(dir, "coordinator.json")
	coordDone := make(chan error, 1)
	go func() { coordDone <- RunCoordinator(ctx, co, log) }()
	var addr Addrs
	for addr.GRPC == "" {
		select {
		case err := <-coordDone:
			t.Fatalf("coordinator stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("coordinator did not start")
		case <-time.After(20 * time.Millisecond):
			addr, _ = ReadAddrs(co.AddrFile)
		}
	}
	member := common
	member.GossipJoin = addr.Gossip
	pctx, pcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, ps+workers)
	for k := 0; k < ps; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := ParamServerOptions{Common: member, Coordinator: addr.GRPC, Listen: "127.0.0.1:0", Dir: filepath.Join(dir, fmt.Sprintf("ps-%d", k)), Index: k}
			if err := RunParamServer(pctx, o, log); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("ps %d: %w", k, err)
			}
		}()
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := WorkerOptions{Common: member, Coordinator: addr.GRPC, Slot: w, Threads: 1}
			if err := RunWorker(pctx, o, log); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("worker %d: %w", w, err)
			}
		}()
	}
	select {
	case err := <-coordDone:
		if err != nil {
			t.Fatal(err)
		}
	case err := <-errs:
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatal("the run did not finish within the deadline")
	}
	pcancel()
	wg.Wait()
	l, err := paramserver.OpenFileLog(filepath.Join(co.Dir, "commit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	es, _ := l.Entries()
	if len(es) != steps {
		t.Fatalf("%d log entries for %d steps", len(es), steps)
	}
	for _, e := range es {
		if len(e.Workers) != workers-backups {
			t.Fatalf("step %d averaged %d workers, want %d", e.Step, len(e.Workers), workers-backups)
		}
	}
	if s, ok, _ := FileCheckpointsOf(co.Dir); !ok || s != steps {
		t.Fatalf("final checkpoint %d %v", s, ok)
	}
	logBuf.mu.Lock()
	suspected := strings.Count(string(logBuf.buf), "gossip suspects a worker")
	dropped := strings.Count(string(logBuf.buf), "worker dropped")
	logBuf.mu.Unlock()
	// A worker gossip suspected is dropped only when it also missed steps
	// (a step blocked on it for 3 step times); a dropped worker that was
	// alive joins its slot again, and the steps above still averaged 50.
	t.Logf("gossip suspected a worker %d times; %d were dropped after also missing steps", suspected, dropped)
}

// oversubscribe runs n busy processes beside the test until it ends.
func oversubscribe(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting a busy process: %v", err)
		}
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		})
	}
}

// syncBuffer collects log lines from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// tail returns the last n lines.
func (b *syncBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.Split(strings.TrimRight(string(b.buf), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
