package strong

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/logitpair/logitpair/pkg/progress"
)

// Summary writes a plain-text summary: accuracies per stage and the checks.
func Summary(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "%s on %s, %d examples, ε = %.4g: clean %.2f%% (top-5 %.2f%%)\n", rep.Model, rep.Dataset, rep.Examples, rep.Eps, 100*rep.CleanAccuracy, 100*rep.CleanTop5)
	for _, st := range rep.Stages {
		fmt.Fprintf(w, "  %-24s attacked %5d  broke %5d  → accuracy %6.2f%% (top-5 %6.2f%%)  [%d gradient passes, %d forwards]\n",
			st.Name, st.Attacked, st.Broken, 100*st.Accuracy, 100*st.Top5, st.GradientPasses, st.Forwards)
	}
	if rep.WhiteboxAccuracy != nil {
		fmt.Fprintf(w, "  white box: %.2f%%", 100**rep.WhiteboxAccuracy)
	}
	if rep.TransferAccuracy != nil {
		fmt.Fprintf(w, "  transfer (stand-alone): %.2f%%", 100**rep.TransferAccuracy)
	}
	fmt.Fprintf(w, "  robust accuracy (all stages): %.2f%%\n", 100*rep.RobustAccuracy)
	for _, c := range rep.Checks {
		fmt.Fprintf(w, "  [%s] %s: %s\n", c.Status, c.Name, c.Evidence)
	}
	if len(rep.Checks) > 0 {
		fmt.Fprintf(w, "  %d masking warning(s)\n", rep.Warnings)
	}
	if line := TimeLine(rep); line != "" {
		fmt.Fprintln(w, "  "+line)
	}
	fmt.Fprintln(w, Headline(rep))
}

// TimeLine is the line of the suite's wall times: each stage's, the
// checks', the whole run's ("" for a report without them, e.g. one
// written before they were recorded).
func TimeLine(rep *Report) string {
	if rep.Seconds <= 0 {
		return ""
	}
	var parts []string
	for _, st := range rep.Stages {
		parts = append(parts, st.Name+" "+seconds(st.Seconds))
	}
	if rep.ChecksSeconds > 0 {
		parts = append(parts, "checks "+seconds(rep.ChecksSeconds))
	}
	return fmt.Sprintf("time: %s; total %s", strings.Join(parts, ", "), seconds(rep.Seconds))
}

// seconds writes a duration in seconds: tenths below 10 s, else as
// progress.FormatDuration ("3m07s").
func seconds(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1fs", v)
	}
	return progress.FormatDuration(time.Duration(v * float64(time.Second)))
}

