package node

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/metrics"
)

// get fetches url with a bounded client and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestHTTPEndpointMetricsHealthReadiness(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg := metrics.NewRegistry()
	m, err := metrics.NewCoordinator(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.SetRunSteps(123)
	var ready atomic.Bool
	extra := map[string]http.Handler{"/": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "status page") })}
	hs, err := startHTTP(ctx, "127.0.0.1:0", reg, ready.Load, extra, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hs.Close)
	base := "http://" + hs.Addr()
	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready: %d, want 503", code)
	}
	ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz once ready: %d, want 200", code)
	}
	code, body := get(t, base+"/metrics")
	for _, want := range []string{"logitpair_run_steps 123", "go_goroutines", "process_cpu_seconds_total", "promhttp_metric_handler_requests_total"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
	if code, body := get(t, base+"/"); code != 200 || body != "status page" {
		t.Errorf("extra handler at /: %d %q", code, body)
	}

	// Ending the context stops the server.
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := &http.Client{Timeout: time.Second}
		resp, err := c.Get(base + "/healthz")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("the HTTP server still answers after its context ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	hs.Close() // idempotent
}

func TestHTTPEndpointDisabledAndBadAddress(t *testing.T) {
	reg := metrics.NewRegistry()
	hs, err := startHTTP(context.Background(), "", reg, nil, nil, zap.NewNop())
	if err != nil || hs != nil {
		t.Fatalf("empty address: %v %v, want disabled", hs, err)
	}
	if hs.Addr() != "" {
		t.Error("a disabled endpoint has an address")
	}
	hs.Close() // a nil server's Close does nothing
	for _, addr := range []string{"9400", "localhost", "127.0.0.1:notaport"} {
		if _, err := startHTTP(context.Background(), addr, reg, nil, nil, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "--http-listen") {
			t.Errorf("address %q: %v, want an error naming --http-listen", addr, err)
		}
	}
}
