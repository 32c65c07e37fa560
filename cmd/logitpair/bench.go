package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"

	"github.com/logitpair/logitpair/pkg/bench"
	"github.com/logitpair/logitpair/pkg/device"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/node"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/train"
)

// benchDeviceUsage is --device's help on the benchmarks, whose default is the
// CPU (scripts/bench-vs-torch.sh compares with PyTorch on the CPU).
const benchDeviceUsage = "compute device: cpu, cuda, cuda:N (GPU N) or auto (a CUDA GPU when one is found, else the CPU)"

// modelConfigUsage is --model-config's help on the benchmarks.
const modelConfigUsage = `model hyper-parameters over the defaults, as JSON, e.g. '{"classes": 1000, "image_size": 64}'`

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Benchmarks of the numeric engine"}
	c := bench.DefaultStepConfig()
	var jsonOut, cpuProfile string
	step := &cobra.Command{
		Use:   "step",
		Short: "Time one forward+backward step (median ms/step after warm-up)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stop, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			r, err := bench.Step(c)
			if perr := stop(); err == nil {
				err = perr
			}
			if err != nil {
				return err
			}
			mode := "full step (weight and input gradients)"
			if r.InputGradOnly {
				mode = "input gradient only"
			}
			out := cmd.OutOrStdout()
			if jsonOut == "-" {
				out = cmd.ErrOrStderr()
			}
			fmt.Fprintf(out, "%s batch %d, %s, %d threads, %s: %.2f ms/step (min %.2f, max %.2f over %d steps), %.0f allocs/step, peak RSS %.0f MB\n",
				r.Model, r.Batch, mode, r.Threads, r.Backend, r.MsPerStep, r.MinMs, r.MaxMs, r.Steps, r.AllocsPerStep, r.PeakRSSMB)
			if r.DeviceProfile != "" {
				fmt.Fprintf(out, "device op profile of the timed steps (each op synchronized):\n%s", r.DeviceProfile)
			}
			if jsonOut != "" {
				return writeJSON(jsonOut, cmd.OutOrStdout(), r)
			}
			return nil
		},
	}
	f := step.Flags()
	f.StringVar(&c.Model, "model", c.Model, "model to benchmark: "+strings.Join(models.Names(), ", "))
	f.Var(models.ConfigFlag{P: &c.Config}, "model-config", modelConfigUsage)
	f.IntVar(&c.Batch, "batch", c.Batch, "batch size")
	f.BoolVar(&c.InputGradOnly, "input-grad-only", false, "eval-mode forward and input gradient only (what one PGD step needs)")
	f.IntVar(&c.Threads, "threads", 0, "compute threads (0: all cores)")
	f.StringVar(&c.Gemm, "gemm", "", "GEMM implementation: openblas or gonum (default: openblas when compiled in)")
	f.StringVar(&c.Device, "device", device.CPU, benchDeviceUsage)
	f.IntVar(&c.Warmup, "warmup", c.Warmup, "untimed warm-up steps")
	f.IntVar(&c.Steps, "steps", c.Steps, "timed steps")
	f.Int64Var(&c.Seed, "seed", c.Seed, "seed for weights and data")
	f.StringVar(&jsonOut, "json", "", "write the result as JSON to this file ('-' for standard output)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile of the whole benchmark to this file (go tool pprof)")
	cmd.AddCommand(step, newBenchTrainStepCmd(), newBenchClusterCmd())
	return cmd
}

