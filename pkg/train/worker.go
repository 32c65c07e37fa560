package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/wire"
)

// Batcher supplies training batches: the examples (and augmentation) of
// worker slot `worker` of `workers` at `step`, a pure function of those and
// the data seed. data.Loader implements it.
type Batcher interface {
	Batch(step int64, worker, workers, batch int, x []float32, y []int32) ([]int, error)
}

// Purposes of the per-step random streams (StepRNG).
const (
	rngAttack    = 1
	rngObjective = 2
	rngSource    = 3 // ensemble-adv's random schedule, drawn with slot 0 so every worker agrees
	rngEps       = 4 // the single-step objectives' random ε
)

// StepRNG returns the random stream for one purpose of one worker slot at
// one step of a run with the given seed: independent of every other
// (step, slot, purpose), so any step can be recomputed on its own.
func StepRNG(seed, step int64, slot, purpose int) *rand.Rand {
	a := splitmix(uint64(seed) ^ splitmix(uint64(step)))
	b := splitmix(uint64(slot)<<8 | uint64(purpose))
	return rand.New(rand.NewPCG(a, b))
}

// SourceRNG returns the stream ensemble-adv's random schedule draws step's
// source from: the same for every worker slot, so a synchronous step crafts
// all its adversarial examples on one source.
func SourceRNG(seed, step int64) *rand.Rand { return StepRNG(seed, step, 0, rngSource) }

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Worker computes one training step's gradient: batch → attack (model in
// evaluation mode) → objective (model in training mode) → backward → flat
// gradient of the objective. Local training and every cluster worker run
// this same code; weight decay is added where the optimizer runs
// (optim.WeightDecay).
type Worker struct {
	Cfg    Config
	Model  *models.Model
	be     tensor.Backend
	attack *attack.Attack
	obj    *objective.Objective
	data   Batcher
	layout nn.Layout
	x      *tensor.Tensor
	hostX  []float32
	labels []int32
	static []*models.Model // ensemble-adv's static source models (evaluation mode, never updated)
	eps    []float32       // per-example ε (--random-eps)
	wire   wire.Format     // the gradient's precision (Config.WireFormat)
	// AttackTime is how long the last Gradient spent crafting the
	// adversarial batch (zero for objectives without one): the worker
	// reports it as the step's attack phase.
	AttackTime time.Duration
	// Passes is the passes this worker has run (forward and backward rows
	// of the attack and of the training step, counted where they happen),
	// which StepPasses predicts.
	Passes Passes
}

// NewWorker wires a worker for cfg around a model (whose parameters it
// reads at each step) and a batch source. For ensemble-adv it loads the
// static models (cfg.StaticModels) onto the model's backend; an unreadable
// file, or one whose input shape or classes differ from the model's, is an
// error naming the file.
func NewWorker(cfg Config, m *models.Model, data Batcher) (*Worker, error) {
	be := m.Backend
	obj, err := objective.New(be, cfg.ObjectiveConfig())
	if err != nil {
		return nil, err
	}
	format, err := cfg.Wire()
	if err != nil {
		return nil, fmt.Errorf("--wire-format: %w", err)
	}
	w := &Worker{Cfg: cfg, Model: m, be: be, obj: obj, data: data, layout: m.FlatLayout(), wire: format}
	if obj.NeedsAdversarial() {
		ac, err := cfg.TrainAttackConfig()
		if err != nil {
			return nil, err
		}
		if w.attack, err = attack.New(be, ac); err != nil {
			return nil, err
		}
	}
	if cfg.Objective == "ensemble-adv" {
		if w.static, err = LoadStaticModels(be, cfg.StaticModels, m); err != nil {
			return nil, err
		}
	}
	c, h, wd := m.Input[0], m.Input[1], m.Input[2]
	w.x = be.New(cfg.Batch, c, h, wd)
	w.hostX = make([]float32, cfg.Batch*c*h*wd)
	w.labels = make([]int32, cfg.Batch)
	return w, nil
}

// Layout is the flat layout of the trainable parameters.
func (w *Worker) Layout() nn.Layout { return w.layout }

// Gradient computes step's gradient for worker slot `slot` of `slots` at the
// model's current parameters into grad (laid out as Layout): the gradient
// of the objective alone (weight decay is added by whoever applies the
// optimizer, optim.WeightDecay). A non-finite loss is an error naming the step and the
// terms, returned before any gradient is computed.
func (w *Worker) Gradient(step int64, slot, slots int, grad []float32) (objective.Terms, error) {
	return w.GradientReady(step, slot, slots, grad, nil)
}

