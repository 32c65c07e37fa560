package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/plan"
)

// newPlanCmd is `logitpair plan`: pkg/plan's model of the cluster's step
// for a layout, a model and links, or (--check) its predictions against
// loopback measurements.
func newPlanCmd() *cobra.Command {
	var (
		c                 plan.Cluster
		modelNames        []string
		modelCfg          models.Config
		params, buffers   int64
		links             []string
		computes          []time.Duration
		target            float64
		asJSON            bool
		check             string
		shardLink, loopbk float64
	)
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Predict the cluster's step time, bandwidth and scaling efficiency, and the fewest shards for a target efficiency",
		Long: `Predict one synchronous step of the cluster — W workers (backups included) pull every
shard's slice of the parameters, compute for --compute, push each shard its slice of the
gradient, the coordinator commits the first W − backups and the shards apply — from the
layout, the model's size, the links and the shards' update rates. Prints the step and its
parts (pull, the push left after compute, apply, coordination), the average bandwidth a
worker and a shard need at that step time, the efficiency (compute / step) and the
throughput, as a Markdown table; --target-efficiency adds the fewest shards that reach it.
--link and --compute take several values (comma-separated or repeated): one row each.
The equations and assumptions are pkg/plan's package comment and docs/plan.md.

--single-host models every process on one machine: all bytes cross the loopback, whose
raw-TCP rate --loopback gives, and the shards share --cores cores.

--check FILE reads a JSON array of loopback measurements (` + "`logitpair bench cluster --json`" + `
records: workers, backups, shards, params, wire_bytes, compute_s, raw_tcp_bytes_per_s,
step_s, and optionally buffers, cores, overlap, backward_fraction, rtt_s, mean_rate,
apply_rate, transport_efficiency), predicts each in single-host mode and fails when any is
off by more than 25%.`,
		Example: `  logitpair plan --workers 53 --backups 3 --ps 17 --model inception-v3 --link 25Gbit --compute 1.2s
  logitpair plan --model inception-v3,resnet-v2-101 --link 10Gbit,25Gbit,100Gbit --compute 1.2s --target-efficiency 0.9
  logitpair plan --params 44.5M --link 2.9GB/s --compute 800ms --overlap --backward-fraction 0.15 --json
  logitpair plan --single-host --workers 4 --backups 0 --ps 2 --model madry-mnist --loopback 2GB/s --cores 2 --compute 100ms
  logitpair plan --check bench-cluster.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if check != "" {
				b, err := os.ReadFile(check)
				if err != nil {
					return fmt.Errorf("--check: %w", err)
				}
				recs, err := plan.ReadRecords(b)
				if err != nil {
					return fmt.Errorf("--check %s: %w", check, err)
				}
				results, checkErr := plan.CheckAll(recs)
				if results != nil {
					if asJSON {
						err = writeJSON("-", out, results)
					} else {
						err = plan.WriteCheck(out, results)
					}
					if err != nil {
						return err
					}
				}
				return checkErr
			}
			f := cmd.Flags()
			if f.Changed("params") && f.Changed("model") {
				return fmt.Errorf("--model and --params both given: give one (--params for a model pkg/models does not define)")
			}
			var sizes []plan.Named
			if f.Changed("params") {
				sizes = []plan.Named{{Label: "custom", Size: plan.Size{Params: params, Buffers: buffers}}}
			} else {
				for _, name := range modelNames {
					s, err := plan.ModelSize(name, modelCfg)
					if err != nil {
						return fmt.Errorf("--model: %w", err)
					}
					sizes = append(sizes, plan.Named{Label: name, Size: s})
				}
			}
			var rates []float64
			for _, l := range links {
				r, err := plan.ParseRate(l)
				if err != nil {
					return fmt.Errorf("--link: %w", err)
				}
				rates = append(rates, r)
			}
			if c.SingleHost {
				if !f.Changed("loopback") {
					return fmt.Errorf("--single-host needs --loopback, the raw-TCP rate of this machine's loopback (e.g. 2GB/s; netbench.RawTCP measures it)")
				}
				rates = nil
			} else if len(rates) == 0 {
				return fmt.Errorf("--link: give the workers' link rate, e.g. 25Gbit")
			}
			c.ShardLink, c.Loopback = shardLink, loopbk
			rows, err := plan.Sweep(c, sizes, computes, rates, target)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON("-", out, rows)
			}
			return plan.WriteTable(out, rows)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Workers, "workers", 53, "workers W, backups included (the paper: 53)")
	fl.IntVar(&c.Backups, "backups", 3, "backup workers b: each step takes the first W − b gradients (the paper: 3)")
	fl.IntVar(&c.Shards, "ps", 17, "parameter-server shards P (the paper: 17)")
	fl.StringSliceVar(&modelNames, "model", []string{"inception-v3"}, "comma-separated models whose size to plan for: "+strings.Join(models.Names(), ", "))
	fl.Var(models.ConfigFlag{P: &modelCfg}, "model-config", `the model's config as a JSON object of integers, e.g. '{"classes": 200}'`)
	fl.Var(plan.CountFlag{P: &params}, "params", "trainable parameters S, instead of --model (e.g. 23834568 or 44.5M)")
	fl.Var(plan.CountFlag{P: &buffers}, "buffers", "float buffer elements pulled and pushed beside --params (batch-norm statistics)")
	fl.StringSliceVar(&links, "link", []string{"25Gbit"}, "the workers' link rate(s), each way: bits (10Gbit, 25Gb/s, 100Gbps) or bytes (2.9GB/s)")
	fl.Var(plan.RateFlag{P: &shardLink}, "ps-link", "the shards' link rate, each way (default: --link)")
	fl.Float64Var(&c.TransportEfficiency, "transport-efficiency", 1, "fraction of a link's rate the transport moves as payload, in (0, 1]")
	fl.DurationSliceVar(&computes, "compute", []time.Duration{1200 * time.Millisecond}, "one worker's compute time per step (attack, forward, backward), Go durations")
	fl.Float64Var(&c.BackwardFraction, "backward-fraction", 0, "with --overlap: share of --compute in which the gradient becomes final slice by slice (0: all at the end, as train.Worker today; ≈ 4/(2k+6) for ALP with PGD-k)")
	fl.IntVar(&c.WireBytes, "wire-bytes", 4, "bytes per gradient element pushed: 4 (float32) or 2 (bf16)")
	fl.Float64Var(&c.MeanRate, "mean-rate", plan.DefaultMeanRate, "gradient elements a shard averages per second (one core; BenchmarkShardApply)")
	fl.Float64Var(&c.ApplyRate, "apply-rate", plan.DefaultApplyRate, "elements a shard's optimizer update covers per second (one core; BenchmarkShardApply)")
	fl.DurationVar(&c.RTT, "rtt", plan.DefaultRTT, "one network round trip")
	fl.DurationVar(&c.Commit, "commit-time", 0, "the coordinator's commit-log fsync per step")
	fl.BoolVar(&c.Overlap, "overlap", false, "overlap communication with compute (pushes as slices become final, the next pulls waiting at the shards)")
	fl.BoolVar(&c.SingleHost, "single-host", false, "every process on one machine: all bytes cross the loopback (--loopback), the shards share --cores")
	fl.Var(plan.RateFlag{P: &loopbk}, "loopback", "with --single-host: the loopback's raw-TCP rate, e.g. 2GB/s")
	fl.IntVar(&c.Cores, "cores", 1, "with --single-host: the machine's cores")
	fl.IntVar(&c.Batch, "batch", 32, "examples per worker per step, for the throughput (an assumption: the paper does not state it for the cluster)")
	fl.Float64Var(&target, "target-efficiency", 0, "also find the fewest shards whose efficiency reaches this, in (0, 1)")
	fl.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fl.StringVar(&check, "check", "", "check the model against loopback measurements in this JSON file (an array of bench cluster records)")
	return cmd
}
