package train

import (
	"fmt"
	"strings"

	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/wire"

	"github.com/spf13/pflag"
)

// ModelUsage and DatasetUsage are the help texts of --model and --dataset,
// listing what models.New and data.Open accept (every command that takes
// these flags uses them, so the help and the errors name the same choices).
var (
	ModelUsage   = "model: " + strings.Join(models.Names(), ", ")
	DatasetUsage = datasetUsage()
)

func datasetUsage() string {
	var files, folders []string
	for _, d := range data.Datasets() {
		if data.IsFolderDataset(d) {
			folders = append(folders, d)
		} else {
			files = append(files, d)
		}
	}
	return "dataset: " + strings.Join(files, ", ") + ", or the image folders " + strings.Join(folders, ", ") + " (at the model's image size; docs/DATASETS.md)"
}

// BindFlags registers the training flags shared by every command that trains
// (`logitpair train`, the cluster's coordinator and worker) on fs, bound to
// c (whose values are the defaults). The returned function must run after
// parsing: it loads --config (YAML or JSON) over the defaults and re-applies
// every flag given on the command line, so flags override the file.
func BindFlags(fs *pflag.FlagSet, c *Config) func() error {
	var configPath string
	fs.StringVar(&configPath, "config", "", "configuration file (YAML or JSON, keys as the flag names); flags override it")
	fs.StringVar(&c.Dataset, "dataset", c.Dataset, DatasetUsage)
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "dataset directory")
	fs.BoolVar(&c.Augment, "augment", c.Augment, "the dataset's training augmentation (random crop/flip for CIFAR-10, crop for SVHN, none for MNIST)")
	fs.StringVar(&c.Model, "model", c.Model, ModelUsage)
	fs.Var(models.ConfigFlag{P: &c.ModelConfig}, "model-config", `model hyper-parameters as JSON, e.g. '{"width": 32, "classes": 200, "image_size": 64}'`)
	fs.StringVar(&c.Objective, "objective", c.Objective, "objective: "+strings.Join(objective.Names(), ", "))
	fs.Float64Var(&c.PairWeight, "pair-weight", c.PairWeight, "λ of alp/clp/logit-squeeze/vat-kl (β of trades), on the released code's MSE scale")
	fs.Float64Var(&c.Smoothing, "label-smoothing", c.Smoothing, "label smoothing δ of the cross-entropy terms")
	fs.Float64Var(&c.NoiseStd, "noise-std", c.NoiseStd, "σ of the Gaussian input noise of clp and logit-squeeze")
	fs.Float64Var(&c.MixupAlpha, "mixup-alpha", c.MixupAlpha, "mixup's Beta(α, α)")
	fs.StringVar(&c.SingleStep, "single-step", c.SingleStep, "single-step and ensemble-adv: the attack of the adversarial half, one step of --eps: fgsm (on --attack-target's label) or stepll (toward the least-likely class)")
	fs.BoolVar(&c.RandomEps, "random-eps", c.RandomEps, "single-step and ensemble-adv: draw each example's ε from N(0, (eps/2)²) truncated to [0, eps] (Kurakin et al. 2017a)")
	fs.StringSliceVar(&c.StaticModels, "static-models", c.StaticModels, "ensemble-adv: comma-separated model files of the fixed source models (loaded by every worker; never updated)")
	fs.StringVar(&c.SourceSchedule, "source-schedule", c.SourceSchedule, "ensemble-adv: each step's source of adversarial examples, round-robin (step mod (1+static models); 0 = the model being trained) or random (seeded, per step)")
	fs.StringVar(&c.Attack, "attack", c.Attack, "training attack as pgd|pgdll|pgdrnd_EPS_STEP_NITER (EPS, STEP in 1/255), fgsm_EPS, fgsmrs_EPS or stepll_EPS; overrides --eps etc. (single-step, ensemble-adv: the validation attack only)")
	fs.Float64Var(&c.Eps, "eps", c.Eps, "attack ε in [0,1] pixel units")
	fs.Float64Var(&c.StepSize, "step-size", c.StepSize, "attack step size α")
	fs.IntVar(&c.AttackSteps, "attack-steps", c.AttackSteps, "attack iterations")
	fs.IntVar(&c.Restarts, "restarts", c.Restarts, "attack random restarts")
	fs.StringVar(&c.AttackTarget, "attack-target", c.AttackTarget, "attack label: true, predicted, random or least-likely")
	fs.IntVar(&c.Batch, "batch", c.Batch, "clean examples per step (per worker in a cluster)")
	fs.Int64Var(&c.Steps, "steps", c.Steps, "training steps")
	fs.StringVar(&c.Optimizer, "optimizer", c.Optimizer, "optimizer: "+strings.Join(optim.KnownKinds(), ", ")+" (rmsprop: the TF1 rule)")
	fs.Float64Var(&c.LR, "lr", c.LR, "base learning rate")
	fs.StringVar(&c.LRSchedule, "lr-schedule", c.LRSchedule, "constant | step:EVERY:FACTOR | exp:STEPS:RATE | cosine:TOTAL[:FINAL] | warmup:STEPS,INNER")
	fs.Float64Var(&c.WeightDecay, "weight-decay", c.WeightDecay, "TF-slim l2_regularizer weight on conv and dense kernels")
	fs.Float64Var(&c.EMA, "ema", c.EMA, "parameter EMA decay (0: off; the released code used 0.9999)")
	fs.Int64Var(&c.Seed, "seed", c.Seed, "seed of initialization, data order, augmentation and attacks")
	fs.IntVar(&c.Threads, "threads", c.Threads, "compute threads (0: all cores)")
	fs.Int64Var(&c.LogEvery, "log-every", c.LogEvery, "steps between progress lines")
	fs.Float64Var(&c.RMSPropEpsilon, "rmsprop-epsilon", c.RMSPropEpsilon, "RMSProp ε (TF1 rule, inside the square root)")
	fs.StringVar(&c.WireFormat, "wire-format", c.WireFormat, "the gradient's precision on a cluster's wire: "+strings.Join(wire.FormatNames(), " or ")+" (bf16: each value rounded to bfloat16, half the push bytes; local training rounds the same way)")
	fs.StringVar(&c.Out, "out", c.Out, "output directory for checkpoints")
	fs.BoolVar(&c.Resume, "resume", c.Resume, "resume from the newest checkpoint in --out")
	fs.Int64Var(&c.ResumeFrom, "resume-from", c.ResumeFrom, "resume from the checkpoint of this step in --out instead of the newest (e.g. when the newest is corrupt); implies --resume")
	fs.StringVar(&c.InitFrom, "init-from", c.InitFrom, "start from the weights of this model file (fine-tuning)")
	fs.Int64Var(&c.CheckpointEvery, "checkpoint-every", c.CheckpointEvery, "steps between checkpoints (0: only at the end)")
	fs.IntVar(&c.Keep, "keep", c.Keep, "checkpoints to keep")
	fs.Int64Var(&c.ValidateEvery, "validate-every", c.ValidateEvery, "steps between robust validations (0: never); the best model is kept as best.safetensors")
	fs.IntVar(&c.ValidateExamples, "validate-examples", c.ValidateExamples, "validation examples: the last N of the test split (evaluations score the first ones)")
	fs.Int64Var(&c.SentinelEvery, "sentinel-every", c.SentinelEvery, "steps between the sentinel's checks against catastrophic overfitting and gradient masking (0: off): FGSM and PGD at --eps on validation examples; a collapse or a gap rolls back to the last good checkpoint at a lower learning rate")
	fs.IntVar(&c.SentinelExamples, "sentinel-examples", c.SentinelExamples, "sentinel: validation examples checked (the last N of the test split)")
	fs.IntVar(&c.SentinelSteps, "sentinel-steps", c.SentinelSteps, "sentinel: steps of the check's PGD (α = 2.5·eps/steps, random start)")
	fs.Float64Var(&c.SentinelCollapse, "sentinel-collapse", c.SentinelCollapse, "sentinel: trip when the PGD accuracy falls below this fraction of its best (once the best is ≥ 0.1; 0: never)")
	fs.Float64Var(&c.SentinelMaxGap, "sentinel-max-gap", c.SentinelMaxGap, "sentinel: trip when FGSM accuracy − PGD accuracy exceeds this (1: never)")
	fs.Float64Var(&c.SentinelLRFactor, "sentinel-lr-factor", c.SentinelLRFactor, "sentinel: multiply the learning rate by this at each rollback")
	fs.IntVar(&c.SentinelMaxRollbacks, "sentinel-max-rollbacks", c.SentinelMaxRollbacks, "sentinel: stop training at a trip beyond this many rollbacks")
	return func() error {
		if configPath == "" {
			return nil
		}
		// The command line's values, taken before the file overwrites them.
		// A list flag's String() ("[a,b]") does not parse back and Set
		// appends to a changed list, so lists are copied and Replaced.
		changed := map[string]string{}
		lists := map[string][]string{}
		fs.Visit(func(f *pflag.Flag) {
			if f.Name == "config" {
				return
			}
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				lists[f.Name] = append([]string{}, sv.GetSlice()...)
				return
			}
			changed[f.Name] = f.Value.String()
		})
		if err := c.Load(configPath); err != nil {
			return err
		}
		for name, v := range changed {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("--%s: %w", name, err)
			}
		}
		for name, v := range lists {
			if err := fs.Lookup(name).Value.(pflag.SliceValue).Replace(v); err != nil {
				return fmt.Errorf("--%s: %w", name, err)
			}
		}
		return nil
	}
}
