package strong

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// Thresholds of the gradient-masking checks.
const (
	// ZeroGradient: an input gradient whose largest entry (CE of the true
	// label, per example) is at most this counts as zero.
	ZeroGradient = 1e-12
	// SaturatedProb: a softmax whose largest probability exceeds 1 − this
	// counts as saturated.
	SaturatedProb = 1e-6
	// LargeEpsMaxAccuracy: accuracy allowed at the sweep's largest ε (≥ 0.5).
	LargeEpsMaxAccuracy = 0.01
	// Slack: how far accuracy may rise with ε or with steps before it counts
	// as rising, on top of one example's worth (sampling noise of the random
	// starts).
	Slack = 0.01
	// RestartGainMax: accuracy the restarts of APGD-CE may take off the
	// first run's before the loss surface counts as too noisy to trust.
	RestartGainMax = 0.05
	// BlackBoxMaxBroken: share of the white-box-robust examples a black-box
	// stage may break before black box counts as beating white box.
	BlackBoxMaxBroken = 0.01
	// ConvergenceMinRose: share of the attacked examples whose attack loss
	// must rise above its starting value.
	ConvergenceMinRose = 0.9
	// SliceMinIncrease: share of the slice examples whose loss must rise
	// from α = 0 to α = ε along sign(∇).
	SliceMinIncrease = 0.9
	// ZeroGradMaxShare and SaturatedMaxShare: shares of the examples with a
	// zero input gradient or a saturated softmax allowed.
	ZeroGradMaxShare  = 0.01
	SaturatedMaxShare = 0.5
)

// Status is a check's verdict.
type Status string

const (
	Pass Status = "pass"
	Warn Status = "warn"
	Skip Status = "skip"
)

// Check is one gradient-masking check.
type Check struct {
	Name      string `json:"name"`
	Status    Status `json:"status"`
	Criterion string `json:"criterion"`
	Evidence  string `json:"evidence"`
}

// Diagnostics holds the data behind the checks and the plots.
type Diagnostics struct {
	Examples          int          `json:"examples"`
	EpsSweep          []SweepPoint `json:"eps_sweep,omitempty"`
	StepsSweep        []SweepPoint `json:"steps_sweep,omitempty"`
	RestartsSweep     []SweepPoint `json:"restarts_sweep,omitempty"`
	Convergence       []Curve      `json:"convergence,omitempty"`
	Slices            []Slice      `json:"slices,omitempty"`
	SliceIncrease     float64      `json:"slice_increase_share"`
	SliceExamples     int          `json:"slice_examples"`
	ZeroGradientShare float64      `json:"zero_gradient_share"`
	SaturatedShare    float64      `json:"saturated_share"`
}

// SweepPoint is an accuracy at one ε, step count or restart count.
type SweepPoint struct {
	Eps      float64 `json:"eps"`
	Steps    int     `json:"steps"`
	Restarts int     `json:"restarts,omitempty"`
	Accuracy float64 `json:"accuracy"`
	Attack   string  `json:"attack"`
}

// Curve is the mean attack loss at each iterate of a stage's first run.
type Curve struct {
	Stage    string    `json:"stage"`
	Loss     string    `json:"loss"`
	Examples int       `json:"examples"`
	Mean     []float64 `json:"mean"`
	// RoseShare: share of the examples whose best loss exceeds their
	// starting loss.
	RoseShare float64 `json:"rose_share"`
}

// Slice is the mean cross-entropy at x + α·direction over the slice
// examples, α on a grid of [−ε, ε].
type Slice struct {
	Direction string    `json:"direction"`
	Alpha     []float64 `json:"alpha"`
	Loss      []float64 `json:"loss"`
}

func saturated(z []float32) bool {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, float64(v))
	}
	s := 0.0
	for _, v := range z {
		s += math.Exp(float64(v) - mx)
	}
	return 1-1/s < SaturatedProb
}

