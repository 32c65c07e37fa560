package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/logitpair/logitpair/pkg/bench"
	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/netbench"
	"github.com/logitpair/logitpair/pkg/plan"
	"github.com/logitpair/logitpair/pkg/statuspage"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/wire"
)

// ClusterBench is `logitpair bench cluster`: a real local cluster (the
// LocalCluster launcher: separate processes on loopback, mutual TLS unless
// NoTLS) whose workers compute with bench.Synthetic, so that the cluster's
// overhead is measured at a GPU's step time on a CPU machine; its step
// time is compared with the larger of the compute time and what raw TCP
// on this machine needs to move the step's bytes (ClusterBenchResult).
type ClusterBench struct {
	// Exe is the logitpair executable the processes run.
	Exe string
	// Dir is the run directory (logs, addresses, certificates), which must
	// not exist or be empty; "" means a temporary one, removed afterwards.
	Dir string
	// Model and ModelConfig are the model whose parameters the cluster
	// moves (no model is trained: only its sizes and the shards'
	// optimizer state matter).
	Model       string
	ModelConfig models.Config
	// Compute is each worker's synthetic compute phase per step (≥ 0).
	Compute time.Duration
	// Workers and PS are the worker and parameter-server processes (no
	// backups: every step waits for every worker).
	Workers, PS int
	// Warmup is how many steps' times are skipped (the first commit also
	// waits for every process to join); Steps how many are measured.
	Warmup, Steps int
	// NoTLS runs the processes without mutual TLS (LocalCluster.NoTLS).
	NoTLS bool
	// WireFormat is the pushes' gradient format (train.Config.WireFormat;
	// "" means float32).
	WireFormat string
	// TCPRounds is the number of rounds each raw-TCP measurement averages.
	TCPRounds int
	// StartTimeout bounds the cluster's start (LocalCluster.StartTimeout;
	// 0: its default); Timeout the measured steps, from the start on.
	StartTimeout, Timeout time.Duration
	// Out receives progress lines (nil: none).
	Out io.Writer
}

// DefaultClusterBench is madry-mnist at 20 ms of compute, 2 workers, 1
// shard, TLS, 30 steps measured after 5.
func DefaultClusterBench() ClusterBench {
	return ClusterBench{Model: "madry-mnist", Compute: 20 * time.Millisecond, Workers: 2, PS: 1, Warmup: 5, Steps: 30,
		TCPRounds: 5, Timeout: 10 * time.Minute}
}

// ClusterBenchTargetRatio is the goal for ClusterBenchResult.Ratio (issue
// 13): a step within 1.2× of max(compute, transfer bound).
const ClusterBenchTargetRatio = 1.2

// benchTailSteps are steps the run is given beyond those measured, so that
// the coordinator is still running (or lingering after the end) when the
// benchmark reads its step history; the benchmark stops the run as soon as
// it has read it. Twice the measured steps are given on top.
const benchTailSteps = 20

