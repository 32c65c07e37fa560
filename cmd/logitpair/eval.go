package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/device"
	"github.com/logitpair/logitpair/pkg/eval"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/strong"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/train"
)

// loadModel reads a model file: logitpair's metadata names the model and its
// config; a file without it (e.g. written from PyTorch) needs modelName and
// takes the config from configJSON (or the defaults).
func loadModel(be tensor.Backend, path, modelName, configJSON string) (*models.Model, error) {
	m, _, err := loadModelMeta(be, path, modelName, configJSON)
	return m, err
}

// loadModelMeta is loadModel that also returns the file's metadata.
func loadModelMeta(be tensor.Backend, path, modelName, configJSON string) (*models.Model, map[string]string, error) {
	f, err := checkpoint.ReadModelFile(path)
	if err != nil {
		return nil, nil, err
	}
	name := f.Metadata[models.MetaModel]
	if modelName != "" {
		name = modelName
	}
	if name == "" {
		return nil, nil, fmt.Errorf("%s has no logitpair metadata: give --model (one of %s)", path, strings.Join(models.Names(), ", "))
	}
	cfgJSON := f.Metadata[models.MetaConfig]
	if configJSON != "" {
		cfgJSON = configJSON
	}
	var cfg models.Config
	if cfgJSON != "" {
		if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
			return nil, nil, fmt.Errorf("%s: model config: %w", path, err)
		}
	}
	m, err := models.New(be, name, cfg)
	if err != nil {
		return nil, nil, err
	}
	return m, f.Metadata, m.LoadStateDict(f, path)
}