func newBenchTrainStepCmd() *cobra.Command {
	c := bench.DefaultTrainStepConfig()
	var jsonOut, cpuProfile string
	cmd := &cobra.Command{
		Use:   "train-step",
		Short: "Time whole training steps: attack + objective forward/backward + optimizer (default: the ALP step, PGD-40)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stop, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			r, err := bench.TrainStep(c)
			if perr := stop(); err == nil {
				err = perr
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if jsonOut == "-" {
				out = cmd.ErrOrStderr()
			}
			fmt.Fprintf(out, "%s %s step, batch %d, PGD-%d, %d threads, %s: %.1f ms/step (min %.1f, max %.1f over %d steps), %.0f allocs/step, peak RSS %.0f MB\n",
				r.Model, r.Objective, r.Batch, r.AttackSteps, r.Threads, r.Backend, r.MsPerStep, r.MinMs, r.MaxMs, r.Steps, r.AllocsPerStep, r.PeakRSSMB)
			if r.DeviceProfile != "" {
				fmt.Fprintf(out, "device op profile of the timed steps (each op synchronized):\n%s", r.DeviceProfile)
			}
			if jsonOut != "" {
				return writeJSON(jsonOut, cmd.OutOrStdout(), r)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Model, "model", c.Model, train.ModelUsage)
	f.Var(models.ConfigFlag{P: &c.Config}, "model-config", modelConfigUsage)
	f.IntVar(&c.Batch, "batch", c.Batch, "clean examples per step")
	f.StringVar(&c.Objective, "objective", c.Objective, "objective: "+strings.Join(objective.Names(), ", "))
	f.IntVar(&c.AttackSteps, "attack-steps", c.AttackSteps, "PGD steps")
	f.Float64Var(&c.Eps, "eps", c.Eps, "attack ε")
	f.Float64Var(&c.StepSize, "step-size", c.StepSize, "attack step size")
	f.IntVar(&c.Threads, "threads", 0, "compute threads (0: all cores)")
	f.StringVar(&c.Device, "device", device.CPU, benchDeviceUsage)
	f.IntVar(&c.Warmup, "warmup", c.Warmup, "untimed warm-up steps")
	f.IntVar(&c.Steps, "steps", c.Steps, "timed steps")
	f.StringVar(&jsonOut, "json", "", "write the result as JSON to this file ('-' for standard output)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile of the whole benchmark to this file (go tool pprof)")
	return cmd
}

func newBenchClusterCmd() *cobra.Command {
	b := node.DefaultClusterBench()
	workers, shards := []int{b.Workers}, []int{b.PS}
	useTLS := true
	var jsonOut string
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Time a local cluster's steps with synthetic GPU-speed workers against the raw-TCP bound",
		Long: `Starts a real local cluster (as logitpair cluster local: separate processes on
loopback, mutual TLS) whose workers replace the attack and backward pass by a
synthetic compute phase of --compute (a wait, as a GPU leaves its host idle)
yielding a deterministic gradient of the model's size, and measures the step
time between the coordinator's commits after --warmup steps.

It compares the median step time with max(compute, transfer bound), the
transfer bound being the time one raw loopback TCP connection needs for all
workers' bytes of a step (each worker pulls and pushes 4·(params+buffers)
bytes); the goal is a ratio ≤ 1.2. --workers and --ps take lists: every pair
is measured in turn. Nothing is trained.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			b.Exe, b.NoTLS = exe, !useTLS
			out := cmd.OutOrStdout()
			if jsonOut == "-" {
				out = cmd.ErrOrStderr()
			}
			b.Out = out
			ctx, stop := node.SignalContext()
			defer stop()
			results, runErr := node.RunClusterBenches(ctx, b, workers, shards)
			if len(results) > 0 {
				if err := node.WriteClusterBenchTable(out, results); err != nil {
					return err
				}
				if jsonOut != "" {
					if err := writeJSON(jsonOut, cmd.OutOrStdout(), results); err != nil {
						return err
					}
				}
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&b.Model, "model", b.Model, "model whose parameters the cluster moves: "+strings.Join(models.Names(), ", "))
	f.Var(models.ConfigFlag{P: &b.ModelConfig}, "model-config", modelConfigUsage)
	f.DurationVar(&b.Compute, "compute", b.Compute, "synthetic compute phase per step and worker (a GPU's step time)")
	f.IntSliceVar(&workers, "workers", workers, "worker processes (a list: each is measured)")
	f.IntSliceVar(&shards, "ps", shards, "parameter-server processes (a list: each is measured)")
	f.IntVar(&b.Warmup, "warmup", b.Warmup, "steps not timed")
	f.IntVar(&b.Steps, "steps", b.Steps, "timed steps")
	f.BoolVar(&useTLS, "tls", useTLS, "mutual TLS between the processes, as logitpair cluster local")
	f.StringVar(&b.WireFormat, "wire-format", "float32", "the pushes' gradient format: float32, or bf16 (half the push bytes)")
	f.IntVar(&b.TCPRounds, "tcp-rounds", b.TCPRounds, "rounds each raw-TCP measurement averages")
	f.StringVar(&b.Dir, "dir", "", "keep the runs' logs here (a new or empty directory; default: a temporary one, removed)")
	f.DurationVar(&b.Timeout, "timeout", b.Timeout, "bound on each configuration's run, start included")
	f.StringVar(&jsonOut, "json", "", "write the results as a JSON array to this file ('-' for standard output)")
	return cmd
}

// startCPUProfile starts a Go CPU profile into path (none when path is
// empty); stop ends it and closes the file.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}
