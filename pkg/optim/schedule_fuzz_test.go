package optim

import (
	"fmt"
	"math"
	"reflect"
	"testing"
)

// FuzzParseSchedule parses an --lr-schedule spec. ParseSchedule must fail,
// or return a schedule that prints back as a spec parsing to the same
// schedule (as documented) and gives a rate ≥ 0, never NaN, at every step.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"constant", "step:2400:0.94", "exp:1000:0.96", "cosine:10000", "cosine:10000:0.1",
		"warmup:500,cosine:10000", "warmup:1,warmup:2,constant", " step : 5 : 2 ", "cosine:0", "step:1:-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		const base = 0.1
		s, err := ParseSchedule(spec, base)
		if err != nil {
			return
		}
		printed := fmt.Sprint(s)
		again, err := ParseSchedule(printed, base)
		if err != nil {
			t.Fatalf("%q prints as %q, which does not parse: %v", spec, printed, err)
		}
		if !reflect.DeepEqual(again, s) {
			t.Fatalf("%q prints as %q, which parses to %#v, not %#v", spec, printed, again, s)
		}
		for _, step := range []int64{-1, 0, 1, 7, 499, 500, 10000, 1 << 20, math.MaxInt64} {
			if lr := s.LR(step); !(lr >= 0) {
				t.Fatalf("%q: rate %v at step %d", spec, lr, step)
			}
		}
	})
}