// ClusterBenchResult is one measured configuration. Times are in seconds.
//
// Bytes: per step, each worker pulls the parameters and buffers and pushes
// a gradient and buffers of the same sizes, 4·(params+buffers) bytes each
// way (BytesPerWorker); all workers together move BytesPerStep = 2 ·
// Workers · BytesPerWorker through the shards.
//
// The transfer bound is RawTCPTotalS: the time one loopback TCP connection
// needs to carry Workers·BytesPerWorker each way (netbench.RawTCP). On one
// machine every worker's transfer goes through the same kernel, cores and
// memory, so the step's bytes in total, not one worker's share, are what a
// perfect transport would have to move; one connection keeps a sender and
// a receiver busy, two cores, which is all of a 2-core machine. With more
// cores, parallel connections could move the bytes faster, and the bound
// is then generous to the cluster. RawTCPWorkerS (one worker's bytes) is
// the bound a real network with a link per worker and shard would set,
// reported for comparison.
//
// The JSON of a result is also a plan.Record (the fields the planning
// model reads: workers, backups, shards, params, buffers, wire_bytes,
// compute_s, raw_tcp_bytes_per_s, cores, overlap, backward_fraction,
// step_s), so `logitpair plan --check` reads `bench cluster --json`'s file
// as it is; PredictedS and PredictionErr are that check, made here.
type ClusterBenchResult struct {
	Name        string        `json:"name"`
	Model       string        `json:"model"`
	ModelConfig models.Config `json:"model_config,omitempty"`
	Workers     int           `json:"workers"`
	Backups     int           `json:"backups"`
	Shards      int           `json:"shards"`
	TLS         bool          `json:"tls"`
	// Cores is the machine's logical CPU count (every process shares them).
	Cores   int `json:"cores"`
	Params  int `json:"params"`
	Buffers int `json:"buffers"`
	// WireFormat and WireBytes: the pushes' gradient format and its bytes
	// per value (4 for float32, 2 for bf16).
	WireFormat string `json:"wire_format"`
	WireBytes  int    `json:"wire_bytes"`
	// Overlap: the workers push during the backward pass and pull the next
	// step ahead (always, since issue 13).
	Overlap bool `json:"overlap"`
	// BytesPerWorker is one worker's pull per step, 4·(params+buffers), the
	// larger direction; PushBytesPerWorker its push, wire_bytes·params +
	// 4·buffers; BytesPerStep all the bytes a step moves, both ways, all
	// workers.
	BytesPerWorker     int64 `json:"bytes_per_worker"`
	PushBytesPerWorker int64 `json:"push_bytes_per_worker"`
	BytesPerStep       int64 `json:"bytes_per_step"`
	// ComputeS is the synthetic compute phase; BackwardFraction and
	// BackwardSlices its backward part (bench.SyntheticConfig).
	ComputeS         float64 `json:"compute_s"`
	BackwardFraction float64 `json:"backward_fraction"`
	BackwardSlices   int     `json:"backward_slices"`
	// RawTCPWorkerS and RawTCPTotalS are the raw-TCP times for one
	// worker's bytes and for all workers' bytes (each way, per step);
	// RawTCPBytesPerS is the rate of the latter, both ways counted.
	RawTCPWorkerS   float64 `json:"raw_tcp_worker_s"`
	RawTCPTotalS    float64 `json:"raw_tcp_total_s"`
	RawTCPBytesPerS float64 `json:"raw_tcp_bytes_per_s"`
	// TransferBoundS is RawTCPTotalS; TargetS is max(ComputeS,
	// TransferBoundS).
	TransferBoundS float64 `json:"transfer_bound_s"`
	TargetS        float64 `json:"target_s"`
	// StepS is the median measured step time (between consecutive commits
	// on the coordinator); the others are its spread over StepTimesS.
	StepS       float64   `json:"step_s"`
	StepMeanS   float64   `json:"step_mean_s"`
	StepStdS    float64   `json:"step_std_s"`
	StepMinS    float64   `json:"step_min_s"`
	StepP90S    float64   `json:"step_p90_s"`
	StepMaxS    float64   `json:"step_max_s"`
	WarmupSteps int       `json:"warmup_steps"`
	StepTimesS  []float64 `json:"step_times_s"`
	// Ratio is StepS / TargetS (the goal: ≤ ClusterBenchTargetRatio).
	Ratio float64 `json:"ratio"`
	// PredictedS is the planning model's step time for this run
	// (plan.Check of the result as a plan.Record: single host, the
	// measured raw-TCP rate as the link) and PredictionErr its relative
	// error, (predicted − measured)/measured.
	PredictedS    float64 `json:"predicted_s"`
	PredictionErr float64 `json:"prediction_err"`
}

func (b ClusterBench) logf(format string, a ...any) {
	if b.Out != nil {
		fmt.Fprintf(b.Out, format+"\n", a...)
	}
}

