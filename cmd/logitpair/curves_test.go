package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/data/datatest"
	"github.com/logitpair/logitpair/pkg/history"
)

// TestTrainHistoryAndPlot: train appends its history to --out (a resume
// appends, starting with a start record at the step it resumed from), and
// plot draws it.
func TestTrainHistoryAndPlot(t *testing.T) {
	dataDir, out, args := tinyALPRun(t)
	if _, err := run(t, append(args, "--steps", "2")...); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, append(args, "--steps", "4", "--resume")...); err != nil {
		t.Fatal(err)
	}
	recs, notes, err := history.ReadFile(filepath.Join(out, history.FileName))
	if err != nil || len(notes) > 0 {
		t.Fatalf("%v, notes %q", err, notes)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Kind+"@"+strconv.FormatInt(r.Step, 10))
	}
	if want := []string{"start@0", "train@2", "validation@2", "start@2", "train@4", "validation@4"}; !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	if r := recs[1]; r.Loss == nil || r.AdvAcc == nil || r.LR == nil || r.SamplesPerSec == nil || r.Interval != 2 {
		t.Errorf("train record %+v", r)
	}
	png := filepath.Join(t.TempDir(), "png")
	text, err := run(t, "plot", out, "--out", png)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{history.LossPNG, history.AccuracyPNG, history.ValidationPNG} {
		if !strings.Contains(text, filepath.Join(png, f)) {
			t.Errorf("plot did not name %s:\n%s", f, text)
		}
		if fi, err := os.Stat(filepath.Join(png, f)); err != nil || fi.Size() < 1000 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := run(t, "plot", dataDir); err == nil || !strings.Contains(err.Error(), "has no history.jsonl") {
		t.Errorf("plot of a directory without a history: %v", err)
	}
	// --force starts the history over.
	if _, err := run(t, append(args, "--steps", "2", "--force")...); err != nil {
		t.Fatal(err)
	}
	if recs, _, _ := history.ReadFile(filepath.Join(out, history.FileName)); len(recs) != 3 {
		t.Errorf("after --force the history holds %d records, want 3", len(recs))
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader on two
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTrainHTTPListen: train --http-listen 127.0.0.1:0 prints the address
// it bound and serves there, while it trains, /metrics with the step, the
// loss and the sentinel's series, and the status page (HTML and JSON).
func TestTrainHTTPListen(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "mnist")
	os.MkdirAll(dataDir, 0o755)
	datatest.WriteMNIST(t, dataDir, 40, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newRootCmd()
	var stdout, stderr syncBuffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"train", "--dataset", "mnist", "--data-dir", dataDir, "--model-config", `{"conv1": 2, "conv2": 2, "hidden": 8}`,
		"--objective", "alp", "--attack-steps", "1", "--batch", "4", "--threads", "1", "--log-every", "1", "--steps", "100000",
		"--out", filepath.Join(dir, "run"), "--sentinel-every", "1000", "--http-listen", "127.0.0.1:0"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	re := regexp.MustCompile(`serving /metrics and the status page on (http://127\.0\.0\.1:\d+/)`)
	var base string
	deadline := time.Now().Add(2 * time.Minute)
	for base == "" {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("train stopped before serving: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address printed:\n%s", stderr.String())
		}
	}
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, b)
		}
		return string(b)
	}
	// Wait for two steps.
	stepRe := regexp.MustCompile(`(?m)^logitpair_step (\d+)$`)
	var metrics string
	for {
		metrics = get("metrics")
		if m := stepRe.FindStringSubmatch(metrics); m != nil {
			if n, _ := strconv.Atoi(m[1]); n >= 2 {
				break
			}
		} else {
			t.Fatalf("/metrics has no logitpair_step:\n%s", metrics)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the step stayed below 2:\n%s", metrics)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{`logitpair_run_steps 100000`, `logitpair_loss{slot="0"}`, `logitpair_adversarial_accuracy_ratio{slot="0"}`,
		`logitpair_steps_committed_total`, `logitpair_sentinel_lr_scale 1`, `logitpair_learning_rate`, `logitpair_samples_per_second`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	page := get("")
	for _, want := range []string{"<h1>logitpair train</h1>", `class="member" data-role="worker" data-slot="0" data-alive="true"`, `id="chart-loss"`, "Sentinel"} {
		if !strings.Contains(page, want) {
			t.Errorf("the status page lacks %s", want)
		}
	}
	if js := get("status.json"); !strings.Contains(js, `"phase":"running"`) || !strings.Contains(js, `"steps":100000`) {
		t.Errorf("status.json: %s", js)
	}
	cancel()
	select {
	case err := <-done:
		var ie *interruptedError
		if !errors.As(err, &ie) {
			t.Fatalf("after cancelling: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("train did not stop")
	}
	if _, err := http.Get(base + "metrics"); err == nil {
		t.Error("the endpoint still answers after the run stopped")
	}
}
