// Package plan is a planning model of logitpair's synchronous cluster: from
// the layout (workers, backups, shards), the model's size, the links, the
// compute time per step and the shards' update rates it predicts the step
// time and its parts, the bandwidth each worker and each shard needs, the
// scaling efficiency, and the fewest shards that reach a target efficiency
// (`logitpair plan`, docs/plan.md). Check compares it with loopback
// measurements of the real cluster.
//
// # The system it describes
//
// One step t (docs/architecture.md, "One synchronous cluster step"): every
// one of the W workers (backups included) pulls its slice of the flat
// float32 parameter vector (and of the batch-norm buffers) from each of the
// P shards, computes its gradient (compute time C: the attack, the forward
// and the backward passes), pushes each shard its slice of the gradient and
// buffers, and reports to the coordinator. The coordinator takes the first
// N = W − b reports, appends the step to its commit log and sends Apply to
// every shard, which averages the N gradients and runs the optimizer over
// its S/P elements; then the next step's pulls are answered. Shards are
// balanced by element count (paramserver.Partition), so every shard holds
// S/P parameters.
//
// # Notation
//
//	W workers, b backups, N = W − b; P shards
//	S parameters, B buffer elements (batch-norm running statistics)
//	w bytes per gradient element on the wire (4: float32, 2: bf16); buffers
//	  and parameters always travel as float32
//	L_w, L_s the workers' and the shards' link rates in bytes/s, each way
//	  (full duplex); η the fraction of a link's rate the transport moves as
//	  payload (1: the transport reaches the link rate)
//	C compute time; f the share of C in which the gradient becomes final
//	  slice by slice (the final backward pass), F = f·C
//	R_m gradient elements a shard averages per second (the mean over N),
//	R_u elements a shard updates per second (RMSProp, one core)
//	RTT one network round trip; T_c the commit log's fsync
//	single host: R the loopback's rate in bytes/s (raw TCP, one stream),
//	  K the machine's cores
//
// # Equations
//
// Bytes per worker per step, and per shard (each way):
//
//	D_pull = 4(S + B)                    into each worker
//	D_push = w·S + 4B                    out of each worker
//	shard out W·D_pull/P, shard in W·D_push/P
//
// Transfer phases (all W workers move their bytes at once, and with fair
// sharing the first N finish with the last, so backups load the links as
// much as the others). Across a cluster the slower of the worker's link and
// the shard's link bounds a phase; on a single host every byte of every
// worker and shard crosses the one loopback:
//
//	cluster:      T_pull = max(D_pull/(η·L_w), W·D_pull/(P·η·L_s))
//	              T_push = max(D_push/(η·L_w), W·D_push/(P·η·L_s))
//	single host:  T_pull = W·D_pull/(η·R),  T_push = W·D_push/(η·R)
//
// Exposed push X_push, the part of T_push after compute ends. Without
// overlap X_push = T_push. With overlap the gradient becomes final in P
// slices at times F·j/P (j = 1…P) of the backward window, the last at the
// end of C, and each slice is pushed as soon as it is final. A link that
// carries the slices one after another (the worker's, or the loopback)
// takes τ = T/P per slice, so the last one ends max(τ, T − F·(P−1)/P) after
// C; a shard's link carries only its own slice, from all W workers, and the
// last slice's shard cannot start before C ends:
//
//	cluster:      X_push = max(W·D_push/(P·η·L_s), T_w/P, T_w − F·(P−1)/P),  T_w = D_push/(η·L_w)
//	single host:  X_push = max(T_push/P, T_push − F·(P−1)/P)
//
// (with F = 0 both give T_push). Pulls are exposed in both modes,
// X_pull = T_pull: the attack's first forward pass needs every parameter,
// and balanced shards finish their Apply together, so starting each
// shard's pull as it applies gains nothing.
//
// Apply, per shard on one core (the mean is one loop; the update is timed
// on one core too), and on a single host the P shards share K cores:
//
//	A_shard = N·(S + B)/(P·R_m) + S/(P·R_u)
//	cluster:      A = A_shard
//	single host:  A = A_shard · max(1, P/K)
//
// Coordination on the critical path, from the last byte of the N-th push:
// without overlap the push's acknowledgement, the report, Apply's request
// and reply, WaitStep's answer and the next pull's request, 3 RTT; with
// overlap the next pull is already waiting at the shard, which answers it
// when it applies, 1.5 RTT:
//
//	G = 3·RTT + T_c  (no overlap),  G = 1.5·RTT + T_c  (overlap)
//
// The step, its efficiency against one worker that never communicates, and
// the throughput at batch β per worker:
//
//	T = X_pull + C + X_push + A + G
//	E = C/T         (= N·C/(N·T): N workers' ideal rate over their real one)
//	throughput = N·β/T samples/s
//
// Bandwidth needed at that step time (the average over the step; during a
// phase the bounding link runs at its full rate): worker in 8·D_pull/T and
// out 8·D_push/T bits/s, shard out 8·W·D_pull/(P·T) and in 8·W·D_push/(P·T).
//
// # Assumptions
//
// Every worker computes in exactly C (no stragglers: backups only add
// load, their benefit against slow workers is not modelled); shards are
// balanced; links are full duplex and a pull and a push never share a
// direction; a worker's pushes to the P shards (and its pulls) run in
// parallel; the synthetic compute of a single-host measurement uses no core
// (it sleeps), and concurrent loopback streams share R rather than add up;
// per-message latency inside a transfer (chunks, flow control) is in η.
package plan

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Defaults of the rates and latencies a plan needs but rarely knows.
const (
	// DefaultMeanRate is R_m, gradient elements a shard averages per
	// second on one core: BenchmarkShardApply on the 2-core AMD EPYC of
	// 2026-12 measured 0.88–1.30·10⁹ (shared machine); 1.0·10⁹.
	DefaultMeanRate = 1.0e9
	// DefaultApplyRate is R_u, elements a shard's Apply updates per second
	// on one core besides the mean (the paper's RMSProp, the final division
	// of the mean, the finiteness checks): 1.5–2.0·10⁸ on the same machine;
	// 1.7·10⁸.
	DefaultApplyRate = 1.7e8
	// DefaultRTT is one gRPC round trip inside a data centre or on
	// loopback (order of magnitude: it is a few RTT per step, negligible
	// against steps of tens of milliseconds and more).
	DefaultRTT = 100 * time.Microsecond
)

