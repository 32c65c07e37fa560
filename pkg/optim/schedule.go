package optim

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Schedule gives the learning rate at a 0-based global step. Steps below 0
// are treated as 0.
type Schedule interface {
	LR(step int64) float64
}

// Constant is the schedule "constant": lr = Base.
type Constant struct{ Base float64 }

// LR returns Base.
func (s Constant) LR(int64) float64 { return s.Base }

func (s Constant) String() string { return "constant" }

// StepDecay is "step:<every>:<factor>", TF's exponential_decay with
// staircase=True:
//
//	lr = Base · Factor^⌊step/Every⌋
//
// The released ALP code multiplies by 0.94 every 2 epochs:
// step:<steps-per-2-epochs>:0.94.
type StepDecay struct {
	Base   float64
	Every  int64
	Factor float64
}

// LR returns Base·Factor^⌊step/Every⌋.
func (s StepDecay) LR(step int64) float64 {
	step = max(step, 0)
	return s.Base * math.Pow(s.Factor, float64(step/s.Every))
}

func (s StepDecay) String() string {
	return fmt.Sprintf("step:%d:%s", s.Every, fmtFloat(s.Factor))
}

// ExpDecay is "exp:<decay-steps>:<rate>", TF's exponential_decay with
// staircase=False:
//
//	lr = Base · Rate^(step/DecaySteps)
type ExpDecay struct {
	Base       float64
	DecaySteps int64
	Rate       float64
}

// LR returns Base·Rate^(step/DecaySteps).
func (s ExpDecay) LR(step int64) float64 {
	step = max(step, 0)
	return s.Base * math.Pow(s.Rate, float64(step)/float64(s.DecaySteps))
}

func (s ExpDecay) String() string {
	return fmt.Sprintf("exp:%d:%s", s.DecaySteps, fmtFloat(s.Rate))
}

// Cosine is "cosine:<total>[:<final-fraction>]", TF's cosine_decay with
// alpha = Final:
//
//	c  = ½·(1 + cos(π·min(step, Total)/Total))
//	lr = Base · (Final + (1 − Final)·c)
//
// It goes from Base at step 0 to Base·Final at step Total and stays there.
type Cosine struct {
	Base  float64
	Total int64
	Final float64
}

// LR returns the cosine-decayed rate.
func (s Cosine) LR(step int64) float64 {
	step = min(max(step, 0), s.Total)
	c := 0.5 * (1 + math.Cos(math.Pi*float64(step)/float64(s.Total)))
	return s.Base * (s.Final + (1-s.Final)*c)
}

func (s Cosine) String() string {
	if s.Final == 0 {
		return fmt.Sprintf("cosine:%d", s.Total)
	}
	return fmt.Sprintf("cosine:%d:%s", s.Total, fmtFloat(s.Final))
}

// Warmup is "warmup:<steps>,<inner>": a linear warm-up to the inner
// schedule's starting rate, after which the inner schedule runs with its
// own step count starting at 0:
//
//	lr = Inner(0)·(step+1)/Steps      for step < Steps   (never 0; reaches Inner(0) at step Steps−1)
//	lr = Inner(step − Steps)          for step ≥ Steps
//
// So "warmup:500,cosine:10000" warms up for steps 0..499 and then decays
// over the 10000 steps 500..10499.
type Warmup struct {
	Steps int64
	Inner Schedule
}

// LR returns the warmed-up rate.
func (s Warmup) LR(step int64) float64 {
	step = max(step, 0)
	if step < s.Steps {
		return s.Inner.LR(0) * float64(step+1) / float64(s.Steps)
	}
	return s.Inner.LR(step - s.Steps)
}

func (s Warmup) String() string { return fmt.Sprintf("warmup:%d,%v", s.Steps, s.Inner) }