func newEvalCmd() *cobra.Command {
	var (
		ckpt, dataset, dataDir, modelName, modelConfig, jsonOut, attackStr, target string
		suite, reportDir, leaderboard                                              string
		sources                                                                    []string
		examples, steps, restarts, batch, threads                                  int
		squareQueries, squareExamples, checkExamples                               int
		noChecks, noTargeted                                                       bool
		eps, step                                                                  float64
		seed                                                                       int64
		dev                                                                        string
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Clean, white-box and transfer (black-box) accuracy of a checkpoint",
		Long: `Clean, white-box and transfer (black-box) accuracy of a checkpoint.

--suite standard (the default) runs the attacks given by --attack or
--eps/--steps/--target. --suite strong runs the strong evaluation of
docs/EVALUATION.md at --eps: APGD-CE and APGD-DLR (--steps × --restarts,
default 100 × 10), targeted APGD (least-likely, random), the Square attack and
transfer from each --source, as a cascade over the examples still correct,
then the gradient-masking checks; --report DIR writes eval.json, report.md and
its plots; --leaderboard FILE writes the result as a leaderboard entry
(RobustBench's model_info fields, docs/EVALUATION.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ckpt == "" {
				return fmt.Errorf("--checkpoint is required")
			}
			switch suite {
			case "standard", "strong":
			default:
				return fmt.Errorf("--suite %q: want standard or strong", suite)
			}
			if suite == "strong" && (attackStr != "" || cmd.Flags().Changed("target") || cmd.Flags().Changed("step-size")) {
				return fmt.Errorf("--suite strong chooses its own attacks: --attack, --target and --step-size do not apply")
			}
			if suite != "strong" && reportDir != "" {
				return fmt.Errorf("--report needs --suite strong")
			}
			if suite != "strong" && leaderboard != "" {
				return fmt.Errorf("--leaderboard needs --suite strong: a leaderboard entry must come from the strong suite")
			}
			if jsonOut == "-" && leaderboard == "-" {
				return fmt.Errorf("--json - and --leaderboard - both want standard output: give one of them a file")
			}
			if threads == 0 {
				threads = runtime.NumCPU()
			}
			runtime.GOMAXPROCS(threads)
			be, desc, err := device.Open(dev, threads)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "INFO "+desc)
			m, meta, err := loadModelMeta(be, ckpt, modelName, modelConfig)
			if err != nil {
				return err
			}
			compute, err := checkpoint.ReadCompute(meta)
			if err != nil {
				return fmt.Errorf("%s: %w", ckpt, err)
			}
			if suite == "strong" {
				if !cmd.Flags().Changed("restarts") {
					restarts = 10
				}
				lm := strong.LeaderboardModel{Architecture: m.Name, ConfigJSON: m.ConfigJSON(), TrainConfigJSON: meta[models.MetaTrainConfig]}
				return runStrong(cmd, be, m, compute, ckpt, dataset, dataDir, sources, jsonOut, reportDir, leaderboard, lm, strong.Options{
					Eps: float32(eps), Examples: examples, Batch: batch, Seed: seed, Steps: steps, Restarts: restarts,
					NoTargeted: noTargeted, SquareQueries: squareQueries, SquareExamples: squareExamples,
					Checks: strong.CheckOptions{Skip: noChecks, Examples: checkExamples}})
			}
			var attacks []attack.Config
			if attackStr != "" {
				for _, s := range strings.Split(attackStr, ",") {
					a, err := attack.Parse(strings.TrimSpace(s))
					if err != nil {
						return err
					}
					if restarts > 1 {
						a.Restarts = restarts
					}
					attacks = append(attacks, a)
				}
			} else if steps > 0 {
				for _, tname := range strings.Split(target, ",") {
					tg, err := attack.ParseTarget(strings.TrimSpace(tname))
					if err != nil {
						return err
					}
					a := attack.Config{Eps: float32(eps), Step: float32(step), Steps: steps, Restarts: max(restarts, 1), RandomStart: true, Target: tg}
					if err := a.Validate(); err != nil {
						return err
					}
					attacks = append(attacks, a)
				}
			}
			opts := eval.Options{Examples: examples, Batch: batch, Seed: seed, Attacks: attacks, Checkpoint: ckpt}
			for _, s := range sources {
				sm, err := loadModel(be, s, "", "")
				if err != nil {
					return fmt.Errorf("--source: %w", err)
				}
				opts.Sources = append(opts.Sources, sm)
				opts.SourceNames = append(opts.SourceNames, s)
			}
			test, err := data.Open(dataset, dataDir, "test", data.ForInput(m.Input))
			if err != nil {
				return err
			}
			if err := test.Info().Fits(m.Name, m.Input, m.Classes); err != nil {
				return err
			}
			ep := newEvalProgress(cmd.ErrOrStderr(), isTerminal(cmd.ErrOrStderr()), nil)
			opts.Progress = ep.update
			rep, err := eval.Run(m, test, opts)
			ep.finish()
			if err != nil {
				return err
			}
			rep.Compute = compute
			out := cmd.OutOrStdout()
			if jsonOut == "-" {
				out = cmd.ErrOrStderr()
			}
			// Accuracies in text are percentages with two decimals, as the
			// strong suite prints them; the JSON report keeps fractions.
			fmt.Fprintf(out, "%s on %s, %d examples: clean accuracy %.2f%% (top-5 %.2f%%)\n", ckpt, rep.Dataset, rep.Examples, 100*rep.CleanAccuracy, 100*rep.CleanTop5)
			for _, r := range rep.Whitebox {
				fmt.Fprintf(out, "  white-box %s: accuracy %.2f%% (top-5 %.2f%%)\n", r.Attack, 100*r.Top1, 100*r.Top5)
			}
			for _, r := range rep.Transfer {
				fmt.Fprintf(out, "  transfer from %s, %s: accuracy %.2f%% (top-5 %.2f%%)\n", r.Source, r.Attack, 100*r.Top1, 100*r.Top5)
			}
			if rep.Warning != "" {
				fmt.Fprintln(out, "WARNING "+rep.Warning)
			}
			if jsonOut != "" {
				return writeJSON(jsonOut, cmd.OutOrStdout(), rep)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&ckpt, "checkpoint", "", "model file to evaluate (.safetensors)")
	f.StringVar(&dataset, "dataset", "mnist", train.DatasetUsage+"; its test split is used")
	f.StringVar(&dataDir, "data-dir", "data/mnist", "dataset directory")
	f.StringVar(&modelName, "model", "", "the model of a file without logitpair metadata (e.g. written by PyTorch): "+strings.Join(models.Names(), ", "))
	f.StringVar(&modelConfig, "model-config", "", "model config as JSON, for files without logitpair metadata")
	f.IntVar(&examples, "examples", 1000, "evaluate the first N test examples (0: all)")
	f.StringVar(&attackStr, "attack", "", "comma-separated attack strings (pgd|pgdll|pgdrnd_EPS_STEP_NITER, fgsm_EPS); overrides --eps/--steps")
	f.Float64Var(&eps, "eps", 0.3, "white-box PGD ε")
	f.Float64Var(&step, "step-size", 0.01, "white-box PGD step size")
	f.IntVar(&steps, "steps", 100, "white-box PGD steps (0: clean accuracy only)")
	f.IntVar(&restarts, "restarts", 1, "random restarts (per-example worst case kept; --suite strong: default 10)")
	f.StringVar(&target, "target", "true", "comma-separated attack labels: true, predicted, random, least-likely")
	f.StringArrayVar(&sources, "source", nil, "transfer attack: craft on this model file (repeatable)")
	f.IntVar(&batch, "batch", 100, "evaluation batch size")
	f.IntVar(&threads, "threads", 0, "compute threads (0: all cores)")
	device.Flag(f, &dev)
	f.Int64Var(&seed, "seed", 1, "seed of the attacks' random starts and targets")
	f.StringVar(&jsonOut, "json", "", "write the report as JSON to this file ('-' for standard output)")
	f.StringVar(&suite, "suite", "standard", "evaluation suite: standard or strong (docs/EVALUATION.md)")
	f.StringVar(&reportDir, "report", "", "--suite strong: write eval.json, report.md and PNG plots to this directory")
	f.StringVar(&leaderboard, "leaderboard", "", "--suite strong: write the result as a leaderboard entry (RobustBench's model_info fields) to this JSON file ('-' for standard output)")
	f.IntVar(&squareQueries, "square-queries", 1000, "--suite strong: Square attack queries per example (negative: no Square attack)")
	f.IntVar(&squareExamples, "square-examples", 500, "--suite strong: run the Square attack on the first N examples (negative: all)")
	f.IntVar(&checkExamples, "check-examples", 200, "--suite strong: examples of the masking diagnostics (ε and step sweeps, loss slices)")
	f.BoolVar(&noChecks, "no-checks", false, "--suite strong: skip the masking diagnostics")
	f.BoolVar(&noTargeted, "no-targeted", false, "--suite strong: skip the targeted (least-likely, random) stages")
	return cmd
}

// runStrong runs the strong suite and writes its outputs: the JSON report,
// the report directory and the leaderboard entry of lm; the report carries
// the training compute the checkpoint recorded (nil: none).
func runStrong(cmd *cobra.Command, be tensor.Backend, m *models.Model, compute *checkpoint.Compute, ckpt, dataset, dataDir string, sources []string, jsonOut, reportDir, leaderboard string, lm strong.LeaderboardModel, o strong.Options) error {
	o.Model = ckpt
	for _, s := range sources {
		sm, err := loadModel(be, s, "", "")
		if err != nil {
			return fmt.Errorf("--source: %w", err)
		}
		if sm.Input != m.Input {
			return fmt.Errorf("--source %s expects %v inputs, the model %v", s, sm.Input, m.Input)
		}
		o.Sources = append(o.Sources, models.EvalView{M: sm})
		o.SourceNames = append(o.SourceNames, s)
	}
	test, err := data.Open(dataset, dataDir, "test", data.ForInput(m.Input))
	if err != nil {
		return err
	}
	if err := test.Info().Fits(m.Name, m.Input, m.Classes); err != nil {
		return err
	}
	errw := cmd.ErrOrStderr()
	sp := &strongProgress{w: errw, terminal: isTerminal(errw)}
	o.Progress, o.Advance = sp.start, sp.advance
	rep, err := strong.Run(models.EvalView{M: m}, test, o)
	sp.finish()
	if err != nil {
		return err
	}
	rep.Compute = compute
	var entry *strong.Leaderboard
	if leaderboard != "" {
		if entry, err = strong.NewLeaderboard(rep, lm); err != nil {
			return err
		}
	}
	out := cmd.OutOrStdout()
	if jsonOut == "-" || leaderboard == "-" {
		out = errw
	}
	strong.Summary(out, rep)
	if reportDir != "" {
		if err := strong.WriteReport(reportDir, rep); err != nil {
			return err
		}
		fmt.Fprintf(out, "report written to %s\n", filepath.Join(reportDir, "report.md"))
	}
	if entry != nil {
		if err := writeJSON(leaderboard, cmd.OutOrStdout(), entry); err != nil {
			return err
		}
	}
	if jsonOut != "" {
		return writeJSON(jsonOut, cmd.OutOrStdout(), rep)
	}
	return nil
}
