package node

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/plan"
	"github.com/logitpair/logitpair/pkg/statuspage"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
)

// TestClusterBenchRunsASyntheticCluster runs `bench cluster`'s path end to
// end on a tiny model: a real cluster of 2 synthetic workers and 1 shard
// (processes, TLS), measured and stopped, its temporary directory removed.
// The numbers are checked for consistency, not speed (no wall-clock
// threshold): the sizes are the model's, the bound and target follow from
// the raw-TCP times, every time is positive and finite and the spread is
// ordered. The workers find no training data (none is given), so a run
// that completes is one of synthetic workers.
func TestClusterBenchRunsASyntheticCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the run directory must be gone afterwards
	b := DefaultClusterBench()
	b.Exe = exe
	b.ModelConfig = models.Config{"conv1": 2, "conv2": 4, "hidden": 16}
	b.Compute, b.Warmup, b.Steps, b.TCPRounds = 2*time.Millisecond, 2, 4, 2
	b.StartTimeout, b.Timeout = time.Minute, 3*time.Minute
	var out bytes.Buffer
	b.Out = &out
	results, err := RunClusterBenches(context.Background(), b, []int{2}, []int{1})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(results) != 1 {
		t.Fatalf("%d results, want 1", len(results))
	}
	r := results[0]

	tc := train.DefaultConfig()
	tc.ModelConfig = b.ModelConfig
	m, err := models.New(cpu.New(cpu.Options{Threads: 1}), tc.Model, tc.ModelConfig)
	if err != nil {
		t.Fatal(err)
	}
	np := m.FlatLayout().Total
	if r.Params != np || r.Workers != 2 || r.Shards != 1 || !r.TLS || r.Model != "madry-mnist" || r.WarmupSteps != 2 {
		t.Fatalf("result %+v: want %d parameters, 2 workers, 1 shard, TLS", r, np)
	}
	if r.BytesPerWorker != 4*int64(r.Params+r.Buffers) || r.PushBytesPerWorker != r.BytesPerWorker || r.BytesPerStep != 2*2*r.BytesPerWorker {
		t.Fatalf("bytes %d pulled and %d pushed per worker, %d per step: want 4·(params+buffers) each way and 2·W times that", r.BytesPerWorker, r.PushBytesPerWorker, r.BytesPerStep)
	}
	if r.WireFormat != "float32" || r.WireBytes != 4 || !r.Overlap || r.Backups != 0 || r.Cores < 1 {
		t.Fatalf("result %+v: want float32 pushes of 4 bytes, overlap, no backups, the machine's cores", r)
	}
	if len(r.StepTimesS) != b.Steps {
		t.Fatalf("%d step times, want %d", len(r.StepTimesS), b.Steps)
	}
	finite := func(name string, v float64) {
		if !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s = %v, want positive and finite", name, v)
		}
	}
	for _, x := range []struct {
		name string
		v    float64
	}{{"raw TCP (one worker)", r.RawTCPWorkerS}, {"raw TCP (all)", r.RawTCPTotalS}, {"raw TCP rate", r.RawTCPBytesPerS},
		{"step median", r.StepS}, {"step mean", r.StepMeanS}, {"step p90", r.StepP90S}, {"ratio", r.Ratio},
		{"planned step", r.PredictedS}} {
		finite(x.name, x.v)
	}
	if r.TransferBoundS != r.RawTCPTotalS || r.TargetS != max(r.ComputeS, r.TransferBoundS) || r.ComputeS != 0.002 {
		t.Fatalf("bound %v, target %v, compute %v: want the all-workers raw-TCP time and max(compute, bound)", r.TransferBoundS, r.TargetS, r.ComputeS)
	}
	if !(r.StepMinS > 0) || r.StepMinS > r.StepS || r.StepS > r.StepP90S || r.StepP90S > r.StepMaxS || !slices.Contains(r.StepTimesS, r.StepMaxS) {
		t.Fatalf("step times min %v, median %v, p90 %v, max %v of %v: want 0 < min ≤ median ≤ p90 ≤ max, taken from the step times", r.StepMinS, r.StepS, r.StepP90S, r.StepMaxS, r.StepTimesS)
	}
	js, err := json.Marshal(results)
	if err != nil {
		t.Fatalf("the results do not marshal: %v", err)
	}
	// The JSON is what `plan --check` reads: its check gives the same
	// prediction as the one in the result.
	var recs []plan.Record
	if err := json.Unmarshal(js, &recs); err != nil {
		t.Fatal(err)
	}
	c, err := plan.Check(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.Prediction.Step.D().Seconds() != r.PredictedS || c.RelErr != r.PredictionErr {
		t.Fatalf("plan --check of the JSON predicts %v (error %v), the result says %v (%v)", c.Prediction.Step.D(), c.RelErr, r.PredictedS, r.PredictionErr)
	}
	var table bytes.Buffer
	if err := WriteClusterBenchTable(&table, results); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(table.String()), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "madry-mnist") {
		t.Fatalf("table:\n%s", table.String())
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Fatalf("left behind in the temporary directory: %v", ents)
	}
}