// diagnose runs the sweeps and slices on the first Checks.Examples examples.
func (s *suite) diagnose() *Diagnostics {
	o := s.o
	cn := min(o.Checks.Examples, s.n)
	dg := &Diagnostics{Examples: cn,
		ZeroGradientShare: float64(s.grad.zero) / float64(max(s.grad.total, 1)),
		SaturatedShare:    float64(s.grad.saturated) / float64(max(s.grad.total, 1))}
	var idx []int
	for i := 0; i < cn; i++ {
		if s.cleanRobust[i] {
			idx = append(idx, i)
		}
	}
	frac := func(k int) float64 { return float64(k) / float64(cn) }
	margin := DLR
	if s.k < 3 {
		margin = CW
	}
	// attack runs it on the examples idx (chunked) and returns which stay
	// correct.
	attack := func(it Iterative, idx []int, tag uint64) []int {
		var keep []int
		for lo := 0; lo < len(idx); lo += o.Batch {
			chunk := idx[lo:min(lo+o.Batch, len(idx))]
			x0, labels, _ := s.gather(chunk, Stage{})
			rng := rand.New(rand.NewPCG(uint64(o.Seed)+7, tag<<32|uint64(chunk[0])))
			cr := it.run(s.ev, x0, len(chunk), labels, nil, rng)
			for a, i := range chunk {
				if !cr.Success[a] {
					keep = append(keep, i)
				}
			}
		}
		return keep
	}
	for ei, eps := range o.Checks.Eps {
		if !(eps > 0 && eps <= 1) {
			continue
		}
		if o.Progress != nil {
			o.Progress(fmt.Sprintf("check: ε=%.3g", eps), 0, len(idx))
		}
		left := attack(Iterative{Eps: eps, Steps: o.Checks.SweepSteps, RandomStart: true, Loss: CE}, idx, uint64(ei)<<8|1)
		left = attack(Iterative{Eps: eps, Steps: o.Checks.SweepSteps, RandomStart: true, Loss: margin}, left, uint64(ei)<<8|2)
		dg.EpsSweep = append(dg.EpsSweep, SweepPoint{Eps: asWritten(eps), Steps: o.Checks.SweepSteps, Accuracy: frac(len(left)),
			Attack: fmt.Sprintf("APGD-CE then APGD-%s, %d iterations, 1 restart", strings.ToUpper(margin.String()), o.Checks.SweepSteps)})
	}
	for _, steps := range o.Checks.Steps {
		if steps < 1 {
			continue
		}
		if o.Progress != nil {
			o.Progress(fmt.Sprintf("check: PGD-%d", steps), 0, len(idx))
		}
		step := 2.5 * o.Eps / float32(steps)
		left := attack(Iterative{Eps: o.Eps, Steps: steps, Step: step, RandomStart: true, Loss: CE}, idx, 1<<20)
		dg.StepsSweep = append(dg.StepsSweep, SweepPoint{Eps: asWritten(o.Eps), Steps: steps, Accuracy: frac(len(left)),
			Attack: fmt.Sprintf("PGD-CE, step 2.5ε/%d, 1 restart", steps)})
	}
	// Independent runs with 1 and more restarts: each count draws its own
	// random starts (tag 1<<21 | count index<<16 | restart), restarting only
	// on the examples its own earlier restarts left correct.
	for ri, restarts := range o.Checks.Restarts {
		if restarts < 1 {
			continue
		}
		if o.Progress != nil {
			o.Progress(fmt.Sprintf("check: APGD-CE × %d restarts", restarts), 0, len(idx))
		}
		left := idx
		for r := 0; r < restarts && len(left) > 0; r++ {
			left = attack(Iterative{Eps: o.Eps, Steps: o.Checks.SweepSteps, RandomStart: true, Loss: CE}, left, 1<<21|uint64(ri)<<16|uint64(r&0xffff))
		}
		dg.RestartsSweep = append(dg.RestartsSweep, SweepPoint{Eps: asWritten(o.Eps), Steps: o.Checks.SweepSteps, Restarts: restarts, Accuracy: frac(len(left)),
			Attack: fmt.Sprintf("APGD-CE, %d iterations × %d restarts, random starts independent of the other counts'", o.Checks.SweepSteps, restarts)})
	}
	dg.Convergence = s.curves
	s.slices(dg, idx)
	return dg
}