// GradientReady is Gradient that hands out the gradient as the backward
// pass produces it, from the output layer down: ready(lo), when ready is
// not nil, is called on the calling goroutine each time grad[lo:] has
// become final (models.Model.BackwardReady), with lo non-increasing and
// the last call at lo = 0. The model's buffers (batch-norm running
// statistics) are final before the first call: only the forward passes
// change them. grad holds the same values as Gradient's.
//
// The gradient is at the precision of the configuration's wire format
// (Config.WireFormat): with bf16 every value is rounded as a push would
// round it (wire.Format.Round), so local training, an in-memory cluster,
// a cluster over gRPC and a replay of its log all apply the same steps.
func (w *Worker) GradientReady(step int64, slot, slots int, grad []float32, ready func(lo int)) (objective.Terms, error) {
	if len(grad) != w.layout.Total {
		return objective.Terms{}, fmt.Errorf("gradient buffer of %d for %d parameters", len(grad), w.layout.Total)
	}
	if _, err := w.data.Batch(step, slot, slots, w.Cfg.Batch, w.hostX, w.labels); err != nil {
		return objective.Terms{}, fmt.Errorf("step %d: %w", step, err)
	}
	w.be.Upload(w.x, w.hostX)
	var xadv *tensor.Tensor
	source := 0
	w.AttackTime = 0
	if w.attack != nil {
		t0 := time.Now()
		rng := StepRNG(w.Cfg.Seed, step, slot, rngAttack)
		var model attack.Model = models.EvalView{M: w.Model}
		if len(w.static) > 0 {
			// ensemble-adv: this step's source, the same for every slot.
			source = w.obj.Source(step, SourceRNG(w.Cfg.Seed, step))
			if source > 0 {
				model = models.EvalView{M: w.static[source-1]}
			}
		}
		view := countingModel{Model: model, n: &w.Passes}
		switch {
		case w.obj.Name == "trades":
			kl := objective.NewKLAttackLoss(w.be, view.Logits(w.x))
			xadv = w.attack.RunLoss(view, w.x, kl, rng)
		case w.Cfg.RandomEps:
			if len(w.eps) != len(w.labels) {
				w.eps = make([]float32, len(w.labels))
			}
			attack.RandomEps(StepRNG(w.Cfg.Seed, step, slot, rngEps), w.attack.Eps, w.eps)
			xadv, _ = w.attack.RunEps(view, w.x, w.labels, w.eps, rng)
		default:
			xadv, _ = w.attack.Run(view, w.x, w.labels, rng)
		}
		w.AttackTime = time.Since(t0)
	}
	in := w.obj.Inputs(w.x, xadv, StepRNG(w.Cfg.Seed, step, slot, rngObjective))
	z := w.Model.Forward(in, true)
	w.Passes.Forward += int64(in.Dim(0))
	dz, terms := w.obj.Loss(z, w.labels)
	terms.Source = source
	if math.IsNaN(terms.Loss) || math.IsInf(terms.Loss, 0) {
		return terms, &NonFiniteError{Step: step, Terms: terms}
	}
	w.Passes.Backward += int64(dz.Dim(0))
	trainable := w.Model.Trainable()
	hi, next := w.layout.Total, len(trainable) // grad[hi:] is gathered; trainable[next:] are the tensors there
	w.Model.BackwardReady(dz, nn.Grad{Params: true}, func(lo int) {
		// Gather the tensors that became final, [lo, hi) of the layout.
		first := next
		for first > 0 && w.layout.Ranges[first-1].Offset >= lo {
			first--
		}
		nn.Gather(w.be, trainable[first:next], grad[lo:hi], true)
		w.wire.Round(grad[lo:hi])
		hi, next = lo, first
		if ready != nil {
			ready(lo)
		}
	})
	return terms, nil
}

// DecayMask is the one rule of which parameters weight decay applies to:
// the elements of the layout's tensors whose Role.Decayed() is true (conv
// and dense kernels; not biases or batch-norm parameters), in the layout's
// flat coordinates. Weight decay itself (optim.WeightDecay) is added where
// the optimizer runs, after the gradient is complete: by train.Trainer, and
// by paramserver.Shard after averaging.
func DecayMask(layout nn.Layout) []optim.Range {
	var out []optim.Range
	for _, r := range layout.Ranges {
		if r.Role.Decayed() {
			out = append(out, optim.Range{Lo: r.Offset, Hi: r.Offset + r.Size})
		}
	}
	return out
}

// NonFiniteError reports a NaN or infinite loss.
type NonFiniteError struct {
	Step  int64
	Terms objective.Terms
}

func (e *NonFiniteError) Error() string {
	t := e.Terms
	return fmt.Sprintf("loss is %v at step %d (clean CE %v, adversarial CE %v, pair term %v, mean logit norm %v)",
		t.Loss, e.Step, t.CleanCE, t.AdvCE, t.Pair, t.LogitNorm)
}
