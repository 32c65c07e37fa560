package plan

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
)

// TestModelMatchesRecordedLoopbackRuns checks the model against the
// measurements of record (docs/BENCHMARKS.md, issue 13): `logitpair bench
// cluster --json` runs of the real cluster of separate processes on one
// 2-core machine, madry-mnist at 20 ms and resnet-v2-50 (64×64) at 110 ms
// of synthetic compute, 2–4 workers, 1–2 shards, float32 and bf16 pushes,
// with and without TLS. Each record carries the measured raw-TCP rate and,
// as transport_efficiency, the gRPC transport's measured share of it
// (scripts/bench-cluster.sh part (i), the same session). Every prediction
// must be within CheckTolerance; with the raw link alone (η = 1) they are
// not, which the test checks too, so that the records keep saying what
// the transport costs.
func TestModelMatchesRecordedLoopbackRuns(t *testing.T) {
	b, err := os.ReadFile("testdata/bench-cluster-2026-12-07.json")
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) < 9 {
		t.Fatalf("%d records, want the 9 of record", len(recs))
	}
	res, err := CheckAll(recs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Logf("%s: predicted %v, measured %v (%+.0f%%)", r.Record.Name, r.Prediction.Step.D(), r.Record.Step.D(), 100*r.RelErr)
	}
	for i := range recs {
		recs[i].TransportEfficiency = 0
	}
	if _, err := CheckAll(recs); !errors.Is(err, ErrOffTolerance) {
		t.Fatalf("with the raw link as the transport's rate the model still matches (%v): the records no longer measure the transport's shortfall", err)
	}
}
