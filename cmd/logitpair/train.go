package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/device"
	"github.com/logitpair/logitpair/pkg/history"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
)

func newTrainCmd() *cobra.Command {
	c := train.DefaultConfig()
	var finalize func() error
	var dev string // per machine, not part of the training config
	var force bool // this start's, not the run's: not part of the training config
	var httpListen string
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Adversarial training in one process (ALP, M-PGD, CLP, logit squeezing, ...)",
		Long: `Adversarial training in one process (ALP, M-PGD, CLP, logit squeezing, ...).

Checkpoints go to --out. A new run refuses an --out that holds another run's
checkpoints: --resume continues that run (--resume-from STEP from an older
checkpoint, e.g. when the newest is corrupt), --force deletes that run's files
(ckpt-*.safetensors, latest.json, best.safetensors, best.json; nothing else in
the folder) once every flag and the data have been checked, and starts over.

Every log interval, validation, sentinel check and rollback is appended to
--out/history.jsonl (logitpair plot draws it). --http-listen ADDR serves the
cluster coordinator's /metrics and status page for this run (port 0: one the
system picks; the address is printed).`,
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
				if err := os.Remove(filepath.Join(c.Out, history.FileName)); err != nil && !os.IsNotExist(err) {
					return fmt.Errorf("--force: %w", err)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			closeCurves, err := curves(ctx, cmd, tr, c, httpListen)
			if err != nil {
				return err
			}
			defer closeCurves()
			fmt.Fprintf(cmd.OutOrStdout(), "training %s on %s (%d examples) with %s from step %d to %d; checkpoints in %s\n",
				c.Model, c.Dataset, trainSet.Info().Len, c.Objective, tr.Step, c.Steps, c.Out)
			if err := tr.Run(ctx); err != nil {
				if ctx.Err() != nil && errors.Is(err, context.Canceled) {
					return newInterruptedError(cmd, c, tr.Step, err)
				}
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
	cmd.Flags().StringVar(&httpListen, "http-listen", "", "serve /metrics and the status page on this address (host:port; port 0 picks a free one), as the cluster's coordinator does")
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

// interruptedError is train's error when Ctrl-C stopped it: the trainer
// saved a checkpoint of the step reached (or failed to), and the same
// command with --resume continues the run. main exits with 130 for it, as a
// shell does for a process ended by SIGINT.
type interruptedError struct {
	Step   int64  // the step reached
	Steps  int64  // the run's last step (--steps)
	Model  string // the saved checkpoint's model file, "" if none was saved
	Saved  error  // why saving failed, nil if it did not
	Resume string // the command that continues the run
}

func (e *interruptedError) Error() string {
	if e.Saved != nil {
		return fmt.Sprintf("interrupted at step %d of %d, and saving its checkpoint failed (%v); resume from the newest checkpoint with: %s", e.Step, e.Steps, e.Saved, e.Resume)
	}
	return fmt.Sprintf("interrupted at step %d of %d: saved its checkpoint, %s; resume with: %s", e.Step, e.Steps, e.Model, e.Resume)
}

// newInterruptedError builds train's interruptedError from the error of
// Trainer.Run (ctx's error joined with the final save's) and the run's
// latest.json.
func newInterruptedError(cmd *cobra.Command, c train.Config, step int64, runErr error) error {
	e := &interruptedError{Step: step, Steps: c.Steps, Resume: resumeCommand(cmd)}
	var saveErr error
	if j, ok := runErr.(interface{ Unwrap() []error }); ok {
		for _, err := range j.Unwrap() {
			if !errors.Is(err, context.Canceled) {
				saveErr = errors.Join(saveErr, err)
			}
		}
	}
	if saveErr != nil {
		e.Saved = saveErr
		return e
	}
	p, err := checkpoint.ReadPointer(c.Out)
	if err != nil || p.Step != step {
		e.Saved = fmt.Errorf("%s does not point at step %d: %v", filepath.Join(c.Out, checkpoint.PointerFile), step, err)
		return e
	}
	e.Model = filepath.Join(c.Out, p.Model)
	return e
}

// resumeCommand is the command line that continues this train command's
// run: its flags as given (but --force, --resume and --resume-from) and
// --resume.
func resumeCommand(cmd *cobra.Command) string {
	args := []string{cmd.CommandPath()}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "force", "resume", "resume-from":
			return
		}
		if f.Value.Type() == "bool" && f.Value.String() == "true" {
			args = append(args, "--"+f.Name)
			return
		}
		vals := []string{f.Value.String()}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			vals = sv.GetSlice()
			if !strings.HasSuffix(f.Value.Type(), "Array") {
				vals = []string{strings.Join(vals, ",")}
			}
		}
		for _, v := range vals {
			args = append(args, "--"+f.Name+"="+shellQuote(v))
		}
	})
	return strings.Join(append(args, "--resume"), " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./+,:@=", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