func TestClusterBenchRefusesBadSettings(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mod  func(*ClusterBench)
		want string
	}{
		{func(b *ClusterBench) { b.Compute = -time.Millisecond }, "--compute must be ≥ 0"},
		{func(b *ClusterBench) { b.Workers = 0 }, "--workers"},
		{func(b *ClusterBench) { b.PS = 0 }, "--ps"},
		{func(b *ClusterBench) { b.Warmup = 0 }, "--warmup"},
		{func(b *ClusterBench) { b.Steps = 0 }, "--steps"},
		{func(b *ClusterBench) { b.Steps = statusHistoryPoints }, "step history"},
		{func(b *ClusterBench) { b.TCPRounds = 0 }, "--tcp-rounds"},
		{func(b *ClusterBench) { b.Timeout = 0 }, "--timeout"},
		{func(b *ClusterBench) { b.Dir = full }, "is not empty"},
		{func(b *ClusterBench) { b.Model = "no-such-model" }, "no-such-model"},
	} {
		b := DefaultClusterBench()
		b.Exe = "/nonexistent/logitpair"
		c.mod(&b)
		if _, err := b.Run(context.Background()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Run = %v, want an error about %q", err, c.want)
		}
	}
}

// TestClusterBenchStatistics: the step times are the differences of the
// commit times after the warm-up, and their summary is exact.
func TestClusterBenchStatistics(t *testing.T) {
	t0 := time.Unix(100, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	h := []statuspage.Point{{Step: 0, Time: ms(0)}, {Step: 1, Time: ms(50)}, {Step: 2, Time: ms(60)}, {Step: 4, Time: ms(100)}}
	if _, ok := historyTimes(h, 5); ok {
		t.Fatal("a history without step 3 was taken as complete")
	}
	h = append(h, statuspage.Point{Step: 3, Time: ms(80)})
	at, ok := historyTimes(h, 5)
	if !ok || !at[3].Equal(ms(80)) || !at[4].Equal(ms(100)) {
		t.Fatalf("historyTimes = %v, %v", at, ok)
	}
	r := ClusterBenchResult{StepTimesS: []float64{0.04, 0.01, 0.02, 0.03}, TargetS: 0.02}
	r.summarize()
	const eps = 1e-12
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"median", r.StepS, 0.025}, {"mean", r.StepMeanS, 0.025}, {"min", r.StepMinS, 0.01}, {"max", r.StepMaxS, 0.04},
		{"p90", r.StepP90S, 0.037}, {"sd", r.StepStdS, math.Sqrt(0.000125)}, {"ratio", r.Ratio, 1.25}} {
		if math.Abs(c.got-c.want) > eps {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