// slices evaluates the cross-entropy along sign(∇) and a random ±1
// direction at the first SliceExamples clean-correct examples.
func (s *suite) slices(dg *Diagnostics, idx []int) {
	o := s.o
	idx = idx[:min(len(idx), o.Checks.SliceExamples)]
	dg.SliceExamples = len(idx)
	if len(idx) == 0 {
		return
	}
	pts := o.Checks.SlicePoints
	alpha := make([]float64, pts)
	for p := range alpha {
		alpha[p] = float64(o.Eps) * (2*float64(p)/float64(pts-1) - 1)
	}
	gs := Slice{Direction: "sign(grad CE)", Alpha: alpha, Loss: make([]float64, pts)}
	rs := Slice{Direction: "random ±1", Alpha: alpha, Loss: make([]float64, pts)}
	rng := rand.New(rand.NewPCG(uint64(o.Seed)+11, 0))
	increased := 0
	d := s.d
	for lo := 0; lo < len(idx); lo += o.Batch {
		chunk := idx[lo:min(lo+o.Batch, len(idx))]
		x0, labels, _ := s.gather(chunk, Stage{})
		b := len(chunk)
		_, g := s.ev.grad(x0, b, func(i int, z, dz []float32) { CE.eval(z, int(labels[i]), 0, dz) })
		dirG := make([]float32, b*d)
		dirR := make([]float32, b*d)
		for j := range dirG {
			dirG[j] = sign(g[j])
			dirR[j] = 1
			if rng.IntN(2) == 0 {
				dirR[j] = -1
			}
		}
		at0 := make([]float64, b)
		atEps := make([]float64, b)
		x := make([]float32, b*d)
		for _, sl := range []struct {
			dir []float32
			out *Slice
		}{{dirG, &gs}, {dirR, &rs}} {
			for p, a := range alpha {
				for j := range x {
					x[j] = clamp(x0[j]+float32(a)*sl.dir[j], 0, 1)
				}
				z := s.ev.logits(x, b)
				for i := 0; i < b; i++ {
					l := CE.eval(z[i*s.k:(i+1)*s.k], int(labels[i]), 0, nil)
					sl.out.Loss[p] += l
					if sl.out == &gs && p == pts/2 {
						at0[i] = l
					}
					if sl.out == &gs && p == pts-1 {
						atEps[i] = l
					}
				}
			}
		}
		for i := range at0 {
			if atEps[i] > at0[i] {
				increased++
			}
		}
	}
	for p := range alpha {
		gs.Loss[p] /= float64(len(idx))
		rs.Loss[p] /= float64(len(idx))
	}
	dg.Slices = []Slice{gs, rs}
	dg.SliceIncrease = float64(increased) / float64(len(idx))
}

