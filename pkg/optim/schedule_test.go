package optim

import (
	"fmt"
	"math"
	"testing"
)

func TestSchedules(t *testing.T) {
	const base = 2.0
	cases := []struct {
		spec string
		at   map[int64]float64
	}{
		{"constant", map[int64]float64{-5: 2, 0: 2, 1: 2, 1 << 40: 2}},
		// lr = 2·½^⌊s/100⌋
		{"step:100:0.5", map[int64]float64{-1: 2, 0: 2, 99: 2, 100: 1, 199: 1, 200: 0.5, 1000: 2 * math.Pow(0.5, 10)}},
		// the released code: ×0.94 every 2 epochs (here 780 steps)
		{"step:780:0.94", map[int64]float64{779: 2, 780: 2 * 0.94, 1559: 2 * 0.94, 1560: 2 * 0.94 * 0.94}},
		// lr = 2·½^(s/100)
		{"exp:100:0.5", map[int64]float64{0: 2, 50: 2 * math.Sqrt(0.5), 100: 1, 150: 0.5 * math.Sqrt(2), 200: 0.5}},
		// lr = 2·½(1 + cos(π·min(s,100)/100))
		{"cosine:100", map[int64]float64{-3: 2, 0: 2, 25: 1 + math.Sqrt(0.5), 50: 1, 75: 1 - math.Sqrt(0.5), 100: 0, 150: 0}},
		// lr = 2·(0.1 + 0.9·½(1 + cos(π·min(s,100)/100)))
		{"cosine:100:0.1", map[int64]float64{0: 2, 50: 2 * (0.1 + 0.45), 100: 0.2, 1000: 0.2}},
		{"cosine:100:1", map[int64]float64{0: 2, 50: 2, 100: 2}},
		// lr = inner(0)·(s+1)/4 for s < 4, inner(s−4) after
		{"warmup:4,constant", map[int64]float64{-1: 0.5, 0: 0.5, 1: 1, 2: 1.5, 3: 2, 4: 2, 100: 2}},
		{"warmup:500,cosine:10000", map[int64]float64{0: 2.0 / 500, 249: 1, 499: 2, 500: 2, 5500: 1, 10500: 0, 20000: 0}},
		{"warmup:10,step:5:0.5", map[int64]float64{0: 0.2, 9: 2, 10: 2, 14: 2, 15: 1, 20: 0.5}},
		{" warmup: 10 , exp : 10 : 0.5 ", map[int64]float64{4: 1, 10: 2, 20: 1}},
	}
	for _, c := range cases {
		s, err := ParseSchedule(c.spec, base)
		if err != nil {
			t.Errorf("ParseSchedule(%q): %v", c.spec, err)
			continue
		}
		for step, want := range c.at {
			wantClose(t, fmt.Sprintf("%s at step %d", c.spec, step), s.LR(step), want, 1e-14)
		}
		// The schedule prints back as a spec that parses to the same thing.
		str := fmt.Sprint(s)
		s2, err := ParseSchedule(str, base)
		if err != nil || fmt.Sprint(s2) != str {
			t.Errorf("%q prints as %q, which parses to %v, %v", c.spec, str, s2, err)
		}
	}
}

func TestParseScheduleErrors(t *testing.T) {
	cases := []struct{ spec, frag string }{
		{"", "empty schedule"},
		{"linear:100", `unknown schedule "linear" (want one of: constant, step:<every>:<factor>`},
		{"constant:1", "constant takes 0 fields after the name, got 1"},
		{"step", "step takes 2 fields after the name, got 0"},
		{"step:100", "step takes 2 fields after the name, got 1"},
		{"step:100:0.5:3", "step takes 2 fields after the name, got 3"},
		{"step:0:0.5", "want a positive integer, got 0"},
		{"step:-100:0.5", "want a positive integer, got -100"},
		{"step:1.5:0.5", `want a positive integer, got "1.5"`},
		{"step:x:0.5", `want a positive integer, got "x"`},
		{"step:100:abc", `factor: want a number, got "abc"`},
		{"step:100:", `factor: want a number, got ""`},
		{"step:100:0", "factor must be finite and > 0, got 0"},
		{"step:100:-0.94", "factor must be finite and > 0, got -0.94"},
		{"step:100:NaN", "factor must be finite and > 0, got NaN"},
		{"exp:100:Inf", "factor must be finite and > 0, got +Inf"},
		{"exp:100", "exp takes 2 fields after the name, got 1"},
		{"cosine", "cosine takes 1 to 2 fields after the name, got 0"},
		{"cosine:0", "total steps: want a positive integer, got 0"},
		{"cosine:100:1.5", "final fraction must be in [0,1], got 1.5"},
		{"cosine:100:-0.1", "final fraction must be in [0,1], got -0.1"},
		{"cosine:100:x", `final fraction: want a number, got "x"`},
		{"cosine:1:0.5:3", "cosine takes 1 to 2 fields after the name, got 3"},
		{"warmup", "want warmup:<steps>,<schedule>"},
		{"warmup:10", "found no comma"},
		{"warmup:10,", "inner schedule"},
		{"warmup:0,constant", "warm-up steps: want a positive integer, got 0"},
		{"warmup:x,constant", `warm-up steps: want a positive integer, got "x"`},
		{"warmup:10,bogus", `inner schedule: schedule "bogus": unknown schedule "bogus"`},
	}
	for _, c := range cases {
		s, err := ParseSchedule(c.spec, 0.1)
		wantErr(t, fmt.Sprintf("ParseSchedule(%q)", c.spec), err, fmt.Sprintf("schedule %q", c.spec), c.frag)
		if s != nil {
			t.Errorf("ParseSchedule(%q) returned a schedule with its error", c.spec)
		}
	}
	for _, b := range []float64{-0.1, math.NaN(), math.Inf(1)} {
		_, err := ParseSchedule("constant", b)
		wantErr(t, fmt.Sprintf("base %v", b), err, "base learning rate must be finite and >= 0")
	}
}
