package history

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The PNGs Plot writes.
const (
	LossPNG       = "loss.png"
	AccuracyPNG   = "accuracy.png"
	ValidationPNG = "validation.png"
)

// series is one curve: its legend and a value of a record (NaN: the record
// has none).
type series struct {
	name string
	v    func(Record) float64
}

// Plot draws the surviving path (Surviving) of recs into dir and returns
// the files written: LossPNG (the loss terms of the train records),
// AccuracyPNG (their clean and adversarial batch accuracy) and
// ValidationPNG (robust validation, and the sentinel's clean, single-step
// and multi-step accuracy), each against the step. A plot without a value
// to draw is not written. Every rollback is a dashed vertical line at the
// step the run went back to. title names the run in every title.
func Plot(recs []Record, dir, title string) ([]string, error) {
	recs = Surviving(recs)
	var rollbacks []float64
	for _, r := range recs {
		if r.Kind == KindRollback {
			rollbacks = append(rollbacks, float64(r.Step))
		}
	}
	train := ofKind(recs, KindTrain)
	evals := append(ofKind(recs, KindValidation), ofKind(recs, KindSentinel)...)
	pct := func(p func(Record) *float64) func(Record) float64 {
		return func(r Record) float64 { return 100 * Value(p(r)) }
	}
	var written []string
	for _, c := range []struct {
		file, title, y string
		recs           []Record
		percent        bool
		series         []series
	}{
		{LossPNG, "Training loss (mean over each log interval)", "loss", train, false, []series{
			{"loss", func(r Record) float64 { return Value(r.Loss) }},
			{"clean cross-entropy", func(r Record) float64 { return Value(r.CleanCE) }},
			{"adversarial cross-entropy", func(r Record) float64 { return Value(r.AdvCE) }},
			{"pairing term", func(r Record) float64 { return Value(r.Pair) }},
		}},
		{AccuracyPNG, "Training batch accuracy (mean over each log interval)", "accuracy (%)", train, true, []series{
			{"clean", pct(func(r Record) *float64 { return r.CleanAcc })},
			{"adversarial", pct(func(r Record) *float64 { return r.AdvAcc })},
		}},
		{ValidationPNG, "Validation accuracy (held-out examples)", "accuracy (%)", evals, true, []series{
			{"validation: clean", pct(func(r Record) *float64 { return onlyKind(r, KindValidation, r.Clean) })},
			{"validation: robust", pct(func(r Record) *float64 { return onlyKind(r, KindValidation, r.Robust) })},
			{"sentinel: clean", pct(func(r Record) *float64 { return onlyKind(r, KindSentinel, r.Clean) })},
			{"sentinel: single-step", pct(func(r Record) *float64 { return onlyKind(r, KindSentinel, r.SingleStep) })},
			{"sentinel: multi-step", pct(func(r Record) *float64 { return onlyKind(r, KindSentinel, r.MultiStep) })},
		}},
	} {
		p := plot.New()
		p.Title.Text = c.title
		if title != "" {
			p.Title.Text = title + ": " + c.title
		}
		p.X.Label.Text, p.Y.Label.Text = "step", c.y
		p.Add(plotter.NewGrid())
		var lines []any
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, s := range c.series {
			xy := points(c.recs, s.v)
			if len(xy) == 0 {
				continue
			}
			for _, q := range xy {
				lo, hi = min(lo, q.Y), max(hi, q.Y)
			}
			lines = append(lines, s.name, xy)
		}
		if len(lines) == 0 {
			continue
		}
		if err := plotutil.AddLinePoints(p, lines...); err != nil {
			return written, fmt.Errorf("history: plot %s: %w", c.file, err)
		}
		if c.percent {
			lo, hi = 0, 100
			p.Y.Min, p.Y.Max = 0, 100
		}
		if err := addRollbacks(p, rollbacks, lo, hi); err != nil {
			return written, fmt.Errorf("history: plot %s: %w", c.file, err)
		}
		p.X.Min = min(p.X.Min, 0)
		p.Y.Min = min(p.Y.Min, 0)
		p.X.Tick.Marker, p.Y.Tick.Marker = stepTicks{}, stepTicks{}
		if err := save(p, filepath.Join(dir, c.file)); err != nil {
			return written, fmt.Errorf("history: plot %s: %w", c.file, err)
		}
		written = append(written, c.file)
	}
	return written, nil
}

// save writes p as a PNG with its legend to the right of the plot, where
// it hides no curve.
func save(p *plot.Plot, path string) error {
	const w, h, legendW = 9 * vg.Inch, 4 * vg.Inch, 2.4 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	legend := p.Legend
	p.Legend = plot.NewLegend()
	p.Draw(draw.Crop(dc, 0, -legendW, 0, 0))
	legend.Top, legend.Left = true, true
	legend.Draw(draw.Crop(dc, w-legendW+vg.Points(6), 0, 0, -vg.Points(24)))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// stepTicks marks steps at round numbers (1, 2 or 5 times a power of ten
// apart, about six of them), labelled without exponents.
type stepTicks struct{}

// Ticks implements plot.Ticker.
func (stepTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'f', -1, 64)}}
	}
	raw := (hi - lo) / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []plot.Tick
	for i := math.Ceil(lo / step); i*step <= hi+step*1e-9; i++ {
		v := i * step
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		for k := 1; k < 5; k++ { // minor ticks
			if m := v + float64(k)*step/5; m <= hi {
				ticks = append(ticks, plot.Tick{Value: m})
			}
		}
	}
	return ticks
}

// addRollbacks draws a dashed vertical line from lo to hi at every step of
// at, with one legend entry.
func addRollbacks(p *plot.Plot, at []float64, lo, hi float64) error {
	if lo == hi {
		lo, hi = lo-1, hi+1
	}
	for i, x := range at {
		l, err := plotter.NewLine(plotter.XYs{{X: x, Y: lo}, {X: x, Y: hi}})
		if err != nil {
			return err
		}
		l.Color = color.Gray{Y: 96}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		if i == 0 {
			p.Legend.Add("rollback to this step", l)
		}
	}
	return nil
}

// points is the finite values of v over recs, against their steps.
func points(recs []Record, v func(Record) float64) plotter.XYs {
	var xy plotter.XYs
	for _, r := range recs {
		y := v(r)
		if math.IsNaN(y) || math.IsInf(y, 0) {
			continue
		}
		xy = append(xy, plotter.XY{X: float64(r.Step), Y: y})
	}
	return xy
}

func ofKind(recs []Record, kind string) []Record {
	var out []Record
	for _, r := range recs {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

func onlyKind(r Record, kind string, p *float64) *float64 {
	if r.Kind != kind {
		return nil
	}
	return p
}