// Cluster is the input of the model: the layout, the model's size, the
// links and the times. Zero values of the optional fields mean: ShardLink =
// WorkerLink, TransportEfficiency = 1, MeanRate and ApplyRate their
// defaults, Cores = 1.
type Cluster struct {
	// Workers is W (backups included), Backups b, Shards P.
	Workers, Backups, Shards int
	// Params is S, the trainable parameters; Buffers B, the float32
	// buffer elements pulled and pushed beside them.
	Params, Buffers int64
	// WireBytes is w, the bytes per gradient element of a push: 4
	// (float32) or 2 (bf16).
	WireBytes int
	// WorkerLink and ShardLink are L_w and L_s in bytes/s, each way;
	// ShardLink 0 means WorkerLink. Unused on a single host.
	WorkerLink, ShardLink float64
	// Loopback is R, the single host's raw-TCP rate in bytes/s (one
	// stream, each way); used only when SingleHost.
	Loopback float64
	// TransportEfficiency is η in (0, 1]; 0 means 1.
	TransportEfficiency float64
	// Compute is C; BackwardFraction is f in [0, 1].
	Compute          time.Duration
	BackwardFraction float64
	// MeanRate is R_m and ApplyRate R_u, elements/s; 0 means the default.
	MeanRate, ApplyRate float64
	// RTT is one round trip; Commit the commit log's fsync.
	RTT, Commit time.Duration
	// Overlap selects the overlapped step; SingleHost the loopback model.
	Overlap, SingleHost bool
	// Cores is K, the single host's cores; 0 means 1.
	Cores int
	// Batch is β, examples per worker per step (for the throughput; 0
	// gives 0 samples/s).
	Batch int
}

// withDefaults returns c with its zero optional fields filled in.
func (c Cluster) withDefaults() Cluster {
	if c.ShardLink == 0 {
		c.ShardLink = c.WorkerLink
	}
	if c.TransportEfficiency == 0 {
		c.TransportEfficiency = 1
	}
	if c.MeanRate == 0 {
		c.MeanRate = DefaultMeanRate
	}
	if c.ApplyRate == 0 {
		c.ApplyRate = DefaultApplyRate
	}
	if c.Cores == 0 {
		c.Cores = 1
	}
	return c
}

// positive reports whether x is finite and > 0.
func positive(x float64) bool { return x > 0 && !math.IsInf(x, 1) }

