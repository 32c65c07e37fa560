package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireProgram returns the path of an external program, skipping the test
// when it is absent, unless LOGITPAIR_REQUIRE_E2E=1 (CI), where it fails.
func requireProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("LOGITPAIR_REQUIRE_E2E") == "1" {
		t.Fatalf("%s is not on PATH and LOGITPAIR_REQUIRE_E2E=1 (Debian: apt-get install %s)", name, name)
	}
	t.Skipf("%s is not on PATH (Debian: apt-get install %s); set LOGITPAIR_REQUIRE_E2E=1 to make this a failure", name, name)
	return ""
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// promQuery runs an instant query against Prometheus's HTTP API and returns
// the vector's samples (labels and value).
func promQuery(base, q string) ([]promSample, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s: %s", q, r.Status, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %q, want vector", q, r.Data.ResultType)
	}
	out := make([]promSample, 0, len(r.Data.Result))
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v: %w", q, s.Value[1], err)
		}
		out = append(out, promSample{Labels: s.Metric, Value: v})
	}
	return out, nil
}

type promSample struct {
	Labels map[string]string
	Value  float64
}

// TestMetricsScrapedByPrometheus starts a local cluster (2 workers, 1
// shard) and a real Prometheus scraping every process's /metrics each
// second with the repository's alert rules loaded, then queries Prometheus
// until it has the global step above 0, a loss series and the shard's
// applied-gradient counter, and every alert rule evaluates without error.
func TestMetricsScrapedByPrometheus(t *testing.T) {
	prom := requireProgram(t, "prometheus")
	l := localCluster(t, 2, 0, 1, 100000) // stopped by the test once Prometheus has seen enough
	l.Train.CheckpointEvery = 25
	ctx := testCtx(t)
	c, err := l.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(10 * time.Second) })

	// Every process announces its HTTP endpoint and answers /healthz and,
	// once serving, /readyz.
	procs := append(append([]*Proc{c.Coord}, c.PS...), c.Workers...)
	for _, p := range procs {
		if p.Addr.HTTP == "" {
			t.Fatalf("%s announced no HTTP address: %+v", p.Name, p.Addr)
		}
		if code, _ := get(t, "http://"+p.Addr.HTTP+"/healthz"); code != 200 {
			t.Errorf("%s /healthz: %d", p.Name, code)
		}
	}
	waitStep(t, c, 1)
	for _, p := range procs {
		deadline := time.Now().Add(time.Minute)
		for {
			code, _ := get(t, "http://"+p.Addr.HTTP+"/readyz")
			if code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s /readyz still %d while the run is training", p.Name, code)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	_, file, _, _ := runtime.Caller(0)
	rules := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "prometheus", "alerts.yml")
	dir := t.TempDir()
	targets := func(ps []*Proc) string {
		var q []string
		for _, p := range ps {
			q = append(q, strconv.Quote(p.Addr.HTTP))
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: coordinator
    static_configs: [{targets: %s}]
  - job_name: paramserver
    static_configs: [{targets: %s}]
  - job_name: worker
    static_configs: [{targets: %s}]
`, strconv.Quote(rules), targets([]*Proc{c.Coord}), targets(c.PS), targets(c.Workers))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var plog bytes.Buffer
	cmd := exec.Command(prom, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &plog, &plog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	// Poll (bounded) until every check holds at once.
	checks := []struct {
		what string
		q    string
		ok   func([]promSample) bool
	}{
		{"the global step above 0", `logitpair_step{job="coordinator"}`, func(s []promSample) bool { return len(s) == 1 && s[0].Value > 0 }},
		{"a loss series per worker slot on the coordinator", `logitpair_loss{job="coordinator"}`, func(s []promSample) bool { return len(s) == 2 }},
		{"the workers' own loss series", `logitpair_loss{job="worker"}`, func(s []promSample) bool { return len(s) == 2 }},
		{"shard 0's applied gradients", `logitpair_shard_gradients_applied_total{job="paramserver",shard="0"}`, func(s []promSample) bool { return len(s) == 1 && s[0].Value > 0 }},
		{"pushed bytes on the workers", `sum(logitpair_worker_push_bytes_total)`, func(s []promSample) bool { return len(s) == 1 && s[0].Value > 0 }},
		{"step durations", `logitpair_step_duration_seconds_count`, func(s []promSample) bool { return len(s) == 1 && s[0].Value > 0 }},
		{"live = required workers", `logitpair_live_workers - logitpair_required_workers`, func(s []promSample) bool { return len(s) == 1 && s[0].Value == 0 }},
		{"every target up", `up`, func(s []promSample) bool {
			for _, x := range s {
				if x.Value != 1 {
					return false
				}
			}
			return len(s) == len(procs)
		}},
	}
	deadline := time.Now().Add(2 * time.Minute)
	var last string
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("prometheus exited: %v\n%s", err, plog.String())
		default:
		}
		last = ""
		for _, ch := range checks {
			s, err := promQuery(base, ch.q)
			if err != nil {
				last = err.Error()
				break
			}
			if !ch.ok(s) {
				last = fmt.Sprintf("not yet %s: %s = %+v", ch.what, ch.q, s)
				break
			}
		}
		if last == "" {
			step, _ := promQuery(base, `logitpair_step`)
			applied, _ := promQuery(base, `logitpair_shard_gradients_applied_total`)
			t.Logf("Prometheus sees step %+v, applied gradients %+v", step, applied)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus did not get the cluster's metrics within 2 minutes; last: %s\nprometheus log:\n%s\ncoordinator log:\n%s", last, plog.String(), c.LogTail("coordinator", 20))
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The alert rules load and evaluate against the live series without
	// error (a rule's health is "unknown" until its first evaluation).
	deadline = time.Now().Add(time.Minute)
	for {
		n, bad, err := ruleHealth(base)
		if err == nil && bad == "" && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert rules (%d): %v %s", n, err, bad)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// ruleHealth returns the number of rules Prometheus loaded and the first
// one whose health is not "ok".
func ruleHealth(base string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/api/v1/rules")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, "", err
	}
	n := 0
	for _, g := range r.Data.Groups {
		for _, rule := range g.Rules {
			n++
			if rule.Health != "ok" {
				return n, fmt.Sprintf("%s: health %q %s", rule.Name, rule.Health, rule.LastError), nil
			}
		}
	}
	return n, "", nil
}
