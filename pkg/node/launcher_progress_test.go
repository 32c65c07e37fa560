package node

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/statuspage"
	"github.com/logitpair/logitpair/pkg/train"
)

// statusJSON is the coordinator's /status.json for a snapshot: the run at
// step 450 of 1000, 2.5 steps/s, and three committed steps (one without
// an adversarial batch: NaN, null in JSON).
func statusJSON(t *testing.T, phase string) []byte {
	t.Helper()
	nan := math.NaN()
	snap := statuspage.Snapshot{Time: time.Now(), StepRate: 2.5,
		Run: statuspage.Run{Phase: phase, Step: 450, Steps: 1000, LastCheckpoint: 400, LiveWorkers: 3, Workers: 4, Reason: "waiting for 3 workers"},
		History: []statuspage.Point{
			{Step: 447, Terms: statuspage.Terms{Loss: 0.9, CleanAcc: 0.5, AdvAcc: 0.1}},
			{Step: 448, Terms: statuspage.Terms{Loss: 0.5, CleanAcc: 0.9, AdvAcc: 0.6}},
			{Step: 449, Terms: statuspage.Terms{Loss: 0.3, CleanAcc: 0.7, AdvAcc: nan}},
		}}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSummaryLine: the summary reads the coordinator's JSON: step/total,
// its rate, the mean terms of the steps after the last summary, elapsed,
// ETA (550 steps at 2.5/s), live workers and the checkpoint.
func TestSummaryLine(t *testing.T) {
	var st clusterStatus
	if err := json.Unmarshal(statusJSON(t, statuspage.PhaseRunning), &st); err != nil {
		t.Fatal(err)
	}
	got := summaryLine(st, 447, 3*time.Minute)
	want := "progress: step 450/1000 (45%)  2.50 steps/s  loss 0.4000  clean acc 80.00%  adv acc 60.00%  elapsed 3m00s  ETA 3m40s  [3/4 workers live, checkpoint at step 400]"
	if got != want {
		t.Fatalf("summary\n%q, want\n%q", got, want)
	}
	// Nothing new since the last summary: the newest step's terms.
	if got := summaryLine(st, 449, 0); !strings.Contains(got, "loss 0.3000  clean acc 70.00%  elapsed") {
		t.Fatalf("summary %q", got)
	}
	if err := json.Unmarshal(statusJSON(t, statuspage.PhasePaused), &st); err != nil {
		t.Fatal(err)
	}
	if got := summaryLine(st, 0, time.Minute); !strings.Contains(got, "ETA ?") || !strings.HasSuffix(got, "paused: waiting for 3 workers") {
		t.Fatalf("paused summary %q", got)
	}
}

// lockedBuffer is a bytes.Buffer safe for the progress goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lockedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReportProgressAndAddresses: Run's summary loop polls the
// coordinator's /status.json (here a test server) and prints summaries;
// the start lines name the status page and the metrics.
func TestReportProgressAndAddresses(t *testing.T) {
	body := statusJSON(t, statuspage.PhaseRunning)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status.json" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var out lockedBuffer
	cfg := train.DefaultConfig()
	cfg.Steps = 1000
	c := &Cluster{L: LocalCluster{Dir: "/runs/x", Out: &out, ProgressEvery: 5 * time.Millisecond, Train: cfg},
		Coord: &Proc{Addr: Addrs{HTTP: addr}}, PS: []*Proc{{Addr: Addrs{HTTP: "127.0.0.1:9"}}, nil}}
	lines := strings.Join(c.addressLines(), "\n")
	for _, want := range []string{"status page: http://" + addr + "/ (JSON: http://" + addr + "/status.json); coordinator metrics: http://" + addr + "/metrics",
		"shard metrics: ps-0 http://127.0.0.1:9/metrics", "/runs/x/addr/*.json"} {
		if !strings.Contains(lines, want) {
			t.Errorf("address lines lack %q:\n%s", want, lines)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.reportProgress(ctx, time.Now()) }()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "progress: step 450/1000") < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	got := out.String()
	if n := strings.Count(got, "\n"); n < 2 || strings.Count(got, "progress: step 450/1000 (45%)  2.50 steps/s") != n {
		t.Fatalf("summaries:\n%s", got)
	}
	// The second summary has no new step: the newest one's terms.
	if second := strings.Split(got, "\n")[1]; !strings.Contains(second, "loss 0.3000") {
		t.Fatalf("second summary %q", second)
	}
}
