package sentinel

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/data/datatest"
	"github.com/logitpair/logitpair/pkg/eval"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
)

func res(step int64, single, multi float64) Result {
	return Result{Step: step, Clean: 0.99, SingleStep: single, MultiStep: multi, Examples: 200}
}

// observe runs Observe and fails on an error.
func observe(t *testing.T, s *State, cfg Config, r Result) Verdict {
	t.Helper()
	v, err := s.Observe(cfg, r)
	if err != nil {
		t.Fatalf("step %d: %v", r.Step, err)
	}
	return v
}

// TestObserveCollapse: accepted checks move LastGood and Best; a drop below
// half the best trips, rolls back to the last good step (not the best's),
// halves the scale; a drop to exactly half does not.
func TestObserveCollapse(t *testing.T) {
	cfg := DefaultConfig()
	s := NewState()
	for _, r := range []Result{res(100, 0.5, 0.4), res(200, 0.7, 0.6), res(300, 0.6, 0.5), res(400, 0.4, 0.3)} {
		if v := observe(t, &s, cfg, r); v.Trip || v.LRScale != 1 {
			t.Fatalf("step %d tripped: %+v", r.Step, v)
		}
	}
	if s.Best != 0.6 || s.BestStep != 200 || s.LastGood != 400 || s.Rollbacks != 0 || s.Last.Step != 400 {
		t.Fatalf("state %+v", s)
	}
	v := observe(t, &s, cfg, res(500, 0.35, 0.29))
	if !v.Trip || v.Rule != RuleCollapse || v.RollbackTo != 400 || v.LRScale != 0.5 {
		t.Fatalf("verdict %+v", v)
	}
	for _, want := range []string{"step 500", "29.00%", "60.00%", "step 200", "rolling back to step 400", "1 → 0.5"} {
		if !strings.Contains(v.Reason, want) {
			t.Errorf("reason %q lacks %q", v.Reason, want)
		}
	}
	if s.Rollbacks != 1 || s.LRScale != 0.5 || s.LastGood != 400 || s.Best != 0.6 || s.Last.Step != 500 {
		t.Fatalf("state after the trip %+v", s)
	}
	// The rerun from 400 reaches 500 again; exactly half the best (0.3)
	// does not trip, and keeps the halved scale.
	if v := observe(t, &s, cfg, res(500, 0.35, 0.3)); v.Trip || v.LRScale != 0.5 {
		t.Fatalf("a tie tripped: %+v", v)
	}
	if s.LastGood != 500 {
		t.Fatalf("last good %d", s.LastGood)
	}
}

// TestObserveFloor: before the best reaches MinBest no collapse trips (an
// untrained model's robust accuracy is noise); from MinBest on it does.
func TestObserveFloor(t *testing.T) {
	cfg := DefaultConfig()
	s := NewState()
	observe(t, &s, cfg, res(10, 0.1, 0.09))
	if v := observe(t, &s, cfg, res(20, 0.1, 0.0)); v.Trip {
		t.Fatalf("tripped below the floor: %+v", v)
	}
	observe(t, &s, cfg, res(30, 0.2, 0.1)) // Best = MinBest
	if v := observe(t, &s, cfg, res(40, 0.1, 0.04)); !v.Trip || v.Rule != RuleCollapse || v.RollbackTo != 30 {
		t.Fatalf("at the floor: %+v", v)
	}
	// Collapse 0 turns the rule off.
	cfg.Collapse = 0
	if v := observe(t, &s, cfg, res(40, 0.1, 0.0)); v.Trip {
		t.Fatalf("collapse 0 tripped: %+v", v)
	}
}

