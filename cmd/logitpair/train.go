package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/device"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
)

func newTrainCmd() *cobra.Command {
	c := train.DefaultConfig()
	var finalize func() error
	var dev string // per machine, not part of the training config
	var force bool // this start's, not the run's: not part of the training config
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Adversarial training in one process (ALP, M-PGD, CLP, logit squeezing, ...)",
		Long: `Adversarial training in one process (ALP, M-PGD, CLP, logit squeezing, ...).

Checkpoints go to --out. A new run refuses an --out that holds another run's
checkpoints: --resume continues that run (--resume-from STEP from an older
checkpoint, e.g. when the newest is corrupt), --force deletes that run's files
(ckpt-*.safetensors, latest.json, best.safetensors, best.json; nothing else in
the folder) once every flag and the data have been checked, and starts over.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := finalize(); err != nil {
				return err
			}
			if err := c.Validate(); err != nil {
				return err
			}
			if force && c.Resuming() {
				return fmt.Errorf("--force and --resume exclude each other: --force replaces the run in --out, --resume continues it")
			}
			if !c.Resuming() {
				if err := checkpoint.CheckOut(c.Out, force); err != nil {
					return err
				}
			}
			if _, err := device.Parse(dev); err != nil {
				return err
			}
			input, classes, err := modelShape(c.Model, c.ModelConfig)
			if err != nil {
				return err
			}
			// Shared: a repeated run (or runs side by side) maps the decoded
			// pixels instead of decoding them again; a read-only data
			// directory falls back to memory.
			opts := data.ForInput(input).WithShared(func(msg string) { fmt.Fprintln(cmd.ErrOrStderr(), "INFO "+msg) })
			trainSet, err := data.Open(c.Dataset, c.DataDir, "train", opts)
			if err != nil {
				return err
			}
			if err := trainSet.Info().Fits(c.Model, input, classes); err != nil {
				return err
			}
			var val data.Source
			if c.ValidateEvery > 0 || c.SentinelEvery > 0 {
				if val, err = data.Open(c.Dataset, c.DataDir, "test", opts); err != nil {
					return err
				}
				if err := val.Info().Fits(c.Model, input, classes); err != nil {
					return err
				}
			}
			threads := c.Threads
			if threads == 0 {
				threads = runtime.NumCPU()
			}
			runtime.GOMAXPROCS(threads)
			be, desc, err := device.Open(dev, threads)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "INFO "+desc)
			loader := data.NewLoader(trainSet, data.LoaderOptions{Seed: uint64(c.Seed), NoAugment: !c.Augment})
			tr, err := train.NewTrainer(be, c, loader, val)
			if err != nil {
				return err
			}
			tr.Progress = cmd.OutOrStdout()
			if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && tr.Progress == os.Stdout {
				tr.Terminal = true
			}
			if force {
				removed, err := checkpoint.RemoveRun(c.Out)
				if len(removed) > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "INFO --force: deleted the %d files of the previous run in %s\n", len(removed), c.Out)
				}
				if err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			fmt.Fprintf(cmd.OutOrStdout(), "training %s on %s (%d examples) with %s from step %d to %d; checkpoints in %s\n",
				c.Model, c.Dataset, trainSet.Info().Len, c.Objective, tr.Step, c.Steps, c.Out)
			if err := tr.Run(ctx); err != nil {
				return err
			}
			p, _ := checkpoint.ReadPointer(c.Out)
			fmt.Fprintf(cmd.OutOrStdout(), "done: %s/%s\n", c.Out, p.Model)
			if line := tr.SentinelSummary(); line != "" {
				fmt.Fprintln(cmd.OutOrStdout(), line)
			}
			return nil
		},
	}
	finalize = train.BindFlags(cmd.Flags(), &c)
	device.Flag(cmd.Flags(), &dev)
	cmd.Flags().BoolVar(&force, "force", false, "replace the run in --out: delete its ckpt-*.safetensors, latest.json and best.* (nothing else) and start over")
	return cmd
}

// modelShape returns the input shape (C, H, W) and class count of a model
// with the given config, built once on the CPU without initialization.
func modelShape(name string, cfg models.Config) ([3]int, int, error) {
	m, err := models.New(cpu.New(cpu.Options{Threads: 1}), name, cfg)
	if err != nil {
		return [3]int{}, 0, err
	}
	return m.Input, m.Classes, nil
}
