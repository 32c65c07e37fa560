package objective

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn/nntest"
)

// TestSingleStepObjectivesAreMPGD: single-step and ensemble-adv weigh the
// mixed minibatch exactly as mpgd does (same loss, terms and dL/dz, bit for
// bit).
func TestSingleStepObjectivesAreMPGD(t *testing.T) {
	be := nntest.Backends()[0]
	z := logits(be, []float32{1, 0, 2}, []float32{0, 1, -1}, []float32{0.5, 0.5, 3}, []float32{-2, 1, 0})
	labels := []int32{2, 1}
	ref, _ := New(be, Config{Name: "mpgd"})
	dzRef, tRef := ref.Loss(z, labels)
	want := nntest.Host(be, dzRef)
	for _, c := range []Config{{Name: "single-step", SingleStep: SingleStepFGSM}, {Name: "ensemble-adv", StaticModels: 2}} {
		o, err := New(be, c)
		if err != nil {
			t.Fatal(err)
		}
		if !o.NeedsAdversarial() || o.ForwardBatch(2) != 4 || !o.SingleStep() {
			t.Fatalf("%s: not a mixed adversarial minibatch", c.Name)
		}
		dz, terms := o.Loss(z, labels)
		if fmt.Sprintf("%+v", terms) != fmt.Sprintf("%+v", tRef) { // NaN-aware
			t.Errorf("%s: terms %+v, mpgd %+v", c.Name, terms, tRef)
		}
		for i, v := range nntest.Host(be, dz) {
			if math.Float32bits(v) != math.Float32bits(want[i]) {
				t.Fatalf("%s: dL/dz[%d] = %v, mpgd %v", c.Name, i, v, want[i])
			}
		}
	}
}

// TestSourceSchedules: round-robin cycles model, static 1, static 2, …;
// random is uniform over the S+1 sources and a function of the stream; other
// objectives always use the model.
func TestSourceSchedules(t *testing.T) {
	be := nntest.Backends()[0]
	rr, _ := New(be, Config{Name: "ensemble-adv", StaticModels: 2})
	for step := int64(0); step < 9; step++ {
		if got := rr.Source(step, nil); got != int(step%3) {
			t.Fatalf("round-robin step %d: source %d, want %d", step, got, step%3)
		}
	}
	rnd, _ := New(be, Config{Name: "ensemble-adv", StaticModels: 2, SourceSchedule: RandomSource})
	count := make([]int, 3)
	for step := int64(0); step < 300; step++ {
		a := rnd.Source(step, rand.New(rand.NewPCG(uint64(step), 1)))
		b := rnd.Source(step, rand.New(rand.NewPCG(uint64(step), 1)))
		if a != b || a < 0 || a > 2 {
			t.Fatalf("random step %d: sources %d and %d from the same stream", step, a, b)
		}
		count[a]++
	}
	for s, c := range count {
		if c < 60 {
			t.Errorf("random schedule chose source %d %d times in 300", s, c)
		}
	}
	ss, _ := New(be, Config{Name: "single-step"})
	mp, _ := New(be, Config{Name: "mpgd", StaticModels: 3})
	for step := int64(0); step < 4; step++ {
		if ss.Source(step, nil) != 0 || mp.Source(step, nil) != 0 {
			t.Fatal("an objective other than ensemble-adv used a static model")
		}
	}
}

func TestSingleStepConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Name: "single-step", SingleStep: "pgd"}, "--single-step"},
		{Config{Name: "ensemble-adv"}, "--static-models"},
		{Config{Name: "ensemble-adv", StaticModels: 1, SourceSchedule: "cyclic"}, "source schedule"},
	} {
		if _, err := New(nntest.Backends()[0], tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v (want an error mentioning %s)", tc.c, err, tc.want)
		}
	}
	if _, err := ParseSchedule("round-robin"); err != nil {
		t.Error(err)
	}
}
