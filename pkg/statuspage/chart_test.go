package statuspage

import (
	"math"
	"strings"
	"testing"
)

func TestNiceTicks(t *testing.T) {
	for _, c := range []struct {
		x, want float64
	}{{0.7, 1}, {1, 1}, {1.3, 2}, {2.2, 2.5}, {3, 5}, {7, 10}, {0.031, 0.05}, {120, 200}, {0, 1}, {math.NaN(), 1}} {
		if got := niceNum(c.x); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("niceNum(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	ticks, step := niceTicks(0.13, 2.31, 5)
	if step != 1 || len(ticks) != 4 || ticks[0] != 0 || ticks[3] != 3 {
		t.Errorf("niceTicks(0.13, 2.31) = %v step %v", ticks, step)
	}
	for _, c := range []struct {
		v, step float64
		want    string
	}{{0.75, 0.25, "0.75"}, {2, 0.5, "2.0"}, {300, 100, "300"}, {1e-17, 0.1, "0.0"}, {0.05, 0.05, "0.05"}} {
		if got := formatTick(c.v, c.step); got != c.want {
			t.Errorf("formatTick(%v, %v) = %q, want %q", c.v, c.step, got, c.want)
		}
	}
}

func TestBuildChartGapsAndBounds(t *testing.T) {
	nan := math.NaN()
	var pts []Point
	for s := range int64(7) {
		v := float64(s)
		tm := Terms{Loss: v, CleanCE: v, AdvCE: v, Pair: nan, CleanAcc: 0.5, AdvAcc: nan}
		if s == 3 {
			tm.AdvCE = nan // a gap: two segments
		}
		if s == 5 {
			tm.AdvAcc = 0.25 // an isolated value: a dot
		}
		pts = append(pts, Point{Step: s, Terms: tm})
	}
	c := buildChart("x", "x", pts, lossSeries, nil)
	byName := map[string]series{}
	for _, s := range c.Series {
		byName[s.Name] = s
	}
	if p := byName["total loss"].Path; strings.Count(p, "M") != 1 || strings.Count(p, "L") != 6 || !strings.HasPrefix(p, "M60 ") {
		t.Errorf("total loss path %q", p)
	}
	if p := byName["adversarial CE"].Path; strings.Count(p, "M") != 2 || byName["adversarial CE"].Vertices != 6 {
		t.Errorf("adversarial CE path %q, want two segments", p)
	}
	if s := byName["pairing term"]; s.Path != "" || s.Last != "–" {
		t.Errorf("pairing term (all NaN): %+v", s)
	}
	if c.YTicks[0].Label != "0" || c.YTicks[len(c.YTicks)-1].Pos != plotTop {
		t.Errorf("y ticks %+v", c.YTicks)
	}
	acc := buildChart("a", "a", pts, accSeries, &[2]float64{0, 100})
	if s := acc.Series[1]; len(s.Dots) != 1 || s.Dots[0].Y != round1(plotBottom-0.25*(plotBottom-plotTop)) || s.Last != "25.00%" {
		t.Errorf("adversarial accuracy (one value): %+v", s)
	}
	// Long histories are averaged down to maxPlotted vertices.
	long := make([]Point, 5000)
	for i := range long {
		long[i] = Point{Step: int64(i), Terms: uniform(float64(i % 2))}
	}
	c = buildChart("l", "l", long, lossSeries, nil)
	if v := c.Series[0].Vertices; v != maxPlotted {
		t.Errorf("%d vertices for 5000 points, want %d", v, maxPlotted)
	}
	if c.FirstStep != 11 || c.LastStep != 4999 {
		t.Errorf("x range %d..%d", c.FirstStep, c.LastStep)
	}
	// One point: a dot, and a range around it.
	c = buildChart("o", "o", long[:1], lossSeries, nil)
	if len(c.Series[0].Dots) != 1 || c.Empty {
		t.Errorf("one point: %+v", c.Series[0])
	}
	if c = buildChart("e", "e", nil, lossSeries, nil); !c.Empty {
		t.Error("no points: not empty")
	}
}
