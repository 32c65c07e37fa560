package statuspage

import (
	"math"
	"strconv"
	"strings"
)

// Chart geometry, in SVG user units (the SVG scales to the page's width).
const (
	chartWidth  = 640
	chartHeight = 256
	plotLeft    = 60.0
	plotRight   = chartWidth - 12.0
	plotTop     = 12.0
	plotBottom  = chartHeight - 44.0 // below: the x ticks, then the x-axis title
	// maxPlotted bounds the vertices of one series: longer histories are
	// averaged over consecutive buckets of points.
	maxPlotted = 400
)

// seriesSpec names one curve of a chart and picks its value from a point.
// percent: the value is an accuracy in percent (the legend prints it with
// two decimals and a %, as text does everywhere).
type seriesSpec struct {
	name    string
	class   string // CSS class (the curve's colour)
	value   func(Terms) float64
	percent bool
}

var (
	lossSeries = []seriesSpec{
		{"total loss", "s-loss", func(t Terms) float64 { return t.Loss }, false},
		{"clean CE", "s-clean", func(t Terms) float64 { return t.CleanCE }, false},
		{"adversarial CE", "s-adv", func(t Terms) float64 { return t.AdvCE }, false},
		{"pairing term", "s-pair", func(t Terms) float64 { return t.Pair }, false},
	}
	accSeries = []seriesSpec{
		{"clean accuracy", "s-clean", func(t Terms) float64 { return 100 * t.CleanAcc }, true},
		{"adversarial accuracy", "s-adv", func(t Terms) float64 { return 100 * t.AdvAcc }, true},
	}
)

// chart is a line chart ready for the template.
type chart struct {
	ID, Title             string
	Width, Height         int
	Left, Right, Top, Bot float64
	XTicks, YTicks        []tick
	Series                []series
	// Points is the number of history points behind the chart; Empty
	// when none has a value.
	Points int
	Empty  bool
	// FirstStep and LastStep are the x range's ends.
	FirstStep, LastStep int64
	// CX and CY are the plot area's centre (the "no data" note).
	CX, CY float64
	// XLabel and YLabel title the axes ("step"; the y unit, set by the
	// caller); XLabelY is the x title's baseline, YLabelX the y title's
	// centre line (the y title is rotated).
	XLabel, YLabel   string
	XLabelY, YLabelX float64
}

// tick is an axis label at Pos (x for XTicks, y for YTicks).
type tick struct {
	Pos   float64
	Label string
}

// series is one curve: an SVG path (empty when it has no finite value), a
// dot for each isolated vertex, and its newest value.
type series struct {
	Name, Class string
	Path        string
	Dots        []dot
	Vertices    int
	Last        string
}

// dot is an isolated vertex (a curve with one point has no line to draw).
type dot struct{ X, Y float64 }

// bucket is a run of consecutive points averaged into one vertex.
type bucket struct {
	step   int64
	values []float64
}