// Headline is the one sentence a result should be quoted by: the robust
// accuracy, the clean accuracy, the examples and ε, every attack it is the
// worst case over with its budget, and whether that budget is the suite's
// full one (DefaultSteps, DefaultRestarts, DefaultSquareQueries) or a
// reduced one, e.g.
//
//	robust accuracy 88.40% (clean 98.80%) on 500 examples at ε = 0.3, the per-example worst case over
//	APGD-CE and APGD-DLR (50 steps × 2 restarts), targeted APGD (least-likely, random; 50 steps),
//	Square (300 queries, 200 examples): the strong suite at a reduced budget.
func Headline(rep *Report) string {
	var attacks, targets []string
	reduced := false
	var apgd []string
	apgdSteps, apgdRestarts, tSteps := 0, 0, 0
	for _, st := range rep.Stages {
		switch {
		case st.Kind == StageAPGD && st.Target == "":
			apgd = append(apgd, strings.ToUpper(st.Name))
			apgdSteps, apgdRestarts = st.Steps, st.Restarts
			reduced = reduced || st.Steps < DefaultSteps || st.Restarts < DefaultRestarts
		case st.Kind == StageAPGD:
			targets = append(targets, st.Target)
			tSteps = st.Steps
			reduced = reduced || st.Steps < DefaultSteps
		case st.Kind == StageSquare:
			n := fmt.Sprintf("%d examples", st.Examples)
			if st.Examples <= 0 || st.Examples >= rep.Examples {
				n = "all examples"
			}
			attacks = append(attacks, fmt.Sprintf("Square (%d queries, %s)", st.Queries, n))
			reduced = reduced || st.Queries < DefaultSquareQueries
		case st.Kind == StageTransfer:
			attacks = append(attacks, "transfer ("+strings.TrimPrefix(st.Name, "transfer:")+")")
		default:
			attacks = append(attacks, st.Name)
		}
	}
	var parts []string
	if len(apgd) > 0 {
		parts = append(parts, fmt.Sprintf("%s (%d steps × %d restarts)", strings.Join(apgd, " and "), apgdSteps, apgdRestarts))
	}
	if len(targets) > 0 {
		parts = append(parts, fmt.Sprintf("targeted APGD (%s; %d steps)", strings.Join(targets, ", "), tSteps))
	}
	parts = append(parts, attacks...)
	budget := "the strong suite at its full budget"
	if reduced {
		budget = "the strong suite at a reduced budget"
	}
	if len(parts) == 0 {
		return fmt.Sprintf("clean accuracy %.2f%% on %d examples (no attack ran)", 100*rep.CleanAccuracy, rep.Examples)
	}
	return fmt.Sprintf("robust accuracy %.2f%% (clean %.2f%%) on %d examples at ε = %.4g, the per-example worst case over %s: %s.",
		100*rep.RobustAccuracy, 100*rep.CleanAccuracy, rep.Examples, rep.Eps, strings.Join(parts, ", "), budget)
}

// WriteReport writes rep to dir as eval.json, report.md and the PNG plots
// report.md shows (accuracy vs ε, accuracy vs PGD steps, attack-loss
// convergence, loss-surface slices).
func WriteReport(dir string, rep *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "eval.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	images, err := plots(dir, rep)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(Markdown(rep, images)), 0o644)
}

