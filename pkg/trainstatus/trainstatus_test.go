package trainstatus

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/history"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/sentinel"
	"github.com/logitpair/logitpair/pkg/statuspage"
)

// fed is a Live fed as a trainer would: steps 0..n-1 of a falling loss and
// rising accuracies, a sentinel check at step 100 accepted.
func fed(t *testing.T, n int64) (*Live, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	sc := sentinel.DefaultConfig()
	sc.Every = 100
	st := sentinel.NewState()
	l, err := New(reg, 0, 1000, sc, &st)
	if err != nil {
		t.Fatal(err)
	}
	for s := range n {
		x := float64(s) / 1000
		l.Step(s, objective.Terms{Loss: 2.3*math.Exp(-3*x) + 0.3, CleanCE: 2.3 * math.Exp(-3.5*x), AdvCE: 2.3*math.Exp(-2*x) + 0.2, Pair: math.NaN(),
			CleanAcc: 0.1 + 0.8*(1-math.Exp(-5*x)), AdvAcc: 0.1 + 0.4*(1-math.Exp(-4*x))})
		if s+1 == 100 {
			r := sentinel.Result{Step: 100, Clean: 0.8, SingleStep: 0.45, MultiStep: 0.4, Examples: 200}
			v, err := st.Observe(sc, r)
			if err != nil {
				t.Fatal(err)
			}
			l.Record(history.Record{Kind: history.KindSentinel, Step: 100}, st)
			_ = v
			l.Checkpointed(100)
		}
	}
	l.Record(history.Record{Kind: history.KindTrain, Step: n, LR: history.Float(0.001), SamplesPerSec: history.Float(640)}, st)
	return l, reg
}

// TestSnapshot: a single-process run is one live worker (slot 0), no
// shards, every step committed; the sentinel's state is the trainer's.
func TestSnapshot(t *testing.T) {
	l, _ := fed(t, 150)
	s := l.Snapshot()
	if s.Run.Step != 150 || s.Run.Steps != 1000 || s.Run.Phase != statuspage.PhaseRunning || s.Run.LiveWorkers != 1 || s.Run.Required != 1 || s.Run.LastCheckpoint != 100 {
		t.Errorf("run %+v", s.Run)
	}
	if len(s.Members) != 1 || s.Members[0].Role != statuspage.RoleWorker || !s.Members[0].Alive || s.Members[0].LastStep != 149 {
		t.Errorf("members %+v", s.Members)
	}
	if len(s.History) != 150 || s.History[149].Step != 149 || s.History[0].Reports != 1 || !math.IsNaN(s.History[0].Pair) {
		t.Errorf("history: %d points, last %+v", len(s.History), s.History[len(s.History)-1])
	}
	if sn := s.Sentinel; sn == nil || sn.Every != 100 || sn.LastGood != 100 || sn.Last == nil || sn.Last.MultiStep != 0.4 {
		t.Errorf("sentinel %+v", sn)
	}
	l.Done()
	if l.Snapshot().Run.Phase != statuspage.PhaseDone {
		t.Error("not done after Done")
	}
	// A rollback sets the step back.
	l.Record(history.Record{Kind: history.KindRollback, Step: 100, From: 150}, sentinel.State{Rollbacks: 1, LRScale: 0.5, LastGood: 100})
	if s := l.Snapshot(); s.Run.Step != 100 || s.Sentinel.Rollbacks != 1 || s.Sentinel.LRScale != 0.5 {
		t.Errorf("after a rollback: step %d, sentinel %+v", s.Run.Step, s.Sentinel)
	}
}

// serve serves l on an OS-chosen 127.0.0.1 port (Serve).
func serve(t *testing.T, l *Live, reg *prometheus.Registry) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	hs, err := l.Serve(ctx, "127.0.0.1:0", reg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); hs.Close() })
	return "http://" + hs.Addr() + "/"
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}

func TestServe(t *testing.T) {
	l, reg := fed(t, 150)
	base := serve(t, l, reg)
	m := get(t, base+"metrics")
	for _, want := range []string{"logitpair_step 150\n", "logitpair_run_steps 1000\n", "logitpair_steps_committed_total 150\n",
		`logitpair_reported_step{slot="0"} 149`, `logitpair_loss_nan_total{slot="0"} 0`, "logitpair_learning_rate 0.001\n",
		"logitpair_samples_per_second 640\n", "logitpair_sentinel_lr_scale 1\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(m, `logitpair_pairing_loss{`) {
		t.Error("/metrics exports the pairing term the objective does not compute")
	}
	var s statuspage.Snapshot
	if err := json.Unmarshal([]byte(get(t, base+"status.json")), &s); err != nil || s.Run.Step != 150 {
		t.Errorf("status.json: %v, %+v", err, s.Run)
	}
	page := get(t, base)
	if !strings.Contains(page, "<h1>logitpair train</h1>") || !strings.Contains(page, `id="chart-acc"`) || !strings.Contains(page, `id="sentinel"`) {
		t.Error("the status page lacks its title, charts or sentinel")
	}
	if strings.Contains(page, `id="dropped"`) || strings.Contains(page, `id="workers"`) {
		t.Error("the single-process page shows the cluster's cards")
	}
	if get(t, base+"readyz") != "ready\n" {
		t.Error("not ready")
	}
}

// TestChromiumScreenshot renders the single-process status page in
// headless Chromium (skipped without one, a failure with
// LOGITPAIR_REQUIRE_E2E=1) and checks the screenshot is a 1280×900 PNG that
// is not blank; LOGITPAIR_KEEP_SCREENSHOT=FILE keeps it.
func TestChromiumScreenshot(t *testing.T) {
	bin := ""
	for _, n := range []string{os.Getenv("LOGITPAIR_CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(n); n != "" && err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("LOGITPAIR_REQUIRE_E2E") == "1" {
			t.Fatal("no Chromium on PATH and LOGITPAIR_REQUIRE_E2E=1")
		}
		t.Skip("no Chromium on PATH")
	}
	l, reg := fed(t, 400)
	url := serve(t, l, reg)
	file := filepath.Join(t.TempDir(), "page.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+t.TempDir(),
		"--screenshot="+file, "--window-size=1280,900", "--hide-scrollbars", "--virtual-time-budget=1000", url)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if d := img.Bounds().Size(); d.X != 1280 || d.Y != 900 {
		t.Fatalf("screenshot is %v", d)
	}
	// Not blank: some pixels far from the background.
	dark := 0
	for y := 0; y < 900; y += 3 {
		for x := 0; x < 1280; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			if (r+g+b)/3 < 0x8000 {
				dark++
			}
		}
	}
	if dark < 200 {
		t.Errorf("the screenshot looks blank (%d dark pixels sampled)", dark)
	}
	if keep := os.Getenv("LOGITPAIR_KEEP_SCREENSHOT"); keep != "" {
		if err := os.WriteFile(keep, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
