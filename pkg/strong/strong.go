package strong

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data"
)

// StageKind is how a stage attacks.
type StageKind string

const (
	// StageAPGD: APGD (or fixed-step PGD with Stage.Step > 0) on the model
	// itself, white box.
	StageAPGD StageKind = "apgd"
	// StageSquare: the gradient-free Square attack on the model's logits.
	StageSquare StageKind = "square"
	// StageTransfer: APGD-CE crafted on a source model (black box).
	StageTransfer StageKind = "transfer"
)

// Stage is one attack of the cascade.
type Stage struct {
	Name string    `json:"name"`
	Kind StageKind `json:"kind"`
	Loss LossKind  `json:"-"`
	// Target: attack.TrueLabel (untargeted), attack.LeastLikely or
	// attack.RandomClass (with Loss = TargetedCE).
	Target   attack.Target `json:"-"`
	Steps    int           `json:"steps,omitempty"`
	Step     float32       `json:"step_size,omitempty"` // > 0: fixed-step PGD instead of APGD
	Restarts int           `json:"restarts,omitempty"`
	// Examples limits the stage to the first Examples examples (0: all).
	Examples int `json:"examples,omitempty"`
	Queries  int `json:"queries,omitempty"`
	Source   int `json:"-"` // index into Options.Sources
}

// Options configures Run. Zero values take the defaults noted.
type Options struct {
	Model    string  // the model's name, for the report
	Eps      float32 // L∞ budget in [0, 1] pixels (required)
	Examples int     // the first N examples of the source (0: all)
	Batch    int     // 100
	Seed     int64
	Steps    int // APGD iterations per run: 100
	Restarts int // restarts of the untargeted APGD stages: 10
	// NoTargeted drops the least-likely and random-target stages.
	NoTargeted     bool
	SquareQueries  int     // 1000; < 0 disables the Square attack
	SquareExamples int     // Square runs on the first N examples: 500 (< 0: all)
	SquarePInit    float64 // 0.8
	Sources        []attack.Model
	SourceNames    []string
	// Stages replaces the default cascade (DefaultStages) when non-nil.
	Stages []Stage
	Checks CheckOptions
	// Progress, when set, is called before each run of a stage (each
	// restart) with the number of examples it will attack, and before the
	// gradient-masking checks with stage "checks" and their examples.
	Progress func(stage string, restart, attacked int)
	// Advance, when set, is called after each batch of a run with the
	// examples of the run done so far out of its total (the attacked
	// examples; a transfer stage crafts on every clean-correct one).
	Advance func(stage string, restart, done, total int)
	// now is the clock of the stages' durations (time.Now when nil).
	now func() time.Time
}

// CheckOptions configures the gradient-masking diagnostics.
type CheckOptions struct {
	Skip bool
	// Examples: the diagnostics use the first N evaluated examples (200).
	Examples int
	// Eps: the ε grid of the accuracy-vs-ε sweep (default ε/4, ε/2, ε, 0.5,
	// 1.0); the largest must give ~0 accuracy.
	Eps []float32
	// Steps: the PGD-CE step counts compared (default 1, 10, 100 and
	// Options.Steps), each with step size 2.5ε/steps.
	Steps []int
	// Restarts: the APGD-CE restart counts compared (default 1 and
	// Options.Restarts, at least 2), each an independent run with its own
	// random starts (neither the cascade's nor another count's) on the same
	// clean-correct examples, SweepSteps iterations per restart. The
	// cascade's accuracy after each restart can only fall, so only
	// independent runs can show more restarts raising accuracy (a model or
	// pipeline that changes with the queries it answers).
	Restarts []int
	// SweepSteps: APGD iterations at each ε of the sweep (Options.Steps).
	SweepSteps int
	// SliceExamples: examples of the loss-surface slices (20); SlicePoints:
	// grid points in [−ε, ε] (21).
	SliceExamples, SlicePoints int
}

// The suite's full budget: what `eval --suite strong` runs unless told
// otherwise, and what Headline calls a reduced budget when a run spent less.
const (
	DefaultSteps          = 100
	DefaultRestarts       = 10
	DefaultSquareQueries  = 1000
	DefaultSquareExamples = 500
)