// Validate checks every field, naming what is wrong and what is allowed.
func (c Cluster) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Workers < 1 {
		bad("workers %d: need at least 1", c.Workers)
	}
	if c.Backups < 0 || (c.Workers >= 1 && c.Backups >= c.Workers) {
		bad("backups %d with %d workers: backups must be in [0, workers−1] (a step needs N = workers − backups ≥ 1 gradients)", c.Backups, c.Workers)
	}
	if c.Params < 1 {
		bad("params %d: need at least 1 parameter (give a model name or a count)", c.Params)
	}
	if c.Buffers < 0 {
		bad("buffers %d: must be ≥ 0", c.Buffers)
	}
	if c.Shards < 1 || (c.Params >= 1 && int64(c.Shards) > c.Params) {
		bad("shards %d for %d parameters: need 1 to %d (every shard holds at least one parameter)", c.Shards, c.Params, max(c.Params, 1))
	}
	if c.WireBytes != 4 && c.WireBytes != 2 {
		bad("wire bytes %d per gradient element: 4 (float32) or 2 (bf16)", c.WireBytes)
	}
	if c.SingleHost {
		if !positive(c.Loopback) {
			bad("loopback rate %v bytes/s: a single-host plan needs the measured raw-TCP rate, > 0", c.Loopback)
		}
		if c.Cores < 1 {
			bad("cores %d: need at least 1", c.Cores)
		}
	} else {
		if !positive(c.WorkerLink) {
			bad("worker link %v bytes/s: must be > 0 (e.g. 25Gbit)", c.WorkerLink)
		}
		if !positive(c.ShardLink) {
			bad("shard link %v bytes/s: must be > 0 (or left out: the worker link)", c.ShardLink)
		}
	}
	if !(c.TransportEfficiency > 0 && c.TransportEfficiency <= 1) {
		bad("transport efficiency %v: must be in (0, 1]", c.TransportEfficiency)
	}
	if c.Compute <= 0 {
		bad("compute time %v: must be > 0 (the time one worker's gradient takes, attack included)", c.Compute)
	}
	if !(c.BackwardFraction >= 0 && c.BackwardFraction <= 1) {
		bad("backward fraction %v: must be in [0, 1]", c.BackwardFraction)
	}
	if !positive(c.MeanRate) {
		bad("mean rate %v elements/s: must be > 0", c.MeanRate)
	}
	if !positive(c.ApplyRate) {
		bad("apply rate %v elements/s: must be > 0", c.ApplyRate)
	}
	if c.RTT < 0 || c.Commit < 0 {
		bad("rtt %v, commit time %v: must be ≥ 0", c.RTT, c.Commit)
	}
	if c.Batch < 0 {
		bad("batch %d: must be ≥ 0", c.Batch)
	}
	if len(errs) > 0 {
		return fmt.Errorf("plan: %w", errors.Join(errs...))
	}
	return nil
}

// Prediction is the model's answer for one Cluster. Durations are the parts
// of the step on its critical path: Pull + Compute + Push + Apply + Coord =
// Step. JSON gives durations in seconds and rates in Gb/s.
type Prediction struct {
	Step    Seconds `json:"step_s"`
	Pull    Seconds `json:"pull_s"`    // X_pull
	Compute Seconds `json:"compute_s"` // C
	Push    Seconds `json:"push_s"`    // X_push: the push after compute ends
	Apply   Seconds `json:"apply_s"`   // A
	Coord   Seconds `json:"coord_s"`   // G
	// PullBound and PushBound name the link that bounds each phase:
	// "worker link", "shard link" or "loopback".
	PullBound string `json:"pull_bound"`
	PushBound string `json:"push_bound"`
	// Bytes moved per step by each worker and each shard, each way.
	WorkerInBytes  float64 `json:"worker_in_bytes"`
	WorkerOutBytes float64 `json:"worker_out_bytes"`
	ShardInBytes   float64 `json:"shard_in_bytes"`
	ShardOutBytes  float64 `json:"shard_out_bytes"`
	// Average bandwidth needed at this step time, Gb/s.
	WorkerInGbps  float64 `json:"worker_in_gbps"`
	WorkerOutGbps float64 `json:"worker_out_gbps"`
	ShardInGbps   float64 `json:"shard_in_gbps"`
	ShardOutGbps  float64 `json:"shard_out_gbps"`
	// Efficiency is E = C/T; SamplesPerSec N·β/T and IdealSamplesPerSec
	// N·β/C.
	Efficiency         float64 `json:"efficiency"`
	SamplesPerSec      float64 `json:"samples_per_s"`
	IdealSamplesPerSec float64 `json:"ideal_samples_per_s"`
}

// Seconds is a duration that marshals to JSON as seconds.
type Seconds time.Duration