// downsample averages points into at most maxPlotted buckets per series,
// each term over its finite values; a bucket's x is its last step.
func downsample(points []Point, specs []seriesSpec) []bucket {
	n := len(points)
	nb := min(n, maxPlotted)
	out := make([]bucket, 0, nb)
	for b := range nb {
		lo, hi := b*n/nb, (b+1)*n/nb
		bk := bucket{step: points[hi-1].Step, values: make([]float64, len(specs))}
		for s, sp := range specs {
			sum, cnt := 0.0, 0
			for _, p := range points[lo:hi] {
				if v := sp.value(p.Terms); isFinite(v) {
					sum += v
					cnt++
				}
			}
			bk.values[s] = math.NaN()
			if cnt > 0 {
				bk.values[s] = sum / float64(cnt)
			}
		}
		out = append(out, bk)
	}
	return out
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// buildChart lays out the curves of specs over points. fixed, when set,
// is the y range (accuracies: [0, 1]); otherwise the range covers every
// finite value.
func buildChart(id, title string, points []Point, specs []seriesSpec, fixed *[2]float64) chart {
	c := chart{ID: id, Title: title, Width: chartWidth, Height: chartHeight, Left: plotLeft, Right: plotRight,
		Top: plotTop, Bot: plotBottom, Points: len(points), CX: (plotLeft + plotRight) / 2, CY: (plotTop + plotBottom) / 2,
		XLabel: "step", XLabelY: chartHeight - 6, YLabelX: 14}
	buckets := downsample(points, specs)
	ylo, yhi := math.Inf(1), math.Inf(-1)
	for _, b := range buckets {
		for _, v := range b.values {
			if isFinite(v) {
				ylo, yhi = min(ylo, v), max(yhi, v)
			}
		}
	}
	if math.IsInf(ylo, 0) {
		c.Empty = true
		for _, sp := range specs {
			c.Series = append(c.Series, series{Name: sp.name, Class: sp.class, Last: "–"})
		}
		return c
	}
	if fixed != nil {
		ylo, yhi = fixed[0], fixed[1]
	}
	if yhi-ylo < 1e-12 {
		pad := max(math.Abs(ylo)*0.1, 0.5)
		ylo, yhi = ylo-pad, yhi+pad
	}
	yt, ystep := niceTicks(ylo, yhi, 5)
	if fixed == nil { // widen to the outer ticks
		ylo, yhi = math.Min(ylo, yt[0]), math.Max(yhi, yt[len(yt)-1])
	}
	x0, x1 := buckets[0].step, buckets[len(buckets)-1].step
	if x0 == x1 {
		x0, x1 = x0-1, x1+1
	}
	c.FirstStep, c.LastStep = buckets[0].step, buckets[len(buckets)-1].step
	xpos := func(s float64) float64 { return plotLeft + (s-float64(x0))/float64(x1-x0)*(plotRight-plotLeft) }
	ypos := func(v float64) float64 { return plotBottom - (v-ylo)/(yhi-ylo)*(plotBottom-plotTop) }
	for _, v := range yt {
		if v >= ylo-1e-9 && v <= yhi+1e-9 {
			c.YTicks = append(c.YTicks, tick{Pos: round1(ypos(v)), Label: formatTick(v, ystep)})
		}
	}
	xt, xstep := niceTicks(float64(x0), float64(x1), 6)
	xstep = max(xstep, 1)
	for _, v := range xt {
		if v >= float64(x0) && v <= float64(x1) && v == math.Round(v) {
			c.XTicks = append(c.XTicks, tick{Pos: round1(xpos(v)), Label: formatTick(v, xstep)})
		}
	}
	for s, sp := range specs {
		se := series{Name: sp.name, Class: sp.class, Last: "–"}
		var b strings.Builder
		run := 0 // vertices in the current segment
		var seg []dot
		flush := func() {
			if run == 1 {
				se.Dots = append(se.Dots, seg[0])
			}
			run, seg = 0, seg[:0]
		}
		for _, bk := range buckets {
			v := bk.values[s]
			if !isFinite(v) {
				flush()
				continue
			}
			x, y := round1(xpos(float64(bk.step))), round1(ypos(v))
			if run == 0 {
				b.WriteString("M")
			} else {
				b.WriteString(" L")
			}
			b.WriteString(strconv.FormatFloat(x, 'f', -1, 64))
			b.WriteByte(' ')
			b.WriteString(strconv.FormatFloat(y, 'f', -1, 64))
			run++
			seg = append(seg, dot{x, y})
			se.Vertices++
		}
		flush()
		se.Path = b.String()
		for i := len(points) - 1; i >= 0; i-- {
			if v := sp.value(points[i].Terms); isFinite(v) {
				se.Last = strconv.FormatFloat(v, 'f', 4, 64)
				if sp.percent {
					se.Last = strconv.FormatFloat(v, 'f', 2, 64) + "%"
				}
				break
			}
		}
		c.Series = append(c.Series, se)
	}
	return c
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// niceTicks returns about n round values spanning [lo, hi] (the first at
// or below lo, the last at or above hi) and their spacing.
func niceTicks(lo, hi float64, n int) ([]float64, float64) {
	step := niceNum((hi - lo) / float64(max(n-1, 1)))
	first := math.Floor(lo/step) * step
	var out []float64
	for i := 0; ; i++ {
		v := first + float64(i)*step
		out = append(out, v)
		if v >= hi-step*1e-9 || i > 4*n {
			break
		}
	}
	return out, step
}

// niceNum rounds x up to 1, 2, 2.5 or 5 times a power of ten.
func niceNum(x float64) float64 {
	if !(x > 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if x <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// formatTick prints v with as many decimals as the spacing needs.
func formatTick(v, step float64) string {
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
		if s := step * math.Pow(10, float64(dec)); math.Abs(s-math.Round(s)) > 1e-6 {
			dec++ // 0.25 needs two
		}
	}
	if math.Abs(v) < step*1e-9 {
		v = 0
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}