func (o *Options) defaults() {
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.Steps <= 0 {
		o.Steps = DefaultSteps
	}
	if o.Restarts <= 0 {
		o.Restarts = DefaultRestarts
	}
	if o.SquareQueries == 0 {
		o.SquareQueries = DefaultSquareQueries
	}
	if o.SquareExamples == 0 {
		o.SquareExamples = DefaultSquareExamples
	}
	if o.SquarePInit <= 0 {
		o.SquarePInit = 0.8
	}
	if o.now == nil {
		o.now = time.Now
	}
	c := &o.Checks
	if c.Examples <= 0 {
		c.Examples = 200
	}
	if c.Eps == nil {
		c.Eps = []float32{o.Eps / 4, o.Eps / 2, o.Eps, 0.5, 1}
	}
	if c.Steps == nil {
		c.Steps = []int{1, 10, 100, o.Steps}
	}
	if c.Restarts == nil {
		c.Restarts = []int{1, max(o.Restarts, 2)}
	}
	if c.SweepSteps <= 0 {
		c.SweepSteps = o.Steps
	}
	if c.SliceExamples <= 0 {
		c.SliceExamples = 20
	}
	if c.SlicePoints < 3 {
		c.SlicePoints = 21
	}
	c.Eps = sortedUnique(c.Eps)
	c.Steps = sortedUnique(c.Steps)
	c.Restarts = sortedUnique(c.Restarts)
}

func sortedUnique[T int | float32](v []T) []T {
	v = slices.Clone(v)
	slices.Sort(v)
	return slices.Compact(v)
}

// DefaultStages is the strong suite's cascade for o, in order:
//
//  1. APGD-CE, o.Steps iterations × o.Restarts restarts;
//  2. APGD-DLR (APGD-CW below 3 classes), o.Steps × o.Restarts;
//  3. APGD on the targeted CE of the least-likely class, o.Steps;
//  4. the same toward a random class ≠ y, o.Steps;
//  5. Square (o.SquareQueries queries, the first o.SquareExamples examples);
//  6. transfer from each source: APGD-CE, o.Steps, crafted on the source.
//
// Stages 1–4 are white box, 5–6 black box.
func DefaultStages(o Options, classes int) []Stage {
	o.defaults()
	margin, mname := DLR, "apgd-dlr"
	if classes < 3 {
		margin, mname = CW, "apgd-cw"
	}
	st := []Stage{
		{Name: "apgd-ce", Kind: StageAPGD, Loss: CE, Steps: o.Steps, Restarts: o.Restarts},
		{Name: mname, Kind: StageAPGD, Loss: margin, Steps: o.Steps, Restarts: o.Restarts},
	}
	if !o.NoTargeted {
		st = append(st,
			Stage{Name: "apgd-t-ll", Kind: StageAPGD, Loss: TargetedCE, Target: attack.LeastLikely, Steps: o.Steps, Restarts: 1},
			Stage{Name: "apgd-t-rnd", Kind: StageAPGD, Loss: TargetedCE, Target: attack.RandomClass, Steps: o.Steps, Restarts: 1})
	}
	if o.SquareQueries > 0 {
		st = append(st, Stage{Name: "square", Kind: StageSquare, Queries: o.SquareQueries, Examples: o.SquareExamples, Restarts: 1})
	}
	for i := range o.Sources {
		name := fmt.Sprintf("transfer-%d", i)
		if i < len(o.SourceNames) {
			name = "transfer:" + o.SourceNames[i]
		}
		st = append(st, Stage{Name: name, Kind: StageTransfer, Loss: CE, Steps: o.Steps, Restarts: 1, Source: i})
	}
	return st
}