// Markdown renders the report; images maps a plot's key (eps, steps,
// convergence, slices) to its file name, relative to the report.
func Markdown(rep *Report, images map[string]string) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	pct := func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }
	opt := func(v *float64) string {
		if v == nil {
			return "—"
		}
		return pct(*v)
	}
	p("# Strong evaluation: %s on %s\n\n", rep.Model, rep.Dataset)
	p("L∞ ε = %.4g, %d examples, seed %d, APGD %d iterations × %d restarts, batch %d.\n\n", rep.Eps, rep.Examples, rep.Settings.Seed, rep.Settings.Steps, rep.Settings.Restarts, rep.Settings.Batch)
	p("| Clean | White box | Black box (transfer, stand-alone) | Robust (all attacks) |\n|---|---|---|---|\n")
	p("| %s | %s | %s | %s |\n\n", pct(rep.CleanAccuracy), opt(rep.WhiteboxAccuracy), opt(rep.TransferAccuracy), pct(rep.RobustAccuracy))
	if len(rep.Checks) > 0 {
		if rep.Warnings == 0 {
			p("**Masking checks: all passed.**\n\n")
		} else {
			p("**Masking checks: %d warning(s)** — the robust accuracy above may be an overestimate.\n\n", rep.Warnings)
		}
	}
	p("## Attack cascade\n\nEach stage attacks only the examples every earlier stage left correct; an example counts as robust only if no stage broke it.\n\n")
	p("| Stage | Kind | Loss | Target | Steps × restarts / queries | Attacked | Broken | Accuracy after | Top-5 after | Gradient passes | Forwards |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, st := range rep.Stages {
		budget := fmt.Sprintf("%d × %d", st.Steps, max(st.Restarts, 1))
		if st.Kind == StageSquare {
			budget = fmt.Sprintf("%d queries (first %d examples)", st.Queries, st.Examples)
		}
		extra := ""
		if st.TargetHit != nil {
			extra = fmt.Sprintf(" (target hit %.1f%%)", 100**st.TargetHit)
		}
		if st.Standalone != nil {
			extra = fmt.Sprintf(" (stand-alone %s)", pct(*st.Standalone))
		}
		p("| %s | %s | %s | %s | %s | %d | %d | %s%s | %s | %d | %d |\n", st.Name, st.Kind, st.LossName, st.Target, budget, st.Attacked, st.Broken, pct(st.Accuracy), extra, pct(st.Top5), st.GradientPasses, st.Forwards)
	}
	p("\nTop-5 accuracy is an upper bound: an example no longer top-1 correct is not attacked further.\n")
	if len(rep.Checks) > 0 {
		p("\n## Gradient-masking checks\n\n| Check | Verdict | Criterion | Evidence |\n|---|---|---|---|\n")
		for _, c := range rep.Checks {
			v := string(c.Status)
			if c.Status == Warn {
				v = "**WARN**"
			}
			p("| %s | %s | %s | %s |\n", c.Name, v, c.Criterion, c.Evidence)
		}
	}
	if dg := rep.Diagnostics; dg != nil {
		p("\n## Diagnostics (first %d examples)\n\n", dg.Examples)
		if len(dg.EpsSweep) > 0 {
			p("### Accuracy vs ε\n\n| ε | Accuracy | Attack |\n|---|---|---|\n")
			for _, q := range dg.EpsSweep {
				p("| %.4g | %s | %s |\n", q.Eps, pct(q.Accuracy), q.Attack)
			}
			img(&b, images, "eps", "accuracy vs ε")
		}
		if len(dg.StepsSweep) > 0 {
			p("\n### Accuracy vs PGD steps\n\n| Steps | Accuracy | Attack |\n|---|---|---|\n")
			for _, q := range dg.StepsSweep {
				p("| %d | %s | %s |\n", q.Steps, pct(q.Accuracy), q.Attack)
			}
			img(&b, images, "steps", "accuracy vs PGD steps")
		}
		if len(dg.RestartsSweep) > 0 {
			p("\n### Accuracy vs restarts (independent runs)\n\n| Restarts | Accuracy | Attack |\n|---|---|---|\n")
			for _, q := range dg.RestartsSweep {
				p("| %d | %s | %s |\n", q.Restarts, pct(q.Accuracy), q.Attack)
			}
		}
		if len(dg.Convergence) > 0 {
			p("\n### Attack-loss convergence (first run of each APGD stage, mean over attacked examples)\n\n| Stage | Loss | Examples | Start | Middle | End |\n|---|---|---|---|---|---|\n")
			for _, c := range dg.Convergence {
				if len(c.Mean) == 0 {
					p("| %s | %s | 0 | — | — | — |\n", c.Stage, c.Loss)
					continue
				}
				p("| %s | %s | %d | %.4g | %.4g | %.4g |\n", c.Stage, c.Loss, c.Examples, c.Mean[0], c.Mean[len(c.Mean)/2], c.Mean[len(c.Mean)-1])
			}
			img(&b, images, "convergence", "attack-loss convergence")
		}
		if len(dg.Slices) > 0 {
			p("\n### Loss-surface slices (mean CE at x + α·d over %d examples)\n\n| α |", dg.SliceExamples)
			for _, sl := range dg.Slices {
				p(" %s |", sl.Direction)
			}
			p("\n|---|---|---|\n")
			for i, a := range dg.Slices[0].Alpha {
				p("| %.4g |", a)
				for _, sl := range dg.Slices {
					p(" %.4g |", sl.Loss[i])
				}
				p("\n")
			}
			img(&b, images, "slices", "loss-surface slices")
		}
		p("\nClean inputs: %.2f%% with a zero input gradient, %.2f%% with a saturated softmax.\n", 100*dg.ZeroGradientShare, 100*dg.SaturatedShare)
	}
	p("\n## Reference numbers\n\nMNIST, ε = 0.3: Madry et al.'s challenge model 89.62%% (PGD-100 × 50 restarts), 88.43%% (AutoAttack). Under stronger attacks, MNIST CLP fell from 62.4%% to 4.1%% and logit squeezing from 70.6%% to 5.0%% (Mosbach et al. 2018); ImageNet ALP from 27.8%% to 0.1%% (Engstrom, Ilyas, Athalye 2018). See docs/EVALUATION.md.\n")
	return b.String()
}