func fmtFloat(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// scheduleForms is the grammar, for error messages.
const scheduleForms = "constant, step:<every>:<factor>, exp:<decay-steps>:<rate>, cosine:<total-steps>[:<final-fraction>], warmup:<steps>,<schedule>"

// ParseSchedule parses a schedule spec with base learning rate base:
//
//	constant                          lr = base
//	step:<every>:<factor>             lr = base·factor^⌊s/every⌋          every > 0, factor > 0
//	exp:<decay-steps>:<rate>          lr = base·rate^(s/decay-steps)      decay-steps > 0, rate > 0
//	cosine:<total>[:<final>]          lr = base·(f + (1−f)·½(1+cos(π·min(s,total)/total)))
//	                                  total > 0, final fraction f in [0,1], default 0
//	warmup:<w>,<schedule>             lr = inner(0)·(s+1)/w for s < w, inner(s−w) after; w > 0
//
// Step counts are integers; factors are floats. Spaces around the spec and
// its fields are ignored. The returned schedules print back as their spec
// (fmt.Stringer).
func ParseSchedule(spec string, base float64) (Schedule, error) {
	if math.IsNaN(base) || math.IsInf(base, 0) || base < 0 {
		return nil, fmt.Errorf("schedule %q: base learning rate must be finite and >= 0, got %v", spec, base)
	}
	return parseSchedule(spec, base)
}

func parseSchedule(spec string, base float64) (Schedule, error) {
	s := strings.TrimSpace(spec)
	kind, rest, hasArgs := strings.Cut(s, ":")
	kind = strings.TrimSpace(kind)
	bad := func(format string, a ...any) error {
		return fmt.Errorf("schedule %q: "+format, append([]any{spec}, a...)...)
	}
	if kind == "warmup" {
		if !hasArgs {
			return nil, bad("want warmup:<steps>,<schedule>")
		}
		ws, inner, ok := strings.Cut(rest, ",")
		if !ok {
			return nil, bad("want warmup:<steps>,<schedule>, found no comma")
		}
		w, err := parseSteps(ws)
		if err != nil {
			return nil, bad("warm-up steps: %v", err)
		}
		in, err := parseSchedule(inner, base)
		if err != nil {
			return nil, bad("inner schedule: %v", err)
		}
		return Warmup{Steps: w, Inner: in}, nil
	}
	var args []string
	if hasArgs {
		args = strings.Split(rest, ":")
	}
	nargs := func(lo, hi int) error {
		if len(args) < lo || len(args) > hi {
			if lo == hi {
				return bad("%s takes %d fields after the name, got %d", kind, lo, len(args))
			}
			return bad("%s takes %d to %d fields after the name, got %d", kind, lo, hi, len(args))
		}
		return nil
	}
	switch kind {
	case "constant":
		if err := nargs(0, 0); err != nil {
			return nil, err
		}
		return Constant{Base: base}, nil
	case "step", "exp":
		if err := nargs(2, 2); err != nil {
			return nil, err
		}
		n, err := parseSteps(args[0])
		if err != nil {
			return nil, bad("steps: %v", err)
		}
		f, err := parseFloat(args[1])
		if err != nil {
			return nil, bad("factor: %v", err)
		}
		if !positive(f) {
			return nil, bad("factor must be finite and > 0, got %v", f)
		}
		if kind == "step" {
			return StepDecay{Base: base, Every: n, Factor: f}, nil
		}
		return ExpDecay{Base: base, DecaySteps: n, Rate: f}, nil
	case "cosine":
		if err := nargs(1, 2); err != nil {
			return nil, err
		}
		n, err := parseSteps(args[0])
		if err != nil {
			return nil, bad("total steps: %v", err)
		}
		c := Cosine{Base: base, Total: n}
		if len(args) == 2 {
			f, err := parseFloat(args[1])
			if err != nil {
				return nil, bad("final fraction: %v", err)
			}
			if !(f >= 0 && f <= 1) {
				return nil, bad("final fraction must be in [0,1], got %v", f)
			}
			c.Final = f
		}
		return c, nil
	case "":
		return nil, bad("empty schedule (want one of: %s)", scheduleForms)
	}
	return nil, bad("unknown schedule %q (want one of: %s)", kind, scheduleForms)
}

func parseSteps(s string) (int64, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a positive integer, got %q", s)
	}
	if n <= 0 {
		return 0, fmt.Errorf("want a positive integer, got %d", n)
	}
	return n, nil
}

func parseFloat(s string) (float64, error) {
	s = strings.TrimSpace(s)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("want a number, got %q", s)
	}
	return f, nil
}
