package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/worker"
)

// These tests keep deploy/prometheus and deploy/grafana in step with the
// code: every metric name their expressions use must be registered by this
// package, and promtool must accept the configuration, the rules (and pass
// their unit tests) and the PromQL of every dashboard panel.

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// recorder is a Registerer that remembers the names of everything
// registered through it, and whether each is a histogram.
type recorder struct {
	prometheus.Registerer
	names map[string]bool // name → histogram
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	hist := false
	switch c.(type) {
	case prometheus.Histogram, *prometheus.HistogramVec:
		hist = true
	}
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			return fmt.Errorf("cannot read the name of %s", d)
		}
		r.names[m[1]] = hist
	}
	return r.Registerer.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// registeredNames returns every series name the package exports, with the
// _bucket, _sum and _count series of histograms.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	r := &recorder{Registerer: prometheus.NewRegistry(), names: map[string]bool{}}
	if _, err := NewCoordinator(r); err != nil {
		t.Fatal(err)
	}
	r2 := &recorder{Registerer: prometheus.NewRegistry(), names: r.names}
	if _, err := NewShard(r2, 0); err != nil {
		t.Fatal(err)
	}
	r3 := &recorder{Registerer: prometheus.NewRegistry(), names: r.names}
	if _, err := NewWorker(r3, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := NewAuth(&recorder{Registerer: prometheus.NewRegistry(), names: r.names}); err != nil {
		t.Fatal(err)
	}
	if err := (&recorder{Registerer: prometheus.NewRegistry(), names: r.names}).Register(NewBuildInfo(debug.ReadBuildInfo)); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLocal(&recorder{Registerer: prometheus.NewRegistry(), names: r.names}, 0, 1); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for n, hist := range r.names {
		if !strings.HasPrefix(n, Namespace+"_") {
			t.Errorf("metric %q lacks the %s_ prefix", n, Namespace)
		}
		if hist {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[n+s] = true
			}
		} else {
			out[n] = true
		}
	}
	return out
}

// TestRegisteredNamesAreComplete: the recorder sees the same names a
// registry exposes once every series exists (so registeredNames is not
// missing what a collector only describes lazily).
func TestRegisteredNamesAreComplete(t *testing.T) {
	names := registeredNames(t)
	reg := prometheus.NewRegistry()
	c, _ := NewCoordinator(reg)
	c.Report(1, 0, objective.Terms{Loss: 1, CleanCE: 1, AdvCE: 1, Pair: 1, CleanAcc: 1, AdvAcc: 1, LogitNorm: 1},
		worker.Timing{Attack: time.Second, Compute: time.Second, Comm: time.Second})
	c.SetStatusSource(func() coordinator.Status { return coordinator.Status{} })
	c.Committed(0)
	c.Committed(1)
	if _, err := NewAuth(reg); err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(NewBuildInfo(debug.ReadBuildInfo))
	s, _ := NewShard(reg, 0)
	s.SetStatsSource(func() paramserver.Stats { return paramserver.Stats{} }, nil)
	s.errs.WithLabelValues("push")
	wreg := prometheus.NewRegistry()
	w, _ := NewWorker(wreg, 0)
	ws := w.Shard(0, &fakeShard{n: 1})
	_, _, _ = ws.Pull(context.Background(), 0)
	_ = ws.Push(context.Background(), 0, 0, nil, nil)
	w.errs.WithLabelValues("0", "0", "pull")
	_, _, _ = w.Coordinator(fakeCoord{accept: true}).Report(context.Background(), 0, 0, objective.Terms{}, worker.Timing{Compute: time.Second})
	lreg := prometheus.NewRegistry()
	l, err := NewLocal(lreg, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	l.Step(0, objective.Terms{Loss: 1})
	l.Interval(0.1, 10)
	got := map[string]bool{}
	for _, g := range []prometheus.Gatherer{reg, wreg, lreg} {
		mfs, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			n := mf.GetName()
			if mf.GetType().String() == "HISTOGRAM" {
				n += "_count"
			}
			got[n] = true
		}
	}
	for n := range got {
		if !names[n] {
			t.Errorf("%s is exported but not recorded", n)
		}
	}
	for n := range names {
		if strings.HasSuffix(n, "_bucket") || strings.HasSuffix(n, "_sum") {
			continue
		}
		if !got[n] {
			t.Errorf("%s is recorded but never exported", n)
		}
	}
}

