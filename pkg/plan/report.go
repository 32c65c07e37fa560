package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Row is one evaluated plan: its label (the model), inputs, prediction
// and, when a target was given, the fewest shards reaching it.
type Row struct {
	Label      string        `json:"model"`
	Cluster    Cluster       `json:"inputs"`
	Prediction Prediction    `json:"prediction"`
	Fewest     *ShardsResult `json:"fewest_shards,omitempty"`
}

// Evaluate predicts c and, unless target is 0 (none), finds the fewest
// shards that reach it (a target outside (0, 1) is an error).
func Evaluate(label string, c Cluster, target float64) (Row, error) {
	p, err := Predict(c)
	if err != nil {
		return Row{}, err
	}
	r := Row{Label: label, Cluster: c.withDefaults(), Prediction: p}
	if target != 0 {
		f, err := FewestShards(c, target)
		if err != nil {
			return Row{}, err
		}
		r.Fewest = &f
	}
	return r, nil
}

// MarshalJSON writes the inputs with durations in seconds and links in
// Gb/s (the links of a single-host plan are left out, its loopback given).
func (c Cluster) MarshalJSON() ([]byte, error) {
	type view struct {
		Workers             int     `json:"workers"`
		Backups             int     `json:"backups"`
		Shards              int     `json:"shards"`
		Params              int64   `json:"params"`
		Buffers             int64   `json:"buffers"`
		WireBytes           int     `json:"wire_bytes"`
		WorkerLinkGbps      float64 `json:"worker_link_gbps,omitempty"`
		ShardLinkGbps       float64 `json:"shard_link_gbps,omitempty"`
		LoopbackBytes       float64 `json:"loopback_bytes_per_s,omitempty"`
		TransportEfficiency float64 `json:"transport_efficiency"`
		Compute             Seconds `json:"compute_s"`
		BackwardFraction    float64 `json:"backward_fraction"`
		MeanRate            float64 `json:"mean_rate"`
		ApplyRate           float64 `json:"apply_rate"`
		RTT                 Seconds `json:"rtt_s"`
		Commit              Seconds `json:"commit_s"`
		Overlap             bool    `json:"overlap"`
		SingleHost          bool    `json:"single_host"`
		Cores               int     `json:"cores,omitempty"`
		Batch               int     `json:"batch"`
	}
	v := view{Workers: c.Workers, Backups: c.Backups, Shards: c.Shards, Params: c.Params, Buffers: c.Buffers,
		WireBytes: c.WireBytes, TransportEfficiency: c.TransportEfficiency, Compute: Seconds(c.Compute),
		BackwardFraction: c.BackwardFraction, MeanRate: c.MeanRate, ApplyRate: c.ApplyRate,
		RTT: Seconds(c.RTT), Commit: Seconds(c.Commit), Overlap: c.Overlap, SingleHost: c.SingleHost, Batch: c.Batch}
	if c.SingleHost {
		v.LoopbackBytes, v.Cores = c.Loopback, c.Cores
	} else {
		v.WorkerLinkGbps, v.ShardLinkGbps = 8*c.WorkerLink/1e9, 8*c.ShardLink/1e9
	}
	return json.Marshal(v)
}

// msec writes a duration in milliseconds with one decimal.
func msec(s Seconds) string { return fmt.Sprintf("%.1f", float64(time.Duration(s))/1e6) }