// validate names the first setting out of range.
func (b ClusterBench) validate() error {
	switch {
	case b.Exe == "":
		return errors.New("bench cluster: no logitpair executable to start the processes with")
	case b.Compute < 0:
		return fmt.Errorf("bench cluster: --compute must be ≥ 0, got %v", b.Compute)
	case b.Workers < 1:
		return fmt.Errorf("bench cluster: --workers must be at least 1, got %d", b.Workers)
	case b.PS < 1:
		return fmt.Errorf("bench cluster: --ps must be at least 1, got %d", b.PS)
	case b.Warmup < 1:
		return fmt.Errorf("bench cluster: --warmup must be at least 1 (the first commit waits for every process to join), got %d", b.Warmup)
	case b.Steps < 1:
		return fmt.Errorf("bench cluster: --steps must be at least 1, got %d", b.Steps)
	case b.Warmup+b.Steps >= statusHistoryPoints:
		return fmt.Errorf("bench cluster: --warmup + --steps must be below %d (the coordinator's step history), got %d", statusHistoryPoints, b.Warmup+b.Steps)
	case b.TCPRounds < 1:
		return fmt.Errorf("bench cluster: --tcp-rounds must be at least 1, got %d", b.TCPRounds)
	case b.Timeout <= 0:
		return fmt.Errorf("bench cluster: --timeout must be positive, got %v", b.Timeout)
	}
	if b.Dir != "" {
		if ents, err := os.ReadDir(b.Dir); err == nil && len(ents) > 0 {
			return fmt.Errorf("bench cluster: --dir %s is not empty: give a new directory (each measurement starts a fresh run)", b.Dir)
		}
	}
	return nil
}

// Run measures one configuration: the model's sizes, the raw-TCP times,
// then the cluster (started, measured, stopped; a temporary directory
// removed).
func (b ClusterBench) Run(ctx context.Context) (ClusterBenchResult, error) {
	var res ClusterBenchResult
	if err := b.validate(); err != nil {
		return res, err
	}
	// Commits read: steps 0 … Warmup+Steps.
	commits := int64(b.Warmup + b.Steps + 1)
	tc := train.DefaultConfig()
	tc.Model, tc.ModelConfig, tc.WireFormat = b.Model, b.ModelConfig, b.WireFormat
	tc.Steps, tc.CheckpointEvery = 2*commits+benchTailSteps, 0
	if err := tc.Validate(); err != nil {
		return res, fmt.Errorf("bench cluster: %w", err)
	}
	np, nb, err := modelSizes(tc, b.PS)
	if err != nil {
		return res, fmt.Errorf("bench cluster: %w", err)
	}
	format, err := tc.Wire()
	if err != nil {
		return res, fmt.Errorf("bench cluster: %w", err)
	}
	wireBytes := 4
	if format == wire.BF16 {
		wireBytes = 2
	}
	syn := bench.DefaultSyntheticConfig(b.Compute)
	res = ClusterBenchResult{Name: fmt.Sprintf("%s w%d ps%d %s", b.Model, b.Workers, b.PS, format), Model: b.Model, ModelConfig: b.ModelConfig,
		Workers: b.Workers, Shards: b.PS, TLS: !b.NoTLS, Cores: runtime.NumCPU(), Params: np, Buffers: nb,
		WireFormat: format.String(), WireBytes: wireBytes, Overlap: true, ComputeS: b.Compute.Seconds(),
		BackwardFraction: syn.Backward, BackwardSlices: syn.Slices, WarmupSteps: b.Warmup}
	res.BytesPerWorker = 4 * int64(res.Params+res.Buffers)
	res.PushBytesPerWorker = int64(wireBytes)*int64(res.Params) + 4*int64(res.Buffers)
	res.BytesPerStep = int64(b.Workers) * (res.BytesPerWorker + res.PushBytesPerWorker)

	// Raw TCP first, with the machine otherwise idle.
	tw, err := netbench.RawTCP(res.BytesPerWorker, b.TCPRounds)
	if err != nil {
		return res, fmt.Errorf("bench cluster: raw TCP for one worker's bytes: %w", err)
	}
	tt, err := netbench.RawTCP(int64(b.Workers)*res.BytesPerWorker, b.TCPRounds)
	if err != nil {
		return res, fmt.Errorf("bench cluster: raw TCP for all workers' bytes: %w", err)
	}
	res.RawTCPWorkerS, res.RawTCPTotalS = tw.Seconds(), tt.Seconds()
	res.RawTCPBytesPerS = float64(2*int64(b.Workers)*res.BytesPerWorker) / tt.Seconds()
	res.TransferBoundS = res.RawTCPTotalS
	res.TargetS = max(res.ComputeS, res.TransferBoundS)
	b.logf("%s, %d workers, %d shard(s): %d parameters, %.1f MB each way per worker; raw TCP %.1f ms (one worker's bytes), %.1f ms (all workers')",
		b.Model, b.Workers, b.PS, res.Params, float64(res.BytesPerWorker)/1e6, 1e3*res.RawTCPWorkerS, 1e3*res.RawTCPTotalS)

	times, err := b.measure(ctx, tc, commits)
	if err != nil {
		return res, err
	}
	res.StepTimesS = times
	res.summarize()
	if err := res.predict(); err != nil {
		return res, fmt.Errorf("bench cluster: the planning model: %w", err)
	}
	return res, nil
}

