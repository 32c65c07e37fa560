package statuspage

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, method, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	res := rec.Result()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func newTestHandler(t *testing.T, src Source) *Handler {
	t.Helper()
	h, err := NewHandler(src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestNewHandlerRejectsBadInput(t *testing.T) {
	if _, err := NewHandler(nil, Options{}); err == nil || !strings.Contains(err.Error(), "Source") {
		t.Fatalf("nil source: %v", err)
	}
	src := SourceFunc(func() Snapshot { return Snapshot{} })
	if _, err := NewHandler(src, Options{Refresh: 10 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "refresh") {
		t.Fatalf("10ms refresh: %v", err)
	}
}

func TestStatusJSON(t *testing.T) {
	src := newFakeSource(t, 50)
	h := newTestHandler(t, src)
	res, body := get(t, h, http.MethodGet, "/status.json")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q: %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	var got struct {
		Time time.Time `json:"time"`
		Run  struct {
			Phase                                   string
			Step, Steps, Generation, LastCheckpoint int64
			Required, LiveWorkers, Workers, Backups int
			DroppedBackup, DroppedStale             int64
		}
		Members []struct {
			Role, Name, Address string
			Slot                int
			Alive               bool
			LastStep            int64      `json:"last_step"`
			LastSeen            *time.Time `json:"last_seen"`
		}
		StepRate   float64 `json:"step_rate"`
		RateWindow float64 `json:"rate_window"`
		History    []map[string]any
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	// encoding/json matches snake_case keys case-insensitively only without
	// underscores: check those keys literally.
	for _, key := range []string{`"restarts":1`, `"rollbacks":1`, `"last_checkpoint":200`, `"live_workers":3`, `"dropped_backup":50`, `"dropped_stale":2`, `"rate_window":30`} {
		if !strings.Contains(body, key) {
			t.Errorf("status.json lacks %s", key)
		}
	}
	if got.Run.Phase != PhaseRunning || got.Run.Step != 50 || got.Run.Steps != 1000 || got.Run.Required != 3 || got.Run.Workers != 4 {
		t.Errorf("run %+v", got.Run)
	}
	if len(got.Members) != 6 || got.Members[1].Name != hostileName || got.Members[3].Alive || got.Members[3].LastSeen != nil ||
		got.Members[4].Role != RoleShard || got.Members[4].Address != "127.0.0.1:40001" {
		t.Errorf("members %+v", got.Members)
	}
	if got.StepRate <= 0 || got.RateWindow != 30 {
		t.Errorf("step rate %v over %v s", got.StepRate, got.RateWindow)
	}
	if len(got.History) != 50 {
		t.Fatalf("%d history points, want 50", len(got.History))
	}
	first, last := got.History[0], got.History[49]
	// Step 0 has no adversarial terms: null, not NaN (invalid JSON).
	if first["step"] != 0.0 || first["adv_ce"] != nil || first["pair"] != nil || first["clean_ce"] == nil || first["reports"] != 3.0 {
		t.Errorf("first point %v", first)
	}
	if last["step"] != 49.0 || last["adv_ce"] == nil || last["adv_acc"] == nil || last["dropped_backup"] != 50.0 {
		t.Errorf("last point %v", last)
	}
	want := src.hist.Points()[49]
	if v := last["loss"].(float64); math.Abs(v-want.Loss) > 1e-12 {
		t.Errorf("loss %v, want %v", v, want.Loss)
	}

	_, body = get(t, h, http.MethodGet, "/status.json?history=2")
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.History) != 2 || got.History[1]["step"] != 49.0 {
		t.Errorf("?history=2: %v", got.History)
	}
	res, body = get(t, h, http.MethodGet, "/status.json?history=-1")
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "history") {
		t.Errorf("?history=-1: %d %s", res.StatusCode, body)
	}

	// An empty snapshot has arrays, not nulls.
	_, body = get(t, newTestHandler(t, SourceFunc(func() Snapshot { return Snapshot{StepRate: math.NaN()} })), http.MethodGet, "/status.json")
	if !strings.Contains(body, `"members":[]`) || !strings.Contains(body, `"history":[]`) || !strings.Contains(body, `"step_rate":0`) {
		t.Errorf("empty snapshot: %s", body)
	}
}

func TestPageEscapesAndShowsState(t *testing.T) {
	src := newFakeSource(t, 300)
	snap := src.Snapshot()
	hostile := SourceFunc(func() Snapshot {
		s := snap
		s.Run.Paused, s.Run.Phase = true, PhasePaused
		s.Run.Reason = `<b id="injected">2 live workers</b>, 3 needed`
		s.Members = append([]Member(nil), s.Members...)
		s.Members[4].Address = `"><script>alert(1)</script>`
		return s
	})
	h := newTestHandler(t, hostile)
	res, body := get(t, h, http.MethodGet, "/")
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, bad := range []string{"<script>document.title", "<img src=x", `<b id="injected">`, "<script>alert(1)"} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains unescaped %q", bad)
		}
	}
	for _, want := range []string{
		"&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;",
		"&lt;b id=&#34;injected&#34;&gt;2 live workers&lt;/b&gt;, 3 needed",
		`id="step">300 / 1000<`,
		`id="phase" class="badge phase-paused"`,
		`id="checkpoint">step 200<`,
		`id="dropped">300 backup · 2 stale<`,
		`id="workers">3 live / 3 required<`,
		`data-role="worker" data-slot="3" data-alive="false"`,
		`<td class="st-free">free</td>`,
		`<td>shard</td><td>1</td><td class="name" title="ps-1-4101">ps-1-4101</td><td>127.0.0.1:40002</td>`,
		`id="chart-loss"`, `id="chart-acc"`, `data-points="300"`,
		"2.0s ago",
		// The generation as the counts it encodes; labelled axes;
		// accuracies in percent.
		`restarts <span id="restarts">1</span> · rollbacks <span id="rollbacks">1</span>`,
		`class="axis-title x-title"`, `>step</text>`, `>loss</text>`, `>accuracy (%)</text>`, `>100</text>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, ">8589934593<") || strings.Contains(body, ">generation ") {
		t.Error("the page shows the raw generation number")
	}
	if n := strings.Count(body, `class="axis-title x-title"`); n != 2 {
		t.Errorf("%d charts with an x-axis title, want 2", n)
	}
	// Only the page's own script runs; no external asset is referenced.
	if n := strings.Count(body, "<script"); n != 1 {
		t.Errorf("%d script elements, want 1", n)
	}
	for _, ext := range []string{"<link", "<img", "<iframe", ` src="`, `href="http`, "@import", "url(", "https://"} {
		if strings.Contains(body, ext) {
			t.Errorf("page references an external asset (%q)", ext)
		}
	}
	// The CSP names the hashes of exactly the inline style and script the
	// page carries.
	csp := res.Header.Get("Content-Security-Policy")
	for _, re := range []string{`<style>([\s\S]*?)</style>`, `<script>([\s\S]*?)</script>`} {
		m := regexp.MustCompile(re).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no match for %s", re)
		}
		sum := sha256.Sum256([]byte(m[1]))
		if hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, hash) {
			t.Errorf("CSP %q lacks the inline block's hash %s", csp, hash)
		}
	}
	// The curves: one path per series, with vertices.
	for _, name := range []string{"total loss", "clean CE", "adversarial CE", "pairing term", "clean accuracy", "adversarial accuracy"} {
		m := regexp.MustCompile(`data-series="` + name + `" data-vertices="(\d+)" d="M[^"]* L[^"]*"`).FindStringSubmatch(body)
		if m == nil {
			t.Errorf("no path for %q", name)
		}
	}
}

func TestPageWithoutData(t *testing.T) {
	h := newTestHandler(t, SourceFunc(func() Snapshot {
		return Snapshot{Run: Run{Phase: PhaseStarting, Steps: 10}}
	}))
	_, body := get(t, h, http.MethodGet, "/")
	for _, want := range []string{"no committed steps yet", "no members", `id="checkpoint">none yet<`, `id="step-rate">–<`} {
		if !strings.Contains(body, want) {
			t.Errorf("empty page lacks %q", want)
		}
	}
	if strings.Contains(body, `<path`) {
		t.Error("empty page draws a curve")
	}
}

func TestHandlerRoutes(t *testing.T) {
	h := newTestHandler(t, newFakeSource(t, 3))
	if res, body := get(t, h, http.MethodGet, "/nope"); res.StatusCode != http.StatusNotFound || !strings.Contains(body, "/nope") {
		t.Errorf("/nope: %d %s", res.StatusCode, body)
	}
	if res, _ := get(t, h, http.MethodPost, "/"); res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d", res.StatusCode)
	}
	if res, _ := get(t, h, http.MethodHead, "/status.json"); res.StatusCode != http.StatusOK {
		t.Errorf("HEAD /status.json: %d", res.StatusCode)
	}
	// Mounted below a prefix.
	mux := http.NewServeMux()
	mux.Handle("/status/", http.StripPrefix("/status", h))
	if res, body := get(t, mux, http.MethodGet, "/status/"); res.StatusCode != http.StatusOK || !strings.Contains(body, `id="step"`) {
		t.Errorf("/status/: %d", res.StatusCode)
	}
	if res, _ := get(t, mux, http.MethodGet, "/status/status.json"); res.StatusCode != http.StatusOK {
		t.Errorf("/status/status.json: %d", res.StatusCode)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 850 * time.Millisecond: "850ms", 4200 * time.Millisecond: "4.2s",
		190 * time.Second: "3m10s", 2*time.Hour + 5*time.Minute: "2h05m",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