// StageResult is one stage's outcome. Accuracies are fractions of all
// evaluated examples.
type StageResult struct {
	Stage
	LossName string `json:"loss,omitempty"`
	Target   string `json:"target,omitempty"`
	// Attacked: examples the stage ran on (still correct before it, first
	// restart); Broken: those it misclassified.
	Attacked int `json:"attacked"`
	Broken   int `json:"broken"`
	// Accuracy: cascade robust accuracy after this stage; AccuracyAfterRestart
	// after each restart.
	Accuracy             float64   `json:"accuracy"`
	Top5                 float64   `json:"top5_accuracy"`
	AccuracyAfterRestart []float64 `json:"accuracy_after_restart,omitempty"`
	// TargetHit: share of attacked examples whose target became top-1.
	TargetHit *float64 `json:"target_hit,omitempty"`
	// Standalone: a transfer attack's accuracy on its own (crafted for every
	// clean-correct example).
	Standalone *float64 `json:"standalone_accuracy,omitempty"`
	// GradientPasses and Forwards count the model's rows (padding included):
	// forward+input-gradient passes and forward-only passes.
	GradientPasses int  `json:"gradient_passes"`
	Forwards       int  `json:"forwards"`
	WhiteBox       bool `json:"white_box"`
	// Seconds is the stage's wall time.
	Seconds float64 `json:"seconds"`
}

// Report is the strong suite's outcome. clean_accuracy, whitebox_accuracy
// and transfer_accuracy mean what they mean in pkg/eval's report, so
// `logitpair report` reads both.
type Report struct {
	Suite            string   `json:"suite"`
	Model            string   `json:"model"`
	Dataset          string   `json:"dataset"`
	Examples         int      `json:"examples"`
	Eps              float64  `json:"eps"`
	CleanAccuracy    float64  `json:"clean_accuracy"`
	CleanTop5        float64  `json:"clean_top5_accuracy"`
	WhiteboxAccuracy *float64 `json:"whitebox_accuracy,omitempty"`
	// TransferAccuracy: the lowest stand-alone transfer accuracy.
	TransferAccuracy *float64 `json:"transfer_accuracy,omitempty"`
	// RobustAccuracy: accuracy after every stage, white and black box (the
	// cascade's per-example worst case); RobustTop5 likewise for top-5 (an
	// upper bound: examples no longer top-1 correct are not attacked).
	RobustAccuracy float64       `json:"robust_accuracy"`
	RobustTop5     float64       `json:"robust_top5_accuracy"`
	Stages         []StageResult `json:"stages"`
	Checks         []Check       `json:"checks,omitempty"`
	Warnings       int           `json:"masking_warnings"`
	Diagnostics    *Diagnostics  `json:"diagnostics,omitempty"`
	GradientPasses int           `json:"gradient_passes"`
	Forwards       int           `json:"forwards"`
	Settings       Settings      `json:"settings"`
	// Seconds is the whole run's wall time, ChecksSeconds that of the
	// gradient-masking checks (each stage's is its StageResult.Seconds).
	Seconds       float64 `json:"seconds"`
	ChecksSeconds float64 `json:"checks_seconds,omitempty"`
	// Compute is the training compute recorded in the evaluated checkpoint's
	// metadata (checkpoint.Compute), when it has one; Run leaves it nil.
	Compute *checkpoint.Compute `json:"compute,omitempty"`
}

// Settings records the options a report was made with.
type Settings struct {
	Batch         int   `json:"batch"`
	Seed          int64 `json:"seed"`
	Steps         int   `json:"steps"`
	Restarts      int   `json:"restarts"`
	SquareQueries int   `json:"square_queries"`
	CheckExamples int   `json:"check_examples"`
}