// WriteTable writes rows as one Markdown table: the layout, the link, the
// compute time, the predicted step and its parts in milliseconds, the
// average bandwidth a worker and a shard need (in/out, Gb/s), the
// efficiency, the throughput and, when asked, the fewest shards for the
// target; then one line per target that no shard count reaches, saying
// why.
func WriteTable(w io.Writer, rows []Row) error {
	var b strings.Builder
	withTarget := len(rows) > 0 && rows[0].Fewest != nil
	b.WriteString("| model | params | workers (backups) | shards | link | compute | mode | step ms | pull | push | apply | coord | worker in/out Gb/s | shard in/out Gb/s | efficiency | samples/s |")
	if withTarget {
		fmt.Fprintf(&b, " fewest shards for %.0f%% |", 100*rows[0].Fewest.Target)
	}
	b.WriteString("\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	if withTarget {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	var notes []string
	for _, r := range rows {
		c, p := r.Cluster, r.Prediction
		link := FormatGbit(c.WorkerLink)
		if c.SingleHost {
			link = "loopback " + si(c.Loopback, "B") + "/s"
		} else if c.ShardLink != c.WorkerLink {
			link += ", shards " + FormatGbit(c.ShardLink)
		}
		mode := "no overlap"
		if c.Overlap {
			mode = fmt.Sprintf("overlap f=%.2g", c.BackwardFraction)
		}
		if c.WireBytes == 2 {
			mode += ", bf16"
		}
		fmt.Fprintf(&b, "| %s | %s | %d (%d) | %d | %s | %v | %s | %s | %s | %s | %s | %s | %.2f / %.2f | %.2f / %.2f | %.3f | %.0f |",
			r.Label, si(float64(c.Params), ""), c.Workers, c.Backups, c.Shards, link, c.Compute, mode,
			msec(p.Step), msec(p.Pull), msec(p.Push), msec(p.Apply), msec(p.Coord),
			p.WorkerInGbps, p.WorkerOutGbps, p.ShardInGbps, p.ShardOutGbps, p.Efficiency, p.SamplesPerSec)
		if f := r.Fewest; f != nil {
			if f.Reached {
				fmt.Fprintf(&b, " %d (%.3f) |", f.Shards, f.Prediction.Efficiency)
			} else {
				fmt.Fprintf(&b, " none (best %.3f) |", f.Prediction.Efficiency)
				notes = append(notes, fmt.Sprintf("%s, %s, compute %v: %s", r.Label, link, c.Compute, f.Reason))
			}
		}
		b.WriteString("\n")
	}
	for _, n := range notes {
		b.WriteString("\n" + n + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// FormatGbit writes a rate given in bytes/s in Gbit/s, e.g. "25 Gbit/s".
func FormatGbit(bytesPerSec float64) string {
	return fmt.Sprintf("%.3g Gbit/s", 8*bytesPerSec/1e9)
}

// WriteCheck writes Check's results as a Markdown table: each record's
// layout and inputs, the predicted and measured step, the relative error
// and whether it is within CheckTolerance.
func WriteCheck(w io.Writer, results []CheckResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "| record | workers (backups) | shards | params | wire bytes | compute | raw TCP | transport η | mode | predicted ms | measured ms | error | within ±%.0f%% |\n", 100*CheckTolerance)
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, res := range results {
		r, p := res.Record, res.Prediction
		mode := "no overlap"
		if r.Overlap {
			mode = fmt.Sprintf("overlap f=%.2g", r.BackwardFraction)
		}
		ok := "yes"
		if !res.OK {
			ok = "**no**"
		}
		eta := r.TransportEfficiency
		if eta == 0 {
			eta = 1
		}
		fmt.Fprintf(&b, "| %s | %d (%d) | %d | %s | %d | %v | %s/s | %.2g | %s | %s | %s | %+.1f%% | %s |\n",
			r.Name, r.Workers, r.Backups, r.Shards, si(float64(r.Params), ""), r.WireBytes, r.Compute.D(), si(r.RawTCP, "B"), eta, mode,
			msec(p.Step), msec(r.Step), 100*res.RelErr, ok)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// RateFlag is a command-line flag (pflag.Value) holding a rate in bytes/s,
// given as ParseRate reads it (10Gbit, 2.9GB/s).
type RateFlag struct{ P *float64 }

// String writes the rate in Gbit/s ("" when unset).
func (f RateFlag) String() string {
	if f.P == nil || *f.P == 0 {
		return ""
	}
	return FormatGbit(*f.P)
}

// Set parses s with ParseRate.
func (f RateFlag) Set(s string) error {
	v, err := ParseRate(s)
	if err != nil {
		return err
	}
	*f.P = v
	return nil
}

// Type names the flag's value in help texts.
func (RateFlag) Type() string { return "rate" }

// CountFlag is a command-line flag (pflag.Value) holding a count given as
// ParseCount reads it (23834568, 44.5M).
type CountFlag struct{ P *int64 }

// String writes the count ("" when unset).
func (f CountFlag) String() string {
	if f.P == nil || *f.P == 0 {
		return ""
	}
	return fmt.Sprint(*f.P)
}

// Set parses s with ParseCount.
func (f CountFlag) Set(s string) error {
	v, err := ParseCount(s)
	if err != nil {
		return err
	}
	*f.P = v
	return nil
}

// Type names the flag's value in help texts.
func (CountFlag) Type() string { return "count" }

// Named is a model size under a label (a model's name, or "custom").
type Named struct {
	Label string
	Size  Size
}

// Sweep evaluates base for every model, compute time and worker link
// (in that nesting order), with target as Evaluate takes it. A nil or empty
// computes or links keeps base's value. The shard link follows the worker
// link unless base sets its own.
func Sweep(base Cluster, sizes []Named, computes []time.Duration, links []float64, target float64) ([]Row, error) {
	if len(sizes) == 0 {
		return nil, fmt.Errorf("plan: no model to plan for (give a model name or a parameter count)")
	}
	if len(computes) == 0 {
		computes = []time.Duration{base.Compute}
	}
	if len(links) == 0 {
		links = []float64{base.WorkerLink}
	}
	var rows []Row
	for _, m := range sizes {
		for _, comp := range computes {
			for _, l := range links {
				c := base
				c.Params, c.Buffers, c.Compute, c.WorkerLink = m.Size.Params, m.Size.Buffers, comp, l
				r, err := Evaluate(m.Label, c, target)
				if err != nil {
					return nil, fmt.Errorf("%s, compute %v, link %s: %w", m.Label, comp, FormatGbit(l), err)
				}
				rows = append(rows, r)
			}
		}
	}
	return rows, nil
}