// checks turns a report's diagnostics into pass/warn verdicts.
func checks(rep *Report) []Check {
	dg := rep.Diagnostics
	var out []Check
	add := func(name string, ok bool, criterion, format string, a ...any) {
		st := Pass
		if !ok {
			st = Warn
		}
		out = append(out, Check{Name: name, Status: st, Criterion: criterion, Evidence: fmt.Sprintf(format, a...)})
	}
	skip := func(name, criterion, why string) {
		out = append(out, Check{Name: name, Status: Skip, Criterion: criterion, Evidence: why})
	}
	noise := Slack + 1/float64(max(dg.Examples, 1))

	// 1. Accuracy must fall to ~0 at large ε, and never rise with ε.
	crit := fmt.Sprintf("accuracy at the largest swept ε (≥ 0.5) ≤ %.0f%%", 100*LargeEpsMaxAccuracy)
	if n := len(dg.EpsSweep); n == 0 || dg.EpsSweep[n-1].Eps < 0.5 {
		skip("large-eps", crit, "no ε ≥ 0.5 in the sweep")
	} else {
		last := dg.EpsSweep[n-1]
		add("large-eps", last.Accuracy <= LargeEpsMaxAccuracy, crit, "accuracy %.2f%% at ε = %.3g (%s)", 100*last.Accuracy, last.Eps, last.Attack)
	}
	if len(dg.EpsSweep) > 1 {
		ok, ev := monotone(dg.EpsSweep, noise, func(p SweepPoint) string { return fmt.Sprintf("ε=%.3g", p.Eps) })
		add("eps-monotone", ok, fmt.Sprintf("accuracy never rises with ε by more than %.1f%% + one example", 100*Slack), "%s", ev)
	}
	// 2. More steps, more restarts never help the model.
	if len(dg.StepsSweep) > 1 {
		ok, ev := monotone(dg.StepsSweep, noise, func(p SweepPoint) string { return fmt.Sprintf("PGD-%d", p.Steps) })
		add("steps-monotone", ok, fmt.Sprintf("PGD-CE accuracy never rises with the number of steps by more than %.1f%% + one example", 100*Slack), "%s", ev)
	}
	// The cascade's accuracy after each restart cannot rise (a restart only
	// runs on what earlier runs left correct), so "more restarts never raise
	// accuracy" is judged on independent runs with their own random starts.
	if len(dg.RestartsSweep) > 1 {
		ok, ev := monotone(dg.RestartsSweep, noise, func(p SweepPoint) string { return fmt.Sprintf("%d restarts", p.Restarts) })
		add("restarts-monotone", ok, fmt.Sprintf("APGD-CE accuracy never rises with the number of restarts by more than %.1f%% + one example (each count an independent run on the same examples)", 100*Slack), "%s", ev)
	}
	for _, st := range rep.Stages {
		if st.Kind != StageAPGD || len(st.AccuracyAfterRestart) < 2 || st.Loss != CE {
			continue
		}
		first, last := st.AccuracyAfterRestart[0], st.AccuracyAfterRestart[len(st.AccuracyAfterRestart)-1]
		add("restarts", first-last <= RestartGainMax,
			fmt.Sprintf("the cascade's %d restarts take off at most %.0f%% more than its first run", len(st.AccuracyAfterRestart), 100*RestartGainMax),
			"%s: %.2f%% after 1 run, %.2f%% after %d", st.Name, 100*first, 100*last, len(st.AccuracyAfterRestart))
		break
	}
	// 3. Black box must not beat white box.
	for _, st := range rep.Stages {
		if st.WhiteBox {
			continue
		}
		crit := fmt.Sprintf("breaks at most %.0f%% of the examples the white-box stages left correct", 100*BlackBoxMaxBroken)
		ok := float64(st.Broken) <= BlackBoxMaxBroken*float64(st.Attacked)
		ev := fmt.Sprintf("%s broke %d of %d", st.Name, st.Broken, st.Attacked)
		if st.Standalone != nil && rep.WhiteboxAccuracy != nil {
			crit += fmt.Sprintf("; stand-alone accuracy ≥ white-box accuracy − %.0f%%", 100*Slack)
			ok = ok && *st.Standalone >= *rep.WhiteboxAccuracy-Slack
			ev += fmt.Sprintf("; stand-alone %.2f%% vs white box %.2f%%", 100**st.Standalone, 100**rep.WhiteboxAccuracy)
		}
		if st.Attacked == 0 && st.Standalone == nil {
			skip("black-box:"+st.Name, crit, "no example left to attack")
			continue
		}
		add("black-box:"+st.Name, ok, crit, "%s", ev)
	}
	// 4. The attack loss rises over the iterations.
	for _, c := range dg.Convergence {
		crit := fmt.Sprintf("mean loss at the last iterate > at the (random) start, and the loss rises above its start for ≥ %.0f%% of the examples", 100*ConvergenceMinRose)
		if c.Examples == 0 {
			skip("convergence:"+c.Stage, crit, "no example attacked")
			continue
		}
		first, last := c.Mean[0], c.Mean[len(c.Mean)-1]
		best := first
		for _, v := range c.Mean {
			best = math.Max(best, v)
		}
		add("convergence:"+c.Stage, last > first && c.RoseShare >= ConvergenceMinRose, crit,
			"%s loss %.4g → %.4g (max %.4g) over %d iterations; rose for %.1f%% of %d examples", c.Loss, first, last, best, len(c.Mean)-1, 100*c.RoseShare, c.Examples)
	}
	// 5. Loss-surface slices.
	crit = fmt.Sprintf("CE rises from α = 0 to α = ε along sign(∇) for ≥ %.0f%% of the examples, and ends above the random direction", 100*SliceMinIncrease)
	if len(dg.Slices) != 2 {
		skip("loss-surface", crit, "no clean-correct example")
	} else {
		g, r := dg.Slices[0].Loss, dg.Slices[1].Loss
		p := len(g)
		add("loss-surface", dg.SliceIncrease >= SliceMinIncrease && g[p-1] > r[p-1], crit,
			"rises for %.0f%% of %d examples; mean CE at α=0 %.4g, at α=ε %.4g along sign(∇), %.4g along a random direction",
			100*dg.SliceIncrease, dg.SliceExamples, g[p/2], g[p-1], r[p-1])
	}
	// 6. Zero gradients and saturated softmax at the clean points.
	add("zero-gradient", dg.ZeroGradientShare <= ZeroGradMaxShare,
		fmt.Sprintf("≤ %.0f%% of the examples have an input gradient of CE with max |∂L/∂x| ≤ %.0e", 100*ZeroGradMaxShare, ZeroGradient),
		"%.2f%% of %d", 100*dg.ZeroGradientShare, rep.Examples)
	add("saturated-softmax", dg.SaturatedShare <= SaturatedMaxShare,
		fmt.Sprintf("≤ %.0f%% of the examples have max softmax > 1 − %.0e", 100*SaturatedMaxShare, SaturatedProb),
		"%.2f%% of %d", 100*dg.SaturatedShare, rep.Examples)
	return out
}

// monotone checks that accuracy never rises along the sweep by more than
// noise, and lists it.
func monotone(p []SweepPoint, noise float64, label func(SweepPoint) string) (bool, string) {
	ok := true
	var parts []string
	for i, q := range p {
		parts = append(parts, fmt.Sprintf("%s %.2f%%", label(q), 100*q.Accuracy))
		if i > 0 && q.Accuracy > p[i-1].Accuracy+noise {
			ok = false
		}
	}
	return ok, strings.Join(parts, ", ")
}