func img(b *strings.Builder, images map[string]string, key, alt string) {
	if f, ok := images[key]; ok {
		fmt.Fprintf(b, "\n![%s](%s)\n", alt, f)
	}
}

// plots draws the report's PNGs into dir and returns their names by key.
func plots(dir string, rep *Report) (map[string]string, error) {
	out := map[string]string{}
	dg := rep.Diagnostics
	if dg == nil {
		return out, nil
	}
	save := func(key string, p *plot.Plot) error {
		name := key + ".png"
		if err := p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("strong: plot %s: %w", name, err)
		}
		out[key] = name
		return nil
	}
	xy := func(pts []SweepPoint, x func(SweepPoint) float64) plotter.XYs {
		v := make(plotter.XYs, len(pts))
		for i, q := range pts {
			v[i].X, v[i].Y = x(q), 100*q.Accuracy
		}
		return v
	}
	if len(dg.EpsSweep) > 0 {
		p := plot.New()
		p.Title.Text = "Accuracy vs ε (" + dg.EpsSweep[0].Attack + ")"
		p.X.Label.Text, p.Y.Label.Text = "ε", "accuracy (%)"
		p.Y.Min, p.Y.Max = 0, 100
		if err := plotutil.AddLinePoints(p, xy(dg.EpsSweep, func(q SweepPoint) float64 { return q.Eps })); err != nil {
			return nil, err
		}
		if err := save("eps", p); err != nil {
			return nil, err
		}
	}
	if len(dg.StepsSweep) > 0 {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("Accuracy vs PGD-CE steps (ε = %.3g)", rep.Eps)
		p.X.Label.Text, p.Y.Label.Text = "steps", "accuracy (%)"
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = 0, 100
		if err := plotutil.AddLinePoints(p, xy(dg.StepsSweep, func(q SweepPoint) float64 { return float64(q.Steps) })); err != nil {
			return nil, err
		}
		if err := save("steps", p); err != nil {
			return nil, err
		}
	}
	var lines []any
	for _, c := range dg.Convergence {
		if len(c.Mean) == 0 {
			continue
		}
		v := make(plotter.XYs, len(c.Mean))
		for i, m := range c.Mean {
			v[i].X, v[i].Y = float64(i), m
		}
		lines = append(lines, c.Stage+" ("+c.Loss+")", v)
	}
	if len(lines) > 0 {
		p := plot.New()
		p.Title.Text = "Attack loss over the iterations (first run)"
		p.X.Label.Text, p.Y.Label.Text = "iteration", "mean loss"
		if err := plotutil.AddLines(p, lines...); err != nil {
			return nil, err
		}
		if err := save("convergence", p); err != nil {
			return nil, err
		}
	}
	if len(dg.Slices) > 0 {
		p := plot.New()
		p.Title.Text = "Loss-surface slices: mean CE at x + α·d"
		p.X.Label.Text, p.Y.Label.Text = "α", "mean cross-entropy"
		p.Legend.Top, p.Legend.Left = true, true
		var ls []any
		for _, sl := range dg.Slices {
			v := make(plotter.XYs, len(sl.Alpha))
			for i := range sl.Alpha {
				v[i].X, v[i].Y = sl.Alpha[i], sl.Loss[i]
			}
			ls = append(ls, sl.Direction, v)
		}
		if err := plotutil.AddLinePoints(p, ls...); err != nil {
			return nil, err
		}
		if err := save("slices", p); err != nil {
			return nil, err
		}
	}
	return out, nil
}