// TestObserveGap: the gap trips from the first check, which rolls back to
// the initial state (step 0); a gap equal to MaxGap (0.8 − 0.5 in
// floating point is 0.30000000000000004) does not trip; both rules
// tripping count as collapse and name both.
func TestObserveGap(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxGap = 0.3
	s := NewState()
	v := observe(t, &s, cfg, res(100, 0.45, 0.1))
	if !v.Trip || v.Rule != RuleGap || v.RollbackTo != 0 || !strings.Contains(v.Reason, "initial state (step 0)") || !strings.Contains(v.Reason, "single-step accuracy 45.00% exceeds multi-step accuracy 10.00% by 35.00 points > 30") {
		t.Fatalf("verdict %+v", v)
	}
	if v := observe(t, &s, cfg, res(100, 0.8, 0.5)); v.Trip {
		t.Fatalf("gap equal to MaxGap tripped: %+v", v)
	}
	v = observe(t, &s, cfg, res(200, 0.9, 0.2))
	if !v.Trip || v.Rule != RuleCollapse || !strings.Contains(v.Reason, "below") || !strings.Contains(v.Reason, "exceeds") || v.LRScale != 0.25 {
		t.Fatalf("both rules: %+v", v)
	}
}

// TestObserveMaxRollbacks: the trip after MaxRollbacks rollbacks is an
// ErrTooManyRollbacks error that says what to change and names the last
// good step, and leaves the state unchanged; MaxRollbacks 0 stops at the
// first trip.
func TestObserveMaxRollbacks(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRollbacks = 2
	s := NewState()
	observe(t, &s, cfg, res(100, 0.6, 0.5))
	observe(t, &s, cfg, res(200, 0.9, 0.1))
	observe(t, &s, cfg, res(200, 0.9, 0.1))
	before := s
	v, err := s.Observe(cfg, res(200, 0.9, 0.1))
	if !errors.Is(err, ErrTooManyRollbacks) || !v.Trip {
		t.Fatalf("third trip: %+v %v", v, err)
	}
	for _, want := range []string{"after 2 rollbacks", "--sentinel-max-rollbacks 2", "lower --lr", "random start", "last good checkpoint is step 100"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if !reflect.DeepEqual(s, before) {
		t.Fatalf("state changed: %+v → %+v", before, s)
	}
	cfg.MaxRollbacks = 0
	s = NewState()
	if _, err := s.Observe(cfg, res(100, 0.9, 0.1)); !errors.Is(err, ErrTooManyRollbacks) {
		t.Fatalf("max 0: %v", err)
	}
}

// TestObserveBadResults: NaN or out-of-range accuracies and checks of steps
// before the last good one are errors that change nothing.
func TestObserveBadResults(t *testing.T) {
	cfg := DefaultConfig()
	s := NewState()
	observe(t, &s, cfg, res(100, 0.6, 0.5))
	before := s
	for _, r := range []Result{res(200, math.NaN(), 0.5), res(200, 0.5, math.NaN()), res(200, 0.5, 1.5), res(200, -0.1, 0), res(50, 0.6, 0.5)} {
		if _, err := s.Observe(cfg, r); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
	if !reflect.DeepEqual(s, before) {
		t.Fatalf("state changed: %+v → %+v", before, s)
	}
}

// TestStateJSONRoundTrip: a state read back from checkpoint metadata is
// the state written; no key is a fresh run; damaged values are errors; the
// zero value's scale is 1.
func TestStateJSONRoundTrip(t *testing.T) {
	cfg := DefaultConfig()
	s := NewState()
	observe(t, &s, cfg, res(100, 0.6, 0.5))
	observe(t, &s, cfg, res(200, 0.6, 0.1))
	got, ok, err := ReadState(map[string]string{MetaKey: s.JSON()})
	if err != nil || !ok || !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip: %+v %v %v, want %+v", got, ok, err, s)
	}
	if _, ok, err := ReadState(map[string]string{"other": "x"}); ok || err != nil {
		t.Fatalf("no key: %v %v", ok, err)
	}
	for _, bad := range []string{`{"best": 0.5`, `{"lr_scale": 2}`, `{"rollbacks": -1}`, `{"best": 1.5}`} {
		if _, _, err := ReadState(map[string]string{MetaKey: bad}); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	if (State{}).Scale() != 1 || NewState().Scale() != 1 {
		t.Fatal("a fresh state's scale is not 1")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*Config){
		"--sentinel-every":         func(c *Config) { c.Every = -1 },
		"--sentinel-examples":      func(c *Config) { c.Examples = 0 },
		"--sentinel-steps":         func(c *Config) { c.Steps = 1 },
		"--sentinel-collapse":      func(c *Config) { c.Collapse = math.NaN() },
		"--sentinel-max-gap":       func(c *Config) { c.MaxGap = -0.1 },
		"--sentinel-lr-factor":     func(c *Config) { c.LRFactor = 0 },
		"--sentinel-max-rollbacks": func(c *Config) { c.MaxRollbacks = -1 },
	}
	for want, mod := range cases {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

// TestMeasure: Measure is eval.Run with FGSM and PGD-Steps (α = 2.5ε/Steps)
// on the validation tail, and the same seed gives the same result.
func TestMeasure(t *testing.T) {
	be := cpu.New(cpu.Options{Threads: 1})
	m, err := models.New(be, "madry-mnist", models.Config{"conv1": 2, "conv2": 2, "hidden": 8})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	val := datatest.Synthetic(30, 2)
	cfg := DefaultConfig()
	cfg.Examples, cfg.Steps = 20, 4
	r, err := Measure(m, val, 0.2, cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Measure(m, val, 0.2, cfg, 7)
	if r != again {
		t.Fatalf("not deterministic: %+v vs %+v", r, again)
	}
	rep, err := eval.Run(m, data.Tail(val, 20), eval.Options{Batch: 100, Seed: 7,
		Attacks: []attack.Config{attack.FGSM(0.2), attack.PGD(0.2, 0.125, 4)}})
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Clean: rep.CleanAccuracy, SingleStep: rep.Whitebox[0].Top1, MultiStep: rep.Whitebox[1].Top1, Examples: 20,
		SingleAttack: attack.FGSM(0.2).String(), MultiAttack: attack.PGD(0.2, 0.125, 4).String()}
	if r != want {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	if _, err := Measure(m, nil, 0.2, cfg, 7); err == nil {
		t.Fatal("no validation data: no error")
	}
}

// TestCollector: the gauges follow the last check and the scale, the
// counter counts rollbacks by rule.
func TestCollector(t *testing.T) {
	c := NewCollector()
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(c.robust); !math.IsNaN(got) {
		t.Fatalf("robust accuracy before a check: %v", got)
	}
	cfg := DefaultConfig()
	s := NewState()
	for _, r := range []Result{res(100, 0.6, 0.5), res(200, 0.55, 0.2), res(200, 0.9, 0.45)} {
		v := observe(t, &s, cfg, r)
		c.Record(r, v, s)
	}
	want := `
# HELP logitpair_sentinel_lr_scale The factor the sentinel's rollbacks have multiplied the learning rate by (1: none).
# TYPE logitpair_sentinel_lr_scale gauge
logitpair_sentinel_lr_scale 0.25
# HELP logitpair_sentinel_robust_accuracy Multi-step (PGD) validation accuracy of the sentinel's last check (NaN before the first).
# TYPE logitpair_sentinel_robust_accuracy gauge
logitpair_sentinel_robust_accuracy 0.45
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "logitpair_sentinel_lr_scale", "logitpair_sentinel_robust_accuracy"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(c.rollbacks.WithLabelValues(RuleCollapse)); got != 1 {
		t.Fatalf("collapse rollbacks %v", got)
	}
	if got := testutil.ToFloat64(c.rollbacks.WithLabelValues(RuleGap)); got != 1 {
		t.Fatalf("gap rollbacks %v", got)
	}
	if got := testutil.ToFloat64(c.gap); math.Abs(got-0.45) > 1e-12 {
		t.Fatalf("gap %v", got)
	}
	d := NewCollector()
	d.SetState(s)
	if testutil.ToFloat64(d.scale) != 0.25 || testutil.ToFloat64(d.robust) != 0.45 {
		t.Fatal("SetState did not set the gauges")
	}
}
