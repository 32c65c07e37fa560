package plan

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// ms is a float number of milliseconds as a Duration.
func ms(f float64) time.Duration { return time.Duration(math.Round(f * 1e6)) }

// near reports whether two durations agree within 2 ns (Predict rounds
// each part to the nanosecond).
func near(a, b time.Duration) bool { return (a - b).Abs() <= 2 }

// base is the cluster the hand computations below start from: W = 4, b = 1
// (N = 3), P = 2, S = 10⁶, B = 0, float32 pushes, 1 GB/s links both ways,
// C = 100 ms, R_m = 10⁹, R_u = 10⁸, RTT 1 ms, batch 10.
func base() Cluster {
	return Cluster{
		Workers: 4, Backups: 1, Shards: 2, Params: 1e6, WireBytes: 4,
		WorkerLink: 1e9, Compute: 100 * time.Millisecond,
		MeanRate: 1e9, ApplyRate: 1e8, RTT: time.Millisecond, Batch: 10,
	}
}

type parts struct{ pull, push, apply, coord, step float64 } // ms

func checkParts(t *testing.T, p Prediction, want parts) {
	t.Helper()
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{{"pull", p.Pull.D(), ms(want.pull)}, {"push", p.Push.D(), ms(want.push)}, {"apply", p.Apply.D(), ms(want.apply)},
		{"coord", p.Coord.D(), ms(want.coord)}, {"step", p.Step.D(), ms(want.step)}} {
		if !near(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if sum := p.Pull + p.Compute + p.Push + p.Apply + p.Coord; !near(sum.D(), p.Step.D()) {
		t.Errorf("parts add up to %v, step is %v", sum.D(), p.Step.D())
	}
}

// TestPredictNoOverlap: base by hand. D_pull = D_push = 4 MB per worker;
// the worker link moves it in 4 ms, each shard's link moves its 4·4/2 = 8
// MB in 8 ms, so both phases are 8 ms, shard-bound. Apply = 3·10⁶/(2·10⁹)
// + 10⁶/(2·10⁸) = 1.5 + 5 = 6.5 ms; coordination 3 RTT = 3 ms. Step =
// 8 + 100 + 8 + 6.5 + 3 = 125.5 ms, E = 100/125.5, 3·10/0.1255 samples/s.
func TestPredictNoOverlap(t *testing.T) {
	p, err := Predict(base())
	if err != nil {
		t.Fatal(err)
	}
	checkParts(t, p, parts{pull: 8, push: 8, apply: 6.5, coord: 3, step: 125.5})
	if p.PullBound != "shard link" || p.PushBound != "shard link" {
		t.Errorf("bounds %q, %q; want the shard link for both", p.PullBound, p.PushBound)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"efficiency", p.Efficiency, 100 / 125.5},
		{"samples/s", p.SamplesPerSec, 30 / 0.1255},
		{"ideal samples/s", p.IdealSamplesPerSec, 300},
		{"worker in bytes", p.WorkerInBytes, 4e6},
		{"worker out bytes", p.WorkerOutBytes, 4e6},
		{"shard out bytes", p.ShardOutBytes, 8e6},
		{"shard in bytes", p.ShardInBytes, 8e6},
		{"worker in Gb/s", p.WorkerInGbps, 8 * 4e6 / 0.1255 / 1e9},
		{"shard out Gb/s", p.ShardOutGbps, 8 * 8e6 / 0.1255 / 1e9},
	} {
		if math.Abs(c.got-c.want) > 1e-6*math.Abs(c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if got := p.Limit(); got != "pull (shard link)" {
		t.Errorf("Limit() = %q, want the pull over the shard link", got)
	}
}

// TestPredictOverlapWorkerBound: shard links of 10 GB/s, worker links of
// 100 MB/s, P = 4, f = 0.2 (F = 20 ms). Pull: worker 4 MB/100 MB/s = 40 ms
// (shard 16 MB/4/10 GB/s = 0.4 ms). Push: T_w = 40 ms in 4 slices ready
// every 5 ms of the backward: max(40/4, 40 − 20·3/4) = 25 ms after compute.
// Apply 3/4 + 10/4 = 3.25 ms; coordination 1.5 RTT. Step 169.75 ms. With
// bf16 pushes T_w = 20 ms: max(5, 20 − 15) = 5 ms, step 149.75 ms.
func TestPredictOverlapWorkerBound(t *testing.T) {
	c := base()
	c.Shards, c.ShardLink, c.WorkerLink = 4, 1e10, 1e8
	c.Overlap, c.BackwardFraction = true, 0.2
	p, err := Predict(c)
	if err != nil {
		t.Fatal(err)
	}
	checkParts(t, p, parts{pull: 40, push: 25, apply: 3.25, coord: 1.5, step: 169.75})
	if p.PullBound != "worker link" || p.PushBound != "worker link" {
		t.Errorf("bounds %q, %q; want the worker link for both", p.PullBound, p.PushBound)
	}
	c.WireBytes = 2
	if p, err = Predict(c); err != nil {
		t.Fatal(err)
	}
	checkParts(t, p, parts{pull: 40, push: 5, apply: 3.25, coord: 1.5, step: 149.75})
	if p.WorkerOutBytes != 2e6 || p.WorkerInBytes != 4e6 {
		t.Errorf("bf16: worker moves %v in, %v out; want 4e6 in (float32 parameters), 2e6 out", p.WorkerInBytes, p.WorkerOutBytes)
	}
	// Without overlap the same cluster pushes all 40 ms (bf16: 20 ms).
	c.Overlap = false
	if p, err = Predict(c); err != nil {
		t.Fatal(err)
	}
	checkParts(t, p, parts{pull: 40, push: 20, apply: 3.25, coord: 3, step: 166.25})
}

// TestPredictOverlapShardBound: with the shards' links the bound, overlap
// hides no push: the last slice's shard must take all W workers' slices
// after compute ends, 8 ms (base: 4·4 MB/2 at 1 GB/s), even with half of
// the compute as the backward window. Only the coordination falls to 1.5
// RTT: 8 + 100 + 8 + 6.5 + 1.5 = 124 ms.
func TestPredictOverlapShardBound(t *testing.T) {
	c := base()
	c.Overlap, c.BackwardFraction = true, 0.5
	p, err := Predict(c)
	if err != nil {
		t.Fatal(err)
	}
	checkParts(t, p, parts{pull: 8, push: 8, apply: 6.5, coord: 1.5, step: 124})
	if p.PushBound != "shard link" {
		t.Errorf("push bound %q, want the shard link", p.PushBound)
	}
}

// TestPredictSingleHost: W = 2, b = 0, P = 2, S = 10⁶, B = 1000, a 1 GB/s
// loopback, C = 50 ms, no RTT, a 2 ms commit. Every byte of both workers
// crosses the loopback: pull 2·4·1.001·10⁶/10⁹ = 8.008 ms, push the same.
// A_shard = 2·1.001·10⁶/(2·10⁹) + 10⁶/(2·10⁸) = 1.001 + 5 = 6.001 ms; on 1
// core the two shards take twice that. Step 8.008 + 50 + 8.008 + 12.002 +
// 2 = 80.018 ms; on 2 cores 74.017 ms; with overlap (f = 0.4, F = 20 ms)
// the push is max(8.008/2, 8.008 − 20/2) = 4.004 ms: 70.013 ms.
func TestPredictSingleHost(t *testing.T) {
	c := Cluster{
		Workers: 2, Shards: 2, Params: 1e6, Buffers: 1000, WireBytes: 4,
		Loopback: 1e9, SingleHost: true, Compute: 50 * time.Millisecond,
		MeanRate: 1e9, ApplyRate: 1e8, Commit: 2 * time.Millisecond,
		WorkerLink: 1, // ignored on a single host
	}
	p, err := Predict(c)
	if err != nil {
		t.Fatal(err)
	}
	checkParts(t, p, parts{pull: 8.008, push: 8.008, apply: 12.002, coord: 2, step: 80.018})
	if p.PullBound != "loopback" {
		t.Errorf("pull bound %q, want the loopback", p.PullBound)
	}
	c.Cores = 2
	if p, err = Predict(c); err != nil {
		t.Fatal(err)
	}
	checkParts(t, p, parts{pull: 8.008, push: 8.008, apply: 6.001, coord: 2, step: 74.017})
	c.Overlap, c.BackwardFraction = true, 0.4
	if p, err = Predict(c); err != nil {
		t.Fatal(err)
	}
	checkParts(t, p, parts{pull: 8.008, push: 4.004, apply: 6.001, coord: 2, step: 70.013})
}

// TestPredictDefaults: left-out optional fields take their documented
// values (shard link = worker link, η = 1, the default rates, 1 core), and
// η scales every transfer.
func TestPredictDefaults(t *testing.T) {
	c := base()
	c.MeanRate, c.ApplyRate = 0, 0
	p, err := Predict(c)
	if err != nil {
		t.Fatal(err)
	}
	wantApply := 3e6/(2*DefaultMeanRate) + 1e6/(2*DefaultApplyRate)
	if !near(p.Apply.D(), time.Duration(wantApply*1e9)) {
		t.Errorf("apply %v with the default rates, want %v s", p.Apply.D(), wantApply)
	}
	c = base()
	c.TransportEfficiency = 0.5
	if p, err = Predict(c); err != nil {
		t.Fatal(err)
	}
	if !near(p.Pull.D(), ms(16)) || !near(p.Push.D(), ms(16)) {
		t.Errorf("η = 0.5: pull %v, push %v; want 16 ms each (twice base's)", p.Pull.D(), p.Push.D())
	}
}

// TestValidate: every bad field is refused with its name and what is
// allowed, all of them in one error.
func TestValidate(t *testing.T) {
	for _, c := range []struct {
		edit func(*Cluster)
		want string
	}{
		{func(c *Cluster) { c.Workers = 0 }, "workers 0"},
		{func(c *Cluster) { c.Backups = 4 }, "backups 4 with 4 workers"},
		{func(c *Cluster) { c.Backups = -1 }, "backups -1"},
		{func(c *Cluster) { c.Shards = 0 }, "shards 0"},
		{func(c *Cluster) { c.Params, c.Shards = 1, 2 }, "shards 2 for 1 parameters"},
		{func(c *Cluster) { c.Params = 0 }, "params 0"},
		{func(c *Cluster) { c.Buffers = -1 }, "buffers -1"},
		{func(c *Cluster) { c.WireBytes = 3 }, "wire bytes 3"},
		{func(c *Cluster) { c.WorkerLink = 0 }, "worker link"},
		{func(c *Cluster) { c.ShardLink = -1 }, "shard link"},
		{func(c *Cluster) { c.SingleHost = true }, "loopback rate"},
		{func(c *Cluster) { c.SingleHost, c.Loopback, c.Cores = true, 1e9, -1 }, "cores -1"},
		{func(c *Cluster) { c.TransportEfficiency = 1.5 }, "transport efficiency 1.5"},
		{func(c *Cluster) { c.Compute = 0 }, "compute time 0s"},
		{func(c *Cluster) { c.BackwardFraction = 2 }, "backward fraction 2"},
		{func(c *Cluster) { c.MeanRate = math.Inf(1) }, "mean rate"},
		{func(c *Cluster) { c.ApplyRate = -1 }, "apply rate"},
		{func(c *Cluster) { c.RTT = -1 }, "rtt"},
		{func(c *Cluster) { c.Batch = -1 }, "batch -1"},
	} {
		cl := base()
		c.edit(&cl)
		_, err := Predict(cl)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error naming %q, got %v", c.want, err)
		}
	}
	cl := base()
	cl.Workers, cl.WireBytes = 0, 3
	err := cl.Validate()
	if err == nil || !strings.Contains(err.Error(), "workers 0") || !strings.Contains(err.Error(), "wire bytes 3") {
		t.Errorf("two bad fields: want both named, got %v", err)
	}
	if err := base().Validate(); err != nil {
		t.Errorf("base: %v", err)
	}
}

// TestFewestShards: for base, T(P) = 2·max(4, 16/P) + 100 + 13/P + 3 ms,
// so E(1) = 100/148, E(2) = 100/125.5, E(3) = 100/118, E(4) = 100/114.25,
// and E → 100/111 as P grows. 0.8 needs 3 shards, 0.87 needs 4; 0.895
// needs 13/P ≤ 0.7318 ms, P = 18 (P = 17 gives 0.89474); 0.95 is beyond
// the limit, which the worker links set.
func TestFewestShards(t *testing.T) {
	for _, c := range []struct {
		target float64
		shards int
	}{{0.6, 1}, {0.8, 3}, {0.87, 4}, {0.895, 18}} {
		r, err := FewestShards(base(), c.target)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Reached || r.Shards != c.shards {
			t.Errorf("target %v: reached %v with %d shards, want %d", c.target, r.Reached, r.Shards, c.shards)
		}
		if r.Prediction.Efficiency < c.target {
			t.Errorf("target %v: the prediction returned has %v", c.target, r.Prediction.Efficiency)
		}
	}
	r, err := FewestShards(base(), 0.95)
	if err != nil {
		t.Fatal(err)
	}
	if r.Reached || r.MaxShards != 1e6 || !strings.Contains(r.Reason, "worker link") {
		t.Errorf("target 0.95: %+v; want not reached at 10⁶ shards, the worker link named", r)
	}
	if e := r.Prediction.Efficiency; math.Abs(e-100/111.000013) > 1e-4 {
		t.Errorf("best efficiency %v, want ≈ 100/111", e)
	}
	for _, bad := range []float64{0, 1, -0.5, math.NaN()} {
		if _, err := FewestShards(base(), bad); err == nil || !strings.Contains(err.Error(), "target efficiency") {
			t.Errorf("target %v: want an error naming the target, got %v", bad, err)
		}
	}
	c := base()
	c.Params = 0
	if _, err := FewestShards(c, 0.9); err == nil || !strings.Contains(err.Error(), "params 0") {
		t.Errorf("no params: want the size named, got %v", err)
	}
}

// TestCheck: a single-host record by hand (TestPredictSingleHost's cluster
// on 2 cores with no commit time and RTT 0): predicted 72.017 ms, against
// 80 ms measured −9.98%, inside the tolerance; against 50 ms +44%,
// outside, and CheckAll names it.
func TestCheck(t *testing.T) {
	zero := Seconds(0)
	r := Record{Name: "w2-p2", Workers: 2, Shards: 2, Params: 1e6, Buffers: 1000, WireBytes: 4,
		Compute: Seconds(50 * time.Millisecond), RawTCP: 1e9, Step: Seconds(80 * time.Millisecond),
		Cores: 2, RTT: &zero, MeanRate: 1e9, ApplyRate: 1e8}
	res, err := Check(r)
	if err != nil {
		t.Fatal(err)
	}
	if !near(res.Prediction.Step.D(), ms(72.017)) || math.Abs(res.RelErr-(72.017-80)/80) > 1e-6 || !res.OK {
		t.Errorf("predicted %v, rel err %v, ok %v; want 72.017ms, %v, true", res.Prediction.Step.D(), res.RelErr, res.OK, (72.017-80)/80)
	}
	slow := r
	slow.Name, slow.Step = "fast-run", Seconds(50*time.Millisecond)
	results, err := CheckAll([]Record{r, slow})
	if !errors.Is(err, ErrOffTolerance) || !strings.Contains(err.Error(), "fast-run (+44%") {
		t.Errorf("CheckAll: want ErrOffTolerance naming fast-run at +44%%, got %v", err)
	}
	if len(results) != 2 || !results[0].OK || results[1].OK {
		t.Errorf("results %+v: want the first ok, the second not", results)
	}
	// A transport at half the raw rate doubles the transfers: 16.016 ms
	// each way, 88.033 ms.
	half := r
	half.TransportEfficiency = 0.5
	if res, err := Check(half); err != nil || !near(res.Prediction.Step.D(), ms(88.033)) {
		t.Errorf("η = 0.5: predicted %v (%v), want 88.033ms", res.Prediction.Step.D(), err)
	}
	// A default RTT adds 3·100 µs.
	r.RTT = nil
	if res, err = Check(r); err != nil || !near(res.Prediction.Step.D(), ms(72.317)) {
		t.Errorf("default RTT: predicted %v (%v), want 72.317ms", res.Prediction.Step.D(), err)
	}
	r.Step = 0
	if _, err := Check(r); err == nil || !strings.Contains(err.Error(), "step_s") {
		t.Errorf("no measured step: want step_s named, got %v", err)
	}
	r.Step, r.RawTCP = Seconds(time.Second), 0
	if _, err := Check(r); err == nil || !strings.Contains(err.Error(), "loopback rate") {
		t.Errorf("no raw-TCP rate: want it named, got %v", err)
	}
	if _, err := CheckAll(nil); err == nil {
		t.Error("CheckAll of nothing: want an error")
	}
}

// TestReadRecords: the JSON form of a record, seconds and bytes/s, with an
// unknown field ignored; malformed input is an error naming the format.
func TestReadRecords(t *testing.T) {
	rs, err := ReadRecords([]byte(`[{"name": "a", "workers": 4, "backups": 0, "shards": 2, "params": 3274634,
		"wire_bytes": 2, "compute_s": 0.1, "raw_tcp_bytes_per_s": 2.1e9, "step_s": 0.163, "cores": 2,
		"overlap": true, "backward_fraction": 0.25, "rtt_s": 0.0002, "transport_efficiency": 0.2, "samples_per_s": 123}]`))
	if err != nil {
		t.Fatal(err)
	}
	want := Record{Name: "a", Workers: 4, Shards: 2, Params: 3274634, WireBytes: 2,
		Compute: Seconds(100 * time.Millisecond), RawTCP: 2.1e9, Step: Seconds(163 * time.Millisecond),
		Cores: 2, Overlap: true, BackwardFraction: 0.25, TransportEfficiency: 0.2}
	if len(rs) != 1 || rs[0].RTT == nil || rs[0].RTT.D() != 200*time.Microsecond {
		t.Fatalf("records %+v: want one with rtt 200µs", rs)
	}
	rs[0].RTT = nil
	if rs[0] != want {
		t.Errorf("record %+v, want %+v", rs[0], want)
	}
	for _, bad := range []string{`{"workers": 1}`, `[{"compute_s": "1s"}]`, `[{"step_s": -1}]`} {
		if _, err := ReadRecords([]byte(bad)); err == nil || !strings.Contains(err.Error(), "JSON array") {
			t.Errorf("%s: want an error describing the format, got %v", bad, err)
		}
	}
}
