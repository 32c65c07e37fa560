package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/plan"
)

// baseArgs is pkg/plan's hand-computed base cluster as flags: 4 workers, 1
// backup, 2 shards, 10⁶ parameters, 8 Gbit/s = 1 GB/s links, 100 ms of
// compute, R_m 10⁹, R_u 10⁸, RTT 1 ms, batch 10: step 125.5 ms, 3 shards
// for 80%.
var baseArgs = []string{"plan", "--workers", "4", "--backups", "1", "--ps", "2", "--params", "1M", "--link", "8Gbit",
	"--compute", "100ms", "--mean-rate", "1e9", "--apply-rate", "1e8", "--rtt", "1ms", "--batch", "10"}

// TestPlanCommand: the flags reach the model (the table's row and the JSON
// match the hand computation), a list of links gives a row each, and a
// target gives the fewest shards.
func TestPlanCommand(t *testing.T) {
	out, err := run(t, append(baseArgs, "--target-efficiency", "0.8")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| custom | 1 M | 4 (1) | 2 | 8 Gbit/s | 100ms | no overlap | 125.5 | 8.0 | 8.0 | 6.5 | 3.0 |", "| 0.797 | 239 | 3 (0.847) |"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// --link repeated appends (pflag's string slices): base's 8Gbit, then 16Gbit.
	out, err = run(t, append(baseArgs, "--json", "--target-efficiency", "0.8", "--link", "16Gbit")...)
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Inputs struct {
			WorkerLinkGbps float64 `json:"worker_link_gbps"`
			ShardLinkGbps  float64 `json:"shard_link_gbps"`
			Params         int64   `json:"params"`
		} `json:"inputs"`
		Prediction struct {
			Step       float64 `json:"step_s"`
			Efficiency float64 `json:"efficiency"`
		} `json:"prediction"`
		Fewest struct {
			Shards int `json:"shards"`
		} `json:"fewest_shards"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	// At 16 Gbit/s every transfer halves: 4 + 100 + 4 + 6.5 + 3 = 117.5 ms.
	if len(rows) != 2 || math.Abs(rows[0].Prediction.Step-0.1255) > 1e-9 || math.Abs(rows[1].Prediction.Step-0.1175) > 1e-9 ||
		rows[0].Inputs.WorkerLinkGbps != 8 || rows[1].Inputs.ShardLinkGbps != 16 || rows[0].Inputs.Params != 1e6 || rows[0].Fewest.Shards != 3 {
		t.Errorf("rows %+v: want steps 0.1255 and 0.1175 s at 8 and 16 Gbit/s, 3 shards for 80%% at 8", rows)
	}

	// A model by name: inception-v3's size from pkg/models.
	if out, err = run(t, "plan", "--model", "inception-v3", "--json"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"params": 23834568`) || !strings.Contains(out, `"buffers": 34432`) {
		t.Errorf("inception-v3: want 23834568 parameters and 34432 buffers in\n%s", out)
	}
}

// TestPlanCommandErrors: bad input is refused with the flag named.
func TestPlanCommandErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"plan", "--model", "resnet9", "--params", "1M"}, "--model and --params both given"},
		{[]string{"plan", "--link", "25"}, "--link: rate \"25\""},
		{[]string{"plan", "--ps-link", "fast"}, "rate \"fast\""},
		{[]string{"plan", "--params", "0"}, "count \"0\""},
		{[]string{"plan", "--model", "inception-v4"}, "unknown model"},
		{[]string{"plan", "--workers", "3", "--backups", "3"}, "backups 3 with 3 workers"},
		{[]string{"plan", "--single-host"}, "--single-host needs --loopback"},
		{[]string{"plan", "--link", ""}, "--link: give the workers' link rate"},
		{[]string{"plan", "--target-efficiency", "1.5"}, "target efficiency 1.5"},
		{[]string{"plan", "--compute", "fast"}, "compute"},
		{[]string{"plan", "--wire-bytes", "3"}, "wire bytes 3"},
		{[]string{"plan", "--check", filepath.Join(t.TempDir(), "missing.json")}, "--check"},
	} {
		if _, err := run(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: want an error containing %q, got %v", c.args, c.want, err)
		}
	}
}

// TestPlanCheck: --check predicts each record on a single host and fails
// naming the record that is off by more than 25%. The records are
// pkg/plan's single-host hand computation: predicted 72.017 ms.
func TestPlanCheck(t *testing.T) {
	dir := t.TempDir()
	rec := `{"name": %q, "workers": 2, "backups": 0, "shards": 2, "params": 1000000, "buffers": 1000, "wire_bytes": 4,
		"compute_s": 0.05, "raw_tcp_bytes_per_s": 1e9, "cores": 2, "rtt_s": 0, "mean_rate": 1e9, "apply_rate": 1e8, "step_s": %v}`
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", "["+fmt.Sprintf(rec, "near", 0.08)+"]")
	out, err := run(t, "plan", "--check", good)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "| near | 2 (0) | 2 | 1 M | 4 | 50ms | 1 GB/s | 1 | no overlap | 72.0 | 80.0 | -10.0% | yes |") {
		t.Errorf("output lacks the record's row:\n%s", out)
	}
	bad := write("bad.json", "["+fmt.Sprintf(rec, "near", 0.08)+","+fmt.Sprintf(rec, "far", 0.05)+"]")
	out, err = run(t, "plan", "--check", bad, "--json")
	if !errors.Is(err, plan.ErrOffTolerance) || !strings.Contains(err.Error(), "far (+44%") {
		t.Errorf("want ErrOffTolerance naming far at +44%%, got %v", err)
	}
	var results []plan.CheckResult
	if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 2 || !results[0].OK || results[1].OK {
		t.Errorf("JSON results %+v (%v): want near ok, far not", results, err)
	}
	if _, err := run(t, "plan", "--check", write("junk.json", `{"workers": 2}`)); err == nil || !strings.Contains(err.Error(), "JSON array") {
		t.Errorf("not an array: want the format named, got %v", err)
	}
}