// Run evaluates m (through its logits and input gradient only) on the first
// o.Examples examples of src: clean accuracy, then the cascade of stages,
// each run only on the examples every earlier stage (and restart) left
// correctly classified, keeping each example's first adversarial example;
// then the gradient-masking checks. All randomness derives from o.Seed.
func Run(m attack.Model, src data.Source, o Options) (*Report, error) {
	if !(o.Eps > 0 && o.Eps <= 1) {
		return nil, fmt.Errorf("strong: eps must be in (0, 1], got %v", o.Eps)
	}
	o.defaults()
	t0 := o.now()
	info := src.Info()
	n := info.Len
	if o.Examples > 0 && o.Examples < n {
		n = o.Examples
	}
	if n == 0 {
		return nil, fmt.Errorf("strong: no examples")
	}
	if len(o.SourceNames) != 0 && len(o.SourceNames) != len(o.Sources) {
		return nil, fmt.Errorf("strong: %d source names for %d sources", len(o.SourceNames), len(o.Sources))
	}
	shape := [3]int{info.C, info.H, info.W}
	d := info.Size()
	s := &suite{o: o, n: n, d: d, shape: shape, x: make([]float32, n*d), labels: make([]int32, n)}
	for i := 0; i < n; i++ {
		y, err := src.Example(i, s.x[i*d:(i+1)*d])
		if err != nil {
			return nil, err
		}
		s.labels[i] = y
	}
	s.ev = newEvaluator(m, shape, o.Batch)
	var err error
	if err = s.clean(); err != nil {
		return nil, err
	}
	if s.k <= int(maxLabel(s.labels)) {
		return nil, fmt.Errorf("strong: %s has labels up to %d, model %s only %d logits", info.Name, maxLabel(s.labels), o.Model, s.k)
	}
	stages := o.Stages
	if stages == nil {
		stages = DefaultStages(o, s.k)
	}
	rep := &Report{Suite: "strong", Model: o.Model, Dataset: info.Name, Examples: n, Eps: asWritten(o.Eps),
		CleanAccuracy: s.frac(count(s.robust)), CleanTop5: s.frac(count(s.robust5)),
		Settings: Settings{Batch: o.Batch, Seed: o.Seed, Steps: o.Steps, Restarts: o.Restarts, SquareQueries: o.SquareQueries, CheckExamples: o.Checks.Examples}}
	s.cleanRobust = slices.Clone(s.robust)
	white := true
	for si, st := range stages {
		if st.Kind == StageTransfer && (st.Source < 0 || st.Source >= len(o.Sources)) {
			return nil, fmt.Errorf("strong: stage %s: no source %d", st.Name, st.Source)
		}
		if st.Kind != StageAPGD && white {
			v := s.frac(count(s.robust))
			rep.WhiteboxAccuracy = &v
			white = false
		}
		ts := o.now()
		r := s.stage(si, st)
		r.Seconds = o.now().Sub(ts).Seconds()
		rep.Stages = append(rep.Stages, r)
		if r.Standalone != nil && (rep.TransferAccuracy == nil || *r.Standalone < *rep.TransferAccuracy) {
			v := *r.Standalone
			rep.TransferAccuracy = &v
		}
	}
	if white {
		v := s.frac(count(s.robust))
		rep.WhiteboxAccuracy = &v
	}
	rep.RobustAccuracy = s.frac(count(s.robust))
	rep.RobustTop5 = s.frac(count(s.robust5))
	if !o.Checks.Skip {
		if o.Progress != nil {
			o.Progress("checks", 0, min(o.Checks.Examples, n))
		}
		tc := o.now()
		rep.Diagnostics = s.diagnose()
		rep.ChecksSeconds = o.now().Sub(tc).Seconds()
		rep.Checks = checks(rep)
		for _, c := range rep.Checks {
			if c.Status == Warn {
				rep.Warnings++
			}
		}
	}
	rep.GradientPasses, rep.Forwards = s.ev.Grads, s.ev.Forwards
	rep.Seconds = o.now().Sub(t0).Seconds()
	return rep, nil
}

// suite is the state of one Run.
type suite struct {
	o           Options
	n, d, k     int
	shape       [3]int
	x           []float32 // clean examples
	labels      []int32
	cleanZ      []float32 // clean logits, n×K
	ev          *evaluator
	robust      []bool // still top-1 correct
	robust5     []bool // still top-5 correct (see Report)
	cleanRobust []bool
	adv         []float32 // each example's adversarial example (clean if none)
	brokenBy    []int     // stage index, −1: clean error or never
	grad        gradStats
	curves      []Curve // each APGD stage's first run
}

type gradStats struct {
	zero, saturated, total int
}

func (s *suite) frac(k int) float64 { return float64(k) / float64(s.n) }

func count(b []bool) int {
	k := 0
	for _, v := range b {
		if v {
			k++
		}
	}
	return k
}

func maxLabel(l []int32) int32 {
	m := int32(0)
	for _, v := range l {
		m = max(m, v)
	}
	return m
}