// predict fills PredictedS and PredictionErr: the planning model's step
// time for this run, read back from the result's own JSON as a
// plan.Record (so that the fields `plan --check` reads are the ones
// checked here).
func (r *ClusterBenchResult) predict() error {
	js, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var rec plan.Record
	if err := json.Unmarshal(js, &rec); err != nil {
		return err
	}
	c, err := plan.Check(rec)
	if err != nil {
		return err
	}
	r.PredictedS, r.PredictionErr = c.Prediction.Step.D().Seconds(), c.RelErr
	return nil
}

// modelSizes returns the lengths of the flat parameter and buffer vectors
// of tc's model, from the layout the coordinator builds (the model itself
// is garbage once it returns).
func modelSizes(tc train.Config, shards int) (params, buffers int, err error) {
	layout, _, err := cluster.NewLayout(cpu.New(cpu.Options{Threads: 1}), tc, shards)
	if err != nil {
		return 0, 0, err
	}
	return layout.Params.Total, layout.Buffers.Total, nil
}

// measure runs the cluster until the coordinator has committed commits
// steps and returns the step times after the warm-up, in seconds.
func (b ClusterBench) measure(ctx context.Context, tc train.Config, commits int64) ([]float64, error) {
	dir := b.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "logitpair-bench-cluster-")
		if err != nil {
			return nil, fmt.Errorf("bench cluster: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	tc.Out = dir
	compute := b.Compute
	l := LocalCluster{Exe: b.Exe, Dir: dir, Workers: b.Workers, PS: b.PS, Train: tc, NoTLS: b.NoTLS,
		SyntheticCompute: &compute, StartTimeout: b.StartTimeout, Out: b.Out}
	deadline := time.Now().Add(b.Timeout)
	c, err := l.Start(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench cluster: %w", err)
	}
	defer c.Stop(c.L.StopGrace)
	at, err := b.commitTimes(ctx, c, commits, deadline)
	if err != nil {
		return nil, fmt.Errorf("bench cluster: %w (logs in %s)", err, filepath.Join(dir, "logs"))
	}
	var out []float64
	for s := b.Warmup + 1; s < int(commits); s++ {
		out = append(out, at[s].Sub(at[s-1]).Seconds())
	}
	return out, nil
}

// benchPollEvery is how often the benchmark reads the coordinator's status.
const benchPollEvery = 100 * time.Millisecond

// commitTimes polls the coordinator's status until its history holds the
// commits of steps 0 … commits−1, and returns their times. It fails when a
// process exits, when the run ends without them, or at deadline.
func (b ClusterBench) commitTimes(ctx context.Context, c *Cluster, commits int64, deadline time.Time) ([]time.Time, error) {
	procs := append(append([]*Proc{c.Coord}, c.PS...), c.Workers...)
	tick := time.NewTicker(benchPollEvery)
	defer tick.Stop()
	var step int64
	var lastErr error
	for {
		for _, p := range procs {
			if p == nil {
				continue
			}
			if done, err := p.Exited(); done {
				return nil, fmt.Errorf("%s exited during the benchmark (%v); the end of its log:\n%s", p.Name, err, c.LogTail(p.Name, 10))
			}
		}
		st, err := c.CoordinatorStatus(5 * time.Second)
		if err == nil {
			step = st.Run.Step
			if at, ok := historyTimes(st.History, commits); ok {
				return at, nil
			}
			if st.Run.Phase == statuspage.PhaseDone {
				return nil, fmt.Errorf("the run ended, but the coordinator's history lacks some of steps 0 … %d", commits-1)
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("%d of %d steps committed within --timeout %v", step, commits, b.Timeout)
			if lastErr != nil {
				msg += fmt.Sprintf(" (last status read: %v)", lastErr)
			}
			return nil, fmt.Errorf("%s; raise --timeout on a slow machine, or see the coordinator's log", msg)
		}
	}
}

// historyTimes returns the commit times of steps 0 … n−1 from a status
// history (false when any is missing).
func historyTimes(h []statuspage.Point, n int64) ([]time.Time, bool) {
	at := make([]time.Time, n)
	found := int64(0)
	for _, p := range h {
		if p.Step >= 0 && p.Step < n && at[p.Step].IsZero() {
			at[p.Step] = p.Time
			found++
		}
	}
	return at, found == n
}

// summarize fills the step-time statistics and the ratio from StepTimesS.
func (r *ClusterBenchResult) summarize() {
	ts := slices.Clone(r.StepTimesS)
	slices.Sort(ts)
	n := len(ts)
	if n == 0 {
		return
	}
	var sum float64
	for _, t := range ts {
		sum += t
	}
	r.StepMeanS = sum / float64(n)
	var ss float64
	for _, t := range ts {
		ss += (t - r.StepMeanS) * (t - r.StepMeanS)
	}
	r.StepStdS = math.Sqrt(ss / float64(n))
	r.StepS = quantile(ts, 0.5)
	r.StepP90S = quantile(ts, 0.9)
	r.StepMinS, r.StepMaxS = ts[0], ts[n-1]
	if r.TargetS > 0 {
		r.Ratio = r.StepS / r.TargetS
	}
}

// quantile is the q-quantile of sorted (linear between the nearest ranks).
func quantile(sorted []float64, q float64) float64 {
	x := q * float64(len(sorted)-1)
	i := int(x)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (x-float64(i))*(sorted[i+1]-sorted[i])
}

// RunClusterBenches measures b for every pair of worker and shard counts,
// in order; with b.Dir set, each in its own subdirectory wW-psS. It
// returns the results measured so far with the first error.
func RunClusterBenches(ctx context.Context, b ClusterBench, workers, shards []int) ([]ClusterBenchResult, error) {
	var out []ClusterBenchResult
	for _, w := range workers {
		for _, s := range shards {
			one := b
			one.Workers, one.PS = w, s
			if b.Dir != "" {
				one.Dir = filepath.Join(b.Dir, fmt.Sprintf("w%d-ps%d", w, s))
			}
			r, err := one.Run(ctx)
			if err != nil {
				return out, fmt.Errorf("%d workers, %d shards: %w", w, s, err)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// WriteClusterBenchTable prints results as a table, one configuration a
// line (times in milliseconds).
func WriteClusterBenchTable(w io.Writer, results []ClusterBenchResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "model\tW\tPS\tTLS\twire\tMB/worker\tcompute\traw TCP 1 worker\traw TCP all (bound)\tmax(compute, bound)\tstep median\tmean ± sd\tp90\tratio\t≤ %.1f\tplan\tplan err\t\n", ClusterBenchTargetRatio)
	ms := func(s float64) string { return fmt.Sprintf("%.1f", 1e3*s) }
	for _, r := range results {
		ok := "yes"
		if r.Ratio > ClusterBenchTargetRatio {
			ok = "no"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%t\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s ± %s\t%s\t%.2f\t%s\t%s\t%+.0f%%\t\n", r.Model, r.Workers, r.Shards, r.TLS,
			r.WireFormat, float64(r.BytesPerWorker)/1e6, ms(r.ComputeS), ms(r.RawTCPWorkerS), ms(r.RawTCPTotalS), ms(r.TargetS),
			ms(r.StepS), ms(r.StepMeanS), ms(r.StepStdS), ms(r.StepP90S), r.Ratio, ok, ms(r.PredictedS), 100*r.PredictionErr)
	}
	return tw.Flush()
}
