package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// CheckTolerance is the largest relative error |predicted − measured| /
// measured of the step time that Check accepts (issue 13: within 25%).
const CheckTolerance = 0.25

// Record is one measured run of the real cluster on one machine (loopback)
// with a synthetic gradient of known compute time, as
// `logitpair bench cluster --json` writes them (a JSON array of these).
// Durations are in seconds, rates in bytes/s; fields marked optional may
// be left out.
//
//	{"name": "w4-p2", "workers": 4, "backups": 0, "shards": 2,
//	 "params": 3274634, "buffers": 0, "wire_bytes": 4,
//	 "compute_s": 0.1, "raw_tcp_bytes_per_s": 2.1e9, "cores": 2,
//	 "overlap": false, "transport_efficiency": 0.18, "step_s": 0.163}
type Record struct {
	// Name labels the run in Check's output (optional).
	Name string `json:"name,omitempty"`
	// Workers, Backups and Shards: the layout (W, b, P).
	Workers int `json:"workers"`
	Backups int `json:"backups"`
	Shards  int `json:"shards"`
	// Params is S, the parameters pulled and pushed; Buffers B, the float32
	// buffer elements beside them (optional, 0).
	Params  int64 `json:"params"`
	Buffers int64 `json:"buffers,omitempty"`
	// WireBytes is the bytes per gradient element of a push: 4 or 2.
	WireBytes int `json:"wire_bytes"`
	// Compute is the synthetic gradient's time per step, C.
	Compute Seconds `json:"compute_s"`
	// RawTCP is the loopback's raw-TCP rate measured on the same machine
	// just before or after the run, bytes/s each way (netbench.RawTCP:
	// 2n bytes over the round time of n out and n back).
	RawTCP float64 `json:"raw_tcp_bytes_per_s"`
	// Step is the measured mean step time (steady state: commit to
	// commit, the first steps left out).
	Step Seconds `json:"step_s"`
	// Cores is the machine's cores (optional, 1).
	Cores int `json:"cores,omitempty"`
	// Overlap tells whether the run overlapped communication with
	// compute; BackwardFraction is the share of the compute in which the
	// synthetic gradient's slices become final one by one (optional, 0:
	// all at the end).
	Overlap          bool    `json:"overlap,omitempty"`
	BackwardFraction float64 `json:"backward_fraction,omitempty"`
	// RTT is a measured round trip (optional, DefaultRTT).
	RTT *Seconds `json:"rtt_s,omitempty"`
	// MeanRate and ApplyRate, when measured, replace the defaults
	// (optional, elements/s).
	MeanRate  float64 `json:"mean_rate,omitempty"`
	ApplyRate float64 `json:"apply_rate,omitempty"`
	// TransportEfficiency is η, the cluster transport's payload rate over
	// RawTCP, when measured beside it (one worker pulling and pushing one
	// shard over loopback; optional, 1: the transport reaches raw TCP).
	// Left out, the check is the model's with the raw link as its input;
	// given, it predicts the cluster as its transport is.
	TransportEfficiency float64 `json:"transport_efficiency,omitempty"`
}

// Cluster returns the single-host Cluster the record describes.
func (r Record) Cluster() Cluster {
	rtt := DefaultRTT
	if r.RTT != nil {
		rtt = r.RTT.D()
	}
	return Cluster{
		Workers: r.Workers, Backups: r.Backups, Shards: r.Shards,
		Params: r.Params, Buffers: r.Buffers, WireBytes: r.WireBytes,
		Loopback: r.RawTCP, Compute: r.Compute.D(), BackwardFraction: r.BackwardFraction,
		MeanRate: r.MeanRate, ApplyRate: r.ApplyRate, RTT: rtt, TransportEfficiency: r.TransportEfficiency,
		Overlap: r.Overlap, SingleHost: true, Cores: r.Cores,
	}
}

// CheckResult is one record's prediction against its measurement.
type CheckResult struct {
	Record     Record     `json:"record"`
	Prediction Prediction `json:"prediction"`
	// RelErr is (predicted − measured)/measured of the step time.
	RelErr float64 `json:"rel_err"`
	// OK tells whether |RelErr| ≤ CheckTolerance.
	OK bool `json:"ok"`
}

// Check predicts the record's step time in single-host mode and returns
// its relative error against the measured one. A record that does not
// describe a run (a measured step of 0, a layout the model refuses) is an
// error naming the field.
func Check(r Record) (CheckResult, error) {
	if r.Step <= 0 {
		return CheckResult{}, fmt.Errorf("plan: record %q: step_s %v: the measured step time must be > 0", r.Name, r.Step.D())
	}
	p, err := Predict(r.Cluster())
	if err != nil {
		return CheckResult{}, fmt.Errorf("record %q: %w", r.Name, err)
	}
	e := (p.Step.D().Seconds() - r.Step.D().Seconds()) / r.Step.D().Seconds()
	return CheckResult{Record: r, Prediction: p, RelErr: e, OK: math.Abs(e) <= CheckTolerance}, nil
}

// ErrOffTolerance is the kind of CheckAll's error when some prediction is
// off by more than CheckTolerance.
var ErrOffTolerance = errors.New("prediction off by more than the tolerance")

// CheckAll checks every record. The error wraps ErrOffTolerance, naming
// the records and their errors, when any is off by more than
// CheckTolerance; the results are returned all the same.
func CheckAll(records []Record) ([]CheckResult, error) {
	if len(records) == 0 {
		return nil, errors.New("plan: no records to check (want a JSON array of bench cluster records)")
	}
	var out []CheckResult
	var off []string
	for i, r := range records {
		if r.Name == "" {
			r.Name = fmt.Sprintf("#%d", i)
		}
		res, err := Check(r)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
		if !res.OK {
			off = append(off, fmt.Sprintf("%s (%+.0f%%: predicted %v, measured %v)", r.Name, 100*res.RelErr,
				res.Prediction.Step.D().Round(time.Microsecond), r.Step.D().Round(time.Microsecond)))
		}
	}
	if len(off) > 0 {
		return out, fmt.Errorf("plan: %w (±%.0f%%): %v", ErrOffTolerance, 100*CheckTolerance, off)
	}
	return out, nil
}

// ReadRecords decodes a JSON array of Records. Fields it does not know are
// ignored (a bench record carries more than the model needs); a required
// field left out is zero, which Check refuses by name.
func ReadRecords(b []byte) ([]Record, error) {
	var rs []Record
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("plan: reading records (a JSON array of objects with workers, backups, shards, params, wire_bytes, compute_s, raw_tcp_bytes_per_s, step_s): %w", err)
	}
	return rs, nil
}