// clean scores the clean examples and gathers the input-gradient statistics.
func (s *suite) clean() error {
	n, d := s.n, s.d
	s.robust, s.robust5 = make([]bool, n), make([]bool, n)
	s.adv = slices.Clone(s.x)
	s.brokenBy = make([]int, n)
	for lo := 0; lo < n; lo += s.o.Batch {
		b := min(s.o.Batch, n-lo)
		z, g := s.ev.grad(s.x[lo*d:], b, func(i int, z, dz []float32) {
			CE.eval(z, int(s.labels[lo+i]), 0, dz)
		})
		s.k = s.ev.k
		if s.cleanZ == nil {
			s.cleanZ = make([]float32, n*s.k)
		}
		copy(s.cleanZ[lo*s.k:], z)
		for i := 0; i < b; i++ {
			zi := z[i*s.k : (i+1)*s.k]
			r := rank(zi, int(s.labels[lo+i]))
			s.robust[lo+i], s.robust5[lo+i] = r == 0, r < 5
			s.brokenBy[lo+i] = -1
			gmax := float32(0)
			for _, v := range g[i*d : (i+1)*d] {
				gmax = max(gmax, v, -v)
			}
			if gmax <= ZeroGradient {
				s.grad.zero++
			}
			if saturated(zi) {
				s.grad.saturated++
			}
			s.grad.total++
		}
	}
	return nil
}

// stage runs one stage of the cascade.
func (s *suite) stage(si int, st Stage) StageResult {
	o := s.o
	res := StageResult{Stage: st, WhiteBox: st.Kind == StageAPGD}
	if st.Kind != StageSquare {
		res.LossName = st.Loss.String()
	}
	if st.Loss.Targeted() {
		res.Target = st.Target.String()
	}
	g0, f0 := s.ev.Grads, s.ev.Forwards
	limit := s.n
	if st.Examples > 0 && st.Examples < limit {
		limit = st.Examples
	}
	restarts := max(st.Restarts, 1)
	hits := 0
	var curve []float64
	curveN, rose := 0, 0
	if st.Kind == StageTransfer {
		s.transfer(si, st, &res)
	}
	for r := 0; r < restarts && st.Kind != StageTransfer; r++ {
		var idx []int
		for i := 0; i < limit; i++ {
			if s.robust[i] {
				idx = append(idx, i)
			}
		}
		if r == 0 {
			res.Attacked = len(idx)
		} else if len(idx) == 0 {
			break // nothing left to restart on
		}
		if o.Progress != nil {
			o.Progress(st.Name, r, len(idx))
		}
		for lo := 0; lo < len(idx); lo += o.Batch {
			chunk := idx[lo:min(lo+o.Batch, len(idx))]
			x0, labels, targets := s.gather(chunk, st)
			rng := rand.New(rand.NewPCG(uint64(o.Seed), uint64(si)<<48|uint64(r)<<32|uint64(chunk[0])))
			var cr chunkResult
			switch st.Kind {
			case StageAPGD:
				it := Iterative{Eps: o.Eps, Steps: st.Steps, Step: st.Step, RandomStart: true, Loss: st.Loss}
				cr = it.run(s.ev, x0, len(chunk), labels, targets, rng)
				if r == 0 {
					if curve == nil {
						curve = make([]float64, len(cr.Curve))
					}
					for t, v := range cr.Curve {
						curve[t] += v
					}
					curveN += len(chunk)
					for a := range chunk {
						if cr.BestLoss[a] > cr.Start[a] {
							rose++
						}
					}
				}
			case StageSquare:
				sq := Square{Eps: o.Eps, Queries: st.Queries, PInit: o.SquarePInit}
				cr, _ = sq.run(s.ev, x0, len(chunk), labels, rng)
			}
			for a, i := range chunk {
				if cr.Hit[a] {
					hits++
				}
				s.record(si, i, cr.Success[a], cr.Top5Lost[a], cr.Adv[a*s.d:(a+1)*s.d])
				if cr.Success[a] {
					res.Broken++
				}
			}
			if o.Advance != nil {
				o.Advance(st.Name, r, lo+len(chunk), len(idx))
			}
		}
		res.AccuracyAfterRestart = append(res.AccuracyAfterRestart, s.frac(count(s.robust)))
	}
	if st.Kind == StageAPGD {
		c := Curve{Stage: st.Name, Loss: st.Loss.String(), Examples: curveN, Mean: curve}
		if curveN > 0 {
			c.RoseShare = float64(rose) / float64(curveN)
		}
		for t := range c.Mean {
			c.Mean[t] /= float64(curveN)
		}
		s.curves = append(s.curves, c)
	}
	if st.Loss.Targeted() && res.Attacked > 0 {
		v := float64(hits) / float64(res.Attacked)
		res.TargetHit = &v
	}
	res.Accuracy, res.Top5 = s.frac(count(s.robust)), s.frac(count(s.robust5))
	res.GradientPasses, res.Forwards = s.ev.Grads-g0, s.ev.Forwards-f0
	if restarts == 1 {
		res.AccuracyAfterRestart = nil
	}
	return res
}