// MarshalJSON writes the duration in seconds.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.9g", time.Duration(s).Seconds())), nil
}

// UnmarshalJSON reads a duration in seconds.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || !(f >= 0) || math.IsInf(f, 1) {
		return fmt.Errorf("plan: %s is not a duration in seconds (a number ≥ 0)", b)
	}
	*s = Seconds(f * float64(time.Second))
	return nil
}

// D returns the duration.
func (s Seconds) D() time.Duration { return time.Duration(s) }

// seconds converts float seconds to a Seconds.
func seconds(f float64) Seconds { return Seconds(math.Round(f * float64(time.Second))) }

// Limit names the largest part of the step besides compute: what to add
// bandwidth, shards or cores to (or "compute" when the rest is nothing).
func (p Prediction) Limit() string {
	name, big := "compute", Seconds(0)
	for _, part := range []struct {
		name string
		d    Seconds
	}{{"pull (" + p.PullBound + ")", p.Pull}, {"push (" + p.PushBound + ")", p.Push}, {"apply (the shards' mean and update)", p.Apply}, {"coordination (round trips, commit)", p.Coord}} {
		if part.d > big {
			name, big = part.name, part.d
		}
	}
	return name
}

// Predict evaluates the model (see the package comment for the equations).
func Predict(c Cluster) (Prediction, error) {
	if err := c.Validate(); err != nil {
		return Prediction{}, err
	}
	c = c.withDefaults()
	W, N, P := float64(c.Workers), float64(c.Workers-c.Backups), float64(c.Shards)
	S, B := float64(c.Params), float64(c.Buffers)
	dPull := 4 * (S + B)
	dPush := float64(c.WireBytes)*S + 4*B
	C := c.Compute.Seconds()
	F := c.BackwardFraction * C
	eta := c.TransportEfficiency

	var p Prediction
	var pull, push float64
	if c.SingleHost {
		pull = W * dPull / (eta * c.Loopback)
		tPush := W * dPush / (eta * c.Loopback)
		push = tPush
		if c.Overlap {
			push = pipelined(tPush, F, P)
		}
		p.PullBound, p.PushBound = "loopback", "loopback"
	} else {
		wPull, sPull := dPull/(eta*c.WorkerLink), W*dPull/(P*eta*c.ShardLink)
		wPush, sPush := dPush/(eta*c.WorkerLink), W*dPush/(P*eta*c.ShardLink)
		pull, p.PullBound = bound(wPull, sPull)
		if c.Overlap {
			// The shard's link carries its slice after compute ends
			// whatever F is; the worker's pipelines its P slices.
			push, p.PushBound = bound(pipelined(wPush, F, P), sPush)
		} else {
			push, p.PushBound = bound(wPush, sPush)
		}
	}
	apply := N*(S+B)/(P*c.MeanRate) + S/(P*c.ApplyRate)
	if c.SingleHost {
		apply *= max(1, P/float64(c.Cores))
	}
	coord := 3 * c.RTT.Seconds()
	if c.Overlap {
		coord = 1.5 * c.RTT.Seconds()
	}
	coord += c.Commit.Seconds()
	step := pull + C + push + apply + coord

	p.Step, p.Pull, p.Compute, p.Push, p.Apply, p.Coord = seconds(step), seconds(pull), seconds(C), seconds(push), seconds(apply), seconds(coord)
	p.WorkerInBytes, p.WorkerOutBytes = dPull, dPush
	p.ShardOutBytes, p.ShardInBytes = W*dPull/P, W*dPush/P
	gbps := func(bytes float64) float64 { return 8 * bytes / step / 1e9 }
	p.WorkerInGbps, p.WorkerOutGbps = gbps(p.WorkerInBytes), gbps(p.WorkerOutBytes)
	p.ShardInGbps, p.ShardOutGbps = gbps(p.ShardInBytes), gbps(p.ShardOutBytes)
	p.Efficiency = C / step
	p.SamplesPerSec = N * float64(c.Batch) / step
	p.IdealSamplesPerSec = N * float64(c.Batch) / C
	return p, nil
}

// bound returns the longer of a phase's worker-link and shard-link times and
// names it (the worker link on a tie).
func bound(worker, shard float64) (float64, string) {
	if shard > worker {
		return shard, "shard link"
	}
	return worker, "worker link"
}

// pipelined is the time after compute ends that a link carrying P slices one
// after another, T in all, needs when slice j becomes ready at F·j/P:
// max(T/P, T − F·(P−1)/P).
func pipelined(T, F, P float64) float64 {
	return max(T/P, T-F*(P-1)/P)
}