var (
	metricToken = regexp.MustCompile(`\blogitpair_[a-zA-Z0-9_]+`)
	// upSeries is Prometheus's own scrape-health series, up{job=~...}.
	upSeries = regexp.MustCompile(`(^|[^a-zA-Z0-9_])up\{`)
)

// checkNames reports every logitpair_ name in expr that the code does not
// register.
func checkNames(t *testing.T, where, expr string, names map[string]bool) {
	t.Helper()
	toks := metricToken.FindAllString(expr, -1)
	if len(toks) == 0 && !upSeries.MatchString(expr) {
		t.Errorf("%s: %q uses no logitpair metric (nor Prometheus's up)", where, expr)
	}
	for _, tok := range toks {
		if !names[tok] {
			t.Errorf("%s: %q uses %s, which the code does not export", where, expr, tok)
		}
	}
}

// dashboardExprs returns the PromQL of every panel target and query
// variable of a Grafana dashboard model, keyed by where it is.
func dashboardExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title         string          `json:"title"`
		UID           string          `json:"uid"`
		SchemaVersion int             `json:"schemaVersion"`
		Panels        []dashPanel     `json:"panels"`
		Templating    json.RawMessage `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion == 0 || len(d.Panels) == 0 {
		t.Fatalf("%s: not a dashboard model (title %q, uid %q, schemaVersion %d, %d panels)", path, d.Title, d.UID, d.SchemaVersion, len(d.Panels))
	}
	var tmpl struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	}
	if err := json.Unmarshal(d.Templating, &tmpl); err != nil {
		t.Fatalf("%s: templating: %v", path, err)
	}
	out := map[string]string{}
	ids := map[int]bool{}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Title == "" {
				t.Errorf("panel %d has no title", p.ID)
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no queries", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("panel %q: target %s has no expression", p.Title, tg.RefID)
				}
				out[fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range tmpl.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil || q.Query == "" {
			t.Errorf("variable %s: query %s", v.Name, v.Query)
			continue
		}
		out["variable "+v.Name] = q.Query
	}
	return out
}

type dashPanel struct {
	ID      int    `json:"id"`
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

// TestDashboardUsesExportedMetrics: deploy/grafana/dashboard.json only
// queries series the code registers, and covers the ones an operator needs.
func TestDashboardUsesExportedMetrics(t *testing.T) {
	names := registeredNames(t)
	exprs := dashboardExprs(t, filepath.Join(repoRoot(), "deploy", "grafana", "dashboard.json"))
	all := ""
	for where, e := range exprs {
		checkNames(t, where, e, names)
		all += e + "\n"
	}
	for _, must := range []string{"logitpair_steps_committed_total", "logitpair_step_duration_seconds_bucket", "logitpair_loss",
		"logitpair_clean_cross_entropy", "logitpair_adversarial_cross_entropy", "logitpair_pairing_loss",
		"logitpair_clean_accuracy_ratio", "logitpair_adversarial_accuracy_ratio", "logitpair_logit_norm",
		"logitpair_shard_gradients_dropped_total", "logitpair_worker_push_bytes_total", "logitpair_worker_pull_bytes_total",
		"logitpair_worker_push_duration_seconds_bucket", "logitpair_worker_pull_duration_seconds_bucket",
		"logitpair_worker_phase_duration_seconds_sum", "logitpair_live_workers", "logitpair_required_workers", "logitpair_checkpoint_age_seconds",
		// errors and scrape health
		"logitpair_shard_rpc_errors_total", "logitpair_worker_shard_errors_total", "logitpair_worker_reports_total",
		"logitpair_auth_refused_total", "logitpair_loss_nan_total", "logitpair_build_info"} {
		if !regexp.MustCompile(`\b` + must + `\b`).MatchString(all) {
			t.Errorf("the dashboard does not show %s", must)
		}
	}
	if !upSeries.MatchString(all) {
		t.Error("the dashboard does not show the targets' scrape health (up)")
	}
}

// alertExprs returns the expression of every rule in a Prometheus rules file.
func alertExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `json:"alert"`
				Record string `json:"record"`
				Expr   string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out["rule "+r.Alert+r.Record] = r.Expr
		}
	}
	return out
}

// TestAlertsUseExportedMetrics: every alert queries series the code
// registers (LogitpairProcessDown also Prometheus's own up), and the
// four alerts operators rely on exist.
func TestAlertsUseExportedMetrics(t *testing.T) {
	names := registeredNames(t)
	exprs := alertExprs(t, filepath.Join(repoRoot(), "deploy", "prometheus", "alerts.yml"))
	for where, e := range exprs {
		checkNames(t, where, e, names)
	}
	for _, a := range []string{"LogitpairStepStalled", "LogitpairTooFewWorkers", "LogitpairNaNLoss", "LogitpairCheckpointTooOld"} {
		if _, ok := exprs["rule "+a]; !ok {
			t.Errorf("alerts.yml lacks %s", a)
		}
	}
}

// promtool returns promtool's path, skipping without it unless
// LOGITPAIR_REQUIRE_E2E=1.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	if os.Getenv("LOGITPAIR_REQUIRE_E2E") == "1" {
		t.Fatal("promtool is not on PATH and LOGITPAIR_REQUIRE_E2E=1 (Debian: apt-get install prometheus)")
	}
	t.Skip("promtool is not on PATH (Debian: apt-get install prometheus); set LOGITPAIR_REQUIRE_E2E=1 to make this a failure")
	return ""
}

func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool(t), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestPromtoolAcceptsConfigAndRules checks deploy/prometheus with promtool:
// the scrape configuration (with its rule files), the rules, and the rules'
// unit tests (alerts_test.yml: each alert fires, and only, when it should).
func TestPromtoolAcceptsConfigAndRules(t *testing.T) {
	dir := filepath.Join(repoRoot(), "deploy", "prometheus")
	runPromtool(t, dir, "check", "config", "prometheus.yml")
	runPromtool(t, dir, "check", "rules", "alerts.yml")
	runPromtool(t, dir, "test", "rules", "alerts_test.yml")
}

// TestPromtoolAcceptsDashboardQueries parses every dashboard expression
// with Prometheus's own parser (as recording rules checked by promtool),
// with Grafana's $__rate_interval and variables substituted.
func TestPromtoolAcceptsDashboardQueries(t *testing.T) {
	tool := promtool(t)
	exprs := dashboardExprs(t, filepath.Join(repoRoot(), "deploy", "grafana", "dashboard.json"))
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	repl := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h", "$coordinator_job", ".+", "$scrape_jobs", ".+")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	// Grafana's label_values(series, label) is no PromQL; its series
	// selector is checked as group by (label) (series).
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for i, k := range keys {
		e := labelValues.ReplaceAllString(repl.Replace(exprs[k]), "group by ($2) ($1)")
		fmt.Fprintf(&b, "      - record: dashboard:expr%d\n        expr: %s\n", i, strconv.Quote(e))
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard-rules.yml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, tool, "check", "rules", filepath.Join(dir, "dashboard-rules.yml")).CombinedOutput(); err != nil {
		t.Errorf("dashboard queries do not parse: %v\n%s\n%s", err, out, b.String())
	}
}

// TestOperationsDocListsEverySeries: docs/OPERATIONS.md ("Metrics")
// describes every series the code registers.
func TestOperationsDocListsEverySeries(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(), "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for n := range registeredNames(t) {
		if strings.HasSuffix(n, "_bucket") || strings.HasSuffix(n, "_sum") {
			continue
		}
		n = strings.TrimSuffix(n, "_count") // a histogram's name
		if !regexp.MustCompile("`" + n + "[`{]").MatchString(doc) {
			t.Errorf("docs/OPERATIONS.md does not describe %s", n)
		}
	}
}