// record applies one attacked example's outcome.
func (s *suite) record(si, i int, success, top5Lost bool, adv []float32) {
	if success && s.robust[i] {
		s.robust[i] = false
		s.brokenBy[i] = si
		copy(s.adv[i*s.d:(i+1)*s.d], adv)
	}
	if top5Lost {
		s.robust5[i] = false
	}
}

// gather copies the chunk's examples, labels and (for targeted stages)
// targets: the clean least-likely class, or a random class ≠ y drawn from a
// stream keyed by the seed and the example, whatever the chunking.
func (s *suite) gather(chunk []int, st Stage) ([]float32, []int32, []int32) {
	x0 := make([]float32, len(chunk)*s.d)
	labels := make([]int32, len(chunk))
	var targets []int32
	if st.Loss.Targeted() {
		targets = make([]int32, len(chunk))
	}
	for a, i := range chunk {
		copy(x0[a*s.d:], s.x[i*s.d:(i+1)*s.d])
		labels[a] = s.labels[i]
		if targets == nil {
			continue
		}
		switch st.Target {
		case attack.LeastLikely:
			z := s.cleanZ[i*s.k : (i+1)*s.k]
			ll := 0
			for j, v := range z {
				if v < z[ll] {
					ll = j
				}
			}
			targets[a] = int32(ll)
		default:
			rng := rand.New(rand.NewPCG(uint64(s.o.Seed)^0x7a5, uint64(i)))
			t := int32(rng.IntN(s.k - 1))
			if t >= labels[a] {
				t++
			}
			targets[a] = t
		}
	}
	return x0, labels, targets
}

// transfer crafts APGD-CE examples on a source model for every
// clean-correct example (so that its stand-alone accuracy is known) and
// scores them on the target; the cascade keeps those that break examples
// still correct.
func (s *suite) transfer(si int, st Stage, res *StageResult) {
	o := s.o
	src := newEvaluator(o.Sources[st.Source], s.shape, o.Batch)
	var idx []int
	for i := 0; i < s.n; i++ {
		if s.cleanRobust[i] {
			idx = append(idx, i)
		}
	}
	for i := 0; i < s.n; i++ {
		if s.robust[i] {
			res.Attacked++
		}
	}
	if o.Progress != nil {
		o.Progress(st.Name, 0, res.Attacked)
	}
	correct := 0
	for lo := 0; lo < len(idx); lo += o.Batch {
		chunk := idx[lo:min(lo+o.Batch, len(idx))]
		x0, labels, _ := s.gather(chunk, st)
		rng := rand.New(rand.NewPCG(uint64(o.Seed), uint64(si)<<48|uint64(chunk[0])))
		it := Iterative{Eps: o.Eps, Steps: st.Steps, RandomStart: true, Loss: CE}
		cr := it.run(src, x0, len(chunk), labels, nil, rng)
		// Score the source's highest-loss point (its adversarial example) on
		// the target.
		z := s.ev.logits(cr.Best, len(chunk))
		for a, i := range chunk {
			r := rank(z[a*s.k:(a+1)*s.k], int(labels[a]))
			if r == 0 {
				correct++
			}
			was := s.robust[i]
			s.record(si, i, r > 0, r >= 5, cr.Best[a*s.d:(a+1)*s.d])
			if was && !s.robust[i] {
				res.Broken++
			}
		}
		if o.Advance != nil {
			o.Advance(st.Name, 0, lo+len(chunk), len(idx))
		}
	}
	v := s.frac(correct)
	res.Standalone = &v
}

// asWritten is attack.AsWritten: ε in the JSON report as the user wrote it
// (0.3, not 0.30000001192092896).
func asWritten(x float32) float64 { return attack.AsWritten(x) }
