package optim

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// wantBits fails unless got and want are bit-identical.
func wantBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: length %d, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("%s[%d] = %v, want %v (exactly)", what, i, got[i], want[i])
		}
	}
}

// wantClose fails unless |got−want| <= tol·max(1, |want|).
func wantClose(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if d := math.Abs(got - want); d > tol*math.Max(1, math.Abs(want)) || math.IsNaN(got) {
		t.Errorf("%s = %.17g, want %.17g (tolerance %g)", what, got, want, tol)
	}
}

// wantErr fails unless err is non-nil and contains every fragment.
func wantErr(t *testing.T, what string, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one containing %q", what, fragments)
		return
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("%s: error %q does not contain %q", what, err, f)
		}
	}
}

// snapshot deep-copies an optimizer's state.
func snapshot(o Optimizer) []NamedState {
	var out []NamedState
	for _, s := range o.State() {
		out = append(out, NamedState{Name: s.Name, Data: append([]float32{}, s.Data...)})
	}
	return out
}

func wantState(t *testing.T, what string, got, want []NamedState) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d slots, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i].Name != want[i].Name {
			t.Fatalf("%s: slot %d is %q, want %q", what, i, got[i].Name, want[i].Name)
		}
		wantBits(t, what+" "+got[i].Name, got[i].Data, want[i].Data)
	}
}

// randVec is a deterministic vector of values around scale.
func randVec(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

// allConfigs is every optimizer variant, by a test name.
func allConfigs() map[string]Config {
	c := map[string]Config{}
	for _, k := range KnownKinds() {
		d, _ := DefaultConfig(k)
		c[k] = d
	}
	rc, _ := DefaultConfig(KindRMSProp)
	rc.RMSProp.Centered = true
	c["rmsprop-centered"] = rc
	sm, _ := DefaultConfig(KindSGD)
	sm.SGD.Momentum = 0.9
	c["sgd-momentum"] = sm
	sn := sm
	sn.SGD.Nesterov = true
	c["sgd-nesterov"] = sn
	return c
}

func mustNew(t *testing.T, cfg Config, n int) Optimizer {
	t.Helper()
	o, err := New(cfg, n)
	if err != nil {
		t.Fatalf("New(%+v, %d): %v", cfg, n, err)
	}
	return o
}

func nan() float64 { return math.NaN() }
func inf() float64 { return math.Inf(1) }
