package plan

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestSweep: rows come model by model, then compute, then link, each with
// its own inputs; an empty list keeps base's value.
func TestSweep(t *testing.T) {
	sizes := []Named{{"a", Size{Params: 1e6}}, {"b", Size{Params: 2e6, Buffers: 10}}}
	rows, err := Sweep(base(), sizes, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Label+" "+r.Cluster.Compute.String()+" "+FormatGbit(r.Cluster.WorkerLink)+" "+FormatGbit(r.Cluster.ShardLink))
		if r.Fewest != nil {
			t.Errorf("no target: want no fewest-shards answer, got %+v", r.Fewest)
		}
	}
	want := "a 100ms 8 Gbit/s 8 Gbit/s|a 200ms 8 Gbit/s 8 Gbit/s|b 100ms 8 Gbit/s 8 Gbit/s|b 200ms 8 Gbit/s 8 Gbit/s"
	if strings.Join(got, "|") != want {
		t.Errorf("rows %q, want %q", strings.Join(got, "|"), want)
	}
	if rows[2].Cluster.Buffers != 10 || !near(rows[0].Prediction.Step.D(), ms(125.5)) {
		t.Errorf("row b: buffers %d; row a: step %v (want 10 and 125.5ms)", rows[2].Cluster.Buffers, rows[0].Prediction.Step.D())
	}
	if _, err := Sweep(base(), nil, nil, nil, 0); err == nil {
		t.Error("no model: want an error")
	}
	if _, err := Sweep(base(), sizes, nil, []float64{0}, 0); err == nil || !strings.Contains(err.Error(), "worker link") {
		t.Errorf("a zero link: want it named, got %v", err)
	}
	if _, err := Evaluate("a", base(), -0.5); err == nil || !strings.Contains(err.Error(), "target efficiency") {
		t.Errorf("a negative target: want it refused, got %v", err)
	}
}

// TestWriteTable: a reached and an unreached target, each on its row, and
// the reason for the unreached one below the table.
func TestWriteTable(t *testing.T) {
	var rows []Row
	for _, target := range []float64{0.8, 0.95} {
		r, err := Evaluate("m", base(), target)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	var b strings.Builder
	if err := WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"fewest shards for 80% |", "| m | 1 M | 4 (1) | 2 | 8 Gbit/s | 100ms | no overlap | 125.5 | 8.0 | 8.0 | 6.5 | 3.0 | 0.25 / 0.25 | 0.51 / 0.51 | 0.797 | 239 | 3 (0.847) |",
		"| none (best 0.901) |", "m, 8 Gbit/s, compute 100ms: no shard count reaches 0.950: as shards are added the efficiency approaches 0.901 (1000000 shards, one parameter each); the step stays above 111ms, of which 100ms is compute, and the largest other part is pull (worker link), 4ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestClusterJSON: the inputs as JSON, seconds and Gb/s; a single-host
// plan gives its loopback and cores instead of links.
func TestClusterJSON(t *testing.T) {
	b, err := json.Marshal(base().withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"compute_s":0.1`, `"rtt_s":0.001`, `"worker_link_gbps":8`, `"shard_link_gbps":8`, `"transport_efficiency":1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	c := base()
	c.SingleHost, c.Loopback, c.Cores = true, 2e9, 2
	b, _ = json.Marshal(c)
	if !strings.Contains(string(b), `"loopback_bytes_per_s":2000000000`) || !strings.Contains(string(b), `"cores":2`) || strings.Contains(string(b), "link_gbps") {
		t.Errorf("single host: %s", b)
	}
}

// TestFlags: RateFlag and CountFlag parse with ParseRate and ParseCount
// and print what they hold.
func TestFlags(t *testing.T) {
	var r float64
	if err := (RateFlag{&r}).Set("10Gbit"); err != nil || r != 1.25e9 || (RateFlag{&r}).String() != "10 Gbit/s" {
		t.Errorf("RateFlag: %v, %v, %q", r, err, RateFlag{&r}.String())
	}
	if err := (RateFlag{&r}).Set("10"); err == nil {
		t.Error("RateFlag: a rate without a unit must be refused")
	}
	var n int64
	if err := (CountFlag{&n}).Set("44.5M"); err != nil || n != 44500000 || (CountFlag{&n}).String() != "44500000" {
		t.Errorf("CountFlag: %v, %v", n, err)
	}
}
