package optim

import (
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestNewByName(t *testing.T) {
	for _, k := range []string{"rmsprop", "adam", "sgd"} {
		cfg, err := DefaultConfig(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("default %s config invalid: %v", k, err)
		}
		o := mustNew(t, cfg, 4)
		if o.Name() != k {
			t.Errorf("New(%q).Name() = %q", k, o.Name())
		}
		for _, s := range o.State() {
			if len(s.Data) != 4 {
				t.Errorf("%s state %q has length %d, want 4", k, s.Name, len(s.Data))
			}
		}
	}
	names := func(o Optimizer) (s []string) {
		for _, x := range o.State() {
			s = append(s, x.Name)
		}
		return s
	}
	for name, want := range map[string][]string{
		"rmsprop": {"ms", "mom"}, "rmsprop-centered": {"ms", "mom", "mg"}, "adam": {"m", "v"},
		"sgd": nil, "sgd-momentum": {"mom"}, "sgd-nesterov": {"mom"},
	} {
		got := names(mustNew(t, allConfigs()[name], 3))
		if len(got) != len(want) || (len(want) > 0 && !equalStrings(got, want)) {
			t.Errorf("%s state slots = %v, want %v", name, got, want)
		}
	}
	if k := KnownKinds(); !sort.StringsAreSorted(k) || len(k) != 3 {
		t.Errorf("KnownKinds() = %v", k)
	}

	const known = "(known: adam, rmsprop, sgd)"
	_, err := New(Config{Kind: "adagrad"}, 3)
	wantErr(t, "New(adagrad)", err, `optim: unknown optimizer kind "adagrad"`, known)
	_, err = DefaultConfig("RMSProp")
	wantErr(t, "DefaultConfig(RMSProp)", err, `unknown optimizer kind "RMSProp"`, known)
	wantErr(t, "Validate empty kind", Config{}.Validate(), `unknown optimizer kind ""`, known)
	cfg, _ := DefaultConfig("adam")
	_, err = New(cfg, -1)
	wantErr(t, "New n=-1", err, "adam: parameter count must be >= 0, got -1")
	if _, err := New(cfg, 0); err != nil {
		t.Errorf("New n=0: %v", err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestConfigValidation(t *testing.T) {
	rms := func(f func(*RMSPropConfig)) Config {
		c, _ := DefaultConfig("rmsprop")
		f(&c.RMSProp)
		return c
	}
	adam := func(f func(*AdamConfig)) Config {
		c, _ := DefaultConfig("adam")
		f(&c.Adam)
		return c
	}
	sgd := func(f func(*SGDConfig)) Config {
		c, _ := DefaultConfig("sgd")
		f(&c.SGD)
		return c
	}
	cases := []struct {
		cfg  Config
		want string
	}{
		{rms(func(c *RMSPropConfig) { c.Decay = 1.2 }), "rmsprop: decay must be in [0,1), got 1.2"},
		{rms(func(c *RMSPropConfig) { c.Decay = 1 }), "rmsprop: decay must be in [0,1), got 1"},
		{rms(func(c *RMSPropConfig) { c.Decay = -0.1 }), "rmsprop: decay must be in [0,1), got -0.1"},
		{rms(func(c *RMSPropConfig) { c.Decay = math.NaN() }), "rmsprop: decay must be in [0,1), got NaN"},
		{rms(func(c *RMSPropConfig) { c.Momentum = 1 }), "rmsprop: momentum must be in [0,1), got 1"},
		{rms(func(c *RMSPropConfig) { c.Epsilon = 0 }), "rmsprop: epsilon must be finite and > 0, got 0"},
		{rms(func(c *RMSPropConfig) { c.Epsilon = math.Inf(1) }), "rmsprop: epsilon must be finite and > 0, got +Inf"},
		{adam(func(c *AdamConfig) { c.Beta1 = 1 }), "adam: beta1 must be in [0,1), got 1"},
		{adam(func(c *AdamConfig) { c.Beta2 = -0.5 }), "adam: beta2 must be in [0,1), got -0.5"},
		{adam(func(c *AdamConfig) { c.Epsilon = -1e-8 }), "adam: epsilon must be finite and > 0, got -1e-08"},
		{sgd(func(c *SGDConfig) { c.Momentum = 1.5 }), "sgd: momentum must be in [0,1), got 1.5"},
		{sgd(func(c *SGDConfig) { c.Nesterov = true }), "sgd: nesterov needs momentum > 0, got 0"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		if err == nil || err.Error() != c.want {
			t.Errorf("Validate() = %v, want %q", err, c.want)
		}
		if _, err := New(c.cfg, 3); err == nil || err.Error() != c.want {
			t.Errorf("New() error = %v, want %q", err, c.want)
		}
	}
	// Only the section Kind selects is validated.
	c, _ := DefaultConfig("sgd")
	c.Adam.Beta1 = 7
	if err := c.Validate(); err != nil {
		t.Errorf("sgd config rejected for its adam section: %v", err)
	}
}

// Every kind of bad Step leaves params and state as they were.
func TestStepErrorsModifyNothing(t *testing.T) {
	for name, cfg := range allConfigs() {
		r := rand.New(rand.NewPCG(1, 2))
		o := mustNew(t, cfg, 5)
		params := randVec(r, 5, 1)
		// Some history, so the state is not at its initial values.
		for s := int64(0); s < 2; s++ {
			if err := o.Step(params, randVec(r, 5, 1), 0.01, s); err != nil {
				t.Fatal(err)
			}
		}
		good := randVec(r, 5, 1)
		withAt := func(i int, x float32) []float32 {
			g := append([]float32{}, good...)
			g[i] = x
			return g
		}
		nan32, inf32 := float32(math.NaN()), float32(math.Inf(1))
		cases := []struct {
			what     string
			params   []float32
			grad     []float32
			lr       float64
			step     int64
			sentinel error
			frag     string
		}{
			{"short params", params[:4], good[:4], 0.01, 2, ErrLengthMismatch, "params has length 4, optimizer has 5"},
			{"short grad", params, good[:4], 0.01, 2, ErrLengthMismatch, "grad has length 4, params 5"},
			{"long grad", params, append(append([]float32{}, good...), 1), 0.01, 2, ErrLengthMismatch, "grad has length 6"},
			{"NaN last", params, withAt(4, nan32), 0.01, 2, ErrNonFinite, "non-finite gradient at index 4 (NaN)"},
			{"NaN first", params, withAt(0, nan32), 0.01, 2, ErrNonFinite, "at index 0 (NaN)"},
			{"+Inf", params, withAt(2, inf32), 0.01, 2, ErrNonFinite, "at index 2 (+Inf)"},
			{"-Inf", params, withAt(3, -inf32), 0.01, 2, ErrNonFinite, "at index 3 (-Inf)"},
			{"negative lr", params, good, -0.01, 2, nil, "learning rate must be finite and >= 0, got -0.01"},
			{"NaN lr", params, good, math.NaN(), 2, nil, "learning rate must be finite and >= 0, got NaN"},
			{"Inf lr", params, good, math.Inf(1), 2, nil, "got +Inf"},
			{"negative step", params, good, 0.01, -1, nil, "step must be >= 0, got -1"},
		}
		for _, c := range cases {
			pBefore := append([]float32{}, params...)
			sBefore := snapshot(o)
			err := o.Step(c.params, c.grad, c.lr, c.step)
			wantErr(t, name+" "+c.what, err, cfg.Kind+": ", c.frag)
			if c.sentinel != nil && !errors.Is(err, c.sentinel) {
				t.Errorf("%s %s: %v does not wrap %v", name, c.what, err, c.sentinel)
			}
			wantBits(t, name+" "+c.what+": params", params, pBefore)
			wantState(t, name+" "+c.what+": state", o.State(), sBefore)
		}
		// And it still steps afterwards.
		if err := o.Step(params, good, 0.01, 2); err != nil {
			t.Errorf("%s: good step after errors: %v", name, err)
		}
	}
}

func TestSetStateErrors(t *testing.T) {
	o := mustNew(t, allConfigs()["rmsprop-centered"], 3)
	if err := o.Step([]float32{1, 2, 3}, []float32{0.1, 0.2, 0.3}, 0.1, 0); err != nil {
		t.Fatal(err)
	}
	before := snapshot(o)
	v := func(n int) []float32 { return make([]float32, n) }
	cases := []struct {
		what   string
		states []NamedState
		frag   string
	}{
		{"nothing", nil, `rmsprop: SetState: missing state slot "ms", "mom", "mg"`},
		{"no mg", []NamedState{{"ms", v(3)}, {"mom", v(3)}}, `missing state slot "mg"`},
		{"short", []NamedState{{"ms", v(3)}, {"mom", v(2)}, {"mg", v(3)}}, `state slot "mom" has length 2, want 3`},
		{"unknown", []NamedState{{"ms", v(3)}, {"mom", v(3)}, {"mg", v(3)}, {"v", v(3)}}, `unknown state slot "v" (want ms, mom, mg)`},
		{"twice", []NamedState{{"ms", v(3)}, {"ms", v(3)}, {"mom", v(3)}, {"mg", v(3)}}, `state slot "ms" given twice`},
	}
	for _, c := range cases {
		wantErr(t, c.what, o.SetState(c.states), c.frag)
		wantState(t, c.what+": state untouched", o.State(), before)
	}
	a := mustNew(t, allConfigs()["adam"], 2)
	wantErr(t, "adam slots", a.SetState([]NamedState{{"m", v(2)}, {"ms", v(2)}}), `adam: SetState: unknown state slot "ms" (want m, v)`)

	_, err := SliceState(before, 2, 4)
	wantErr(t, "SliceState past end", err, `range [2,4) out of slot "ms" of length 3`)
	_, err = SliceState(before, 2, 1)
	wantErr(t, "SliceState reversed", err, "range [2,1)")
}

// State → SetState into a fresh optimizer → identical later steps, bit for bit.
func TestStateRoundTrip(t *testing.T) {
	for name, cfg := range allConfigs() {
		r := rand.New(rand.NewPCG(3, 4))
		const n = 7
		a := mustNew(t, cfg, n)
		pa := randVec(r, n, 1)
		for s := int64(0); s < 3; s++ {
			if err := a.Step(pa, randVec(r, n, 0.5), 0.01, s); err != nil {
				t.Fatal(err)
			}
		}
		b := mustNew(t, cfg, n)
		ckpt := snapshot(a)
		if err := b.SetState(ckpt); err != nil {
			t.Fatalf("%s: SetState: %v", name, err)
		}
		for _, s := range ckpt { // SetState copied: scribbling on the checkpoint changes nothing
			for i := range s.Data {
				s.Data[i] = 42
			}
		}
		pb := append([]float32{}, pa...)
		wantState(t, name+" restored", b.State(), a.State())
		for s := int64(3); s < 6; s++ {
			g := randVec(r, n, 0.5)
			if err := a.Step(pa, g, 0.02, s); err != nil {
				t.Fatal(err)
			}
			if err := b.Step(pb, g, 0.02, s); err != nil {
				t.Fatal(err)
			}
		}
		wantBits(t, name+" params after restore", pb, pa)
		wantState(t, name+" state after restore", b.State(), a.State())
	}
}

// The parameter servers apply the optimizer to shards: two halves stepped
// separately must equal the whole, bit for bit, also when the shards start
// from a slice of a whole-vector checkpoint.
func TestShardedStepsMatchWhole(t *testing.T) {
	for name, cfg := range allConfigs() {
		r := rand.New(rand.NewPCG(5, 6))
		const n, cut = 11, 5
		whole := mustNew(t, cfg, n)
		params := randVec(r, n, 1)
		var grads [][]float32
		for s := 0; s < 6; s++ {
			grads = append(grads, randVec(r, n, 0.3))
		}
		lr := func(s int) float64 { return 0.05 / float64(s+1) }

		// Shards from the start.
		split := append([]float32{}, params...)
		halves := []Optimizer{mustNew(t, cfg, cut), mustNew(t, cfg, n-cut)}
		bounds := [][2]int{{0, cut}, {cut, n}}
		for s := 0; s < 3; s++ {
			if err := whole.Step(params, grads[s], lr(s), int64(s)); err != nil {
				t.Fatal(err)
			}
			for h, b := range bounds {
				if err := halves[h].Step(split[b[0]:b[1]], grads[s][b[0]:b[1]], lr(s), int64(s)); err != nil {
					t.Fatal(err)
				}
			}
		}
		wantBits(t, name+" sharded params", split, params)
		for h, b := range bounds {
			want, err := SliceState(whole.State(), b[0], b[1])
			if err != nil {
				t.Fatal(err)
			}
			wantState(t, name+" shard state", halves[h].State(), want)
		}

		// Re-shard a whole-vector checkpoint at a different cut and go on.
		reshard := append([]float32{}, params...)
		bounds = [][2]int{{0, 8}, {8, n}}
		var shards []Optimizer
		for _, b := range bounds {
			o := mustNew(t, cfg, b[1]-b[0])
			st, err := SliceState(whole.State(), b[0], b[1])
			if err != nil {
				t.Fatal(err)
			}
			if err := o.SetState(st); err != nil {
				t.Fatalf("%s: SetState from SliceState: %v", name, err)
			}
			shards = append(shards, o)
		}
		for s := 3; s < 6; s++ {
			if err := whole.Step(params, grads[s], lr(s), int64(s)); err != nil {
				t.Fatal(err)
			}
			for h, b := range bounds {
				if err := shards[h].Step(reshard[b[0]:b[1]], grads[s][b[0]:b[1]], lr(s), int64(s)); err != nil {
					t.Fatal(err)
				}
			}
		}
		wantBits(t, name+" re-sharded params", reshard, params)
	}
}

// The EMA over two halves equals the EMA over the whole.
func TestShardedEMAMatchesWhole(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	init := randVec(r, 9, 1)
	whole, _ := NewEMA(DefaultEMA(), init)
	a, _ := NewEMA(DefaultEMA(), init[:4])
	b, _ := NewEMA(DefaultEMA(), init[4:])
	for s := int64(0); s < 5; s++ {
		p := randVec(r, 9, 1)
		if whole.Update(p, s) != nil || a.Update(p[:4], s) != nil || b.Update(p[4:], s) != nil {
			t.Fatal("update failed")
		}
	}
	wantBits(t, "sharded EMA", append(append([]float32{}, a.Values()...), b.Values()...), whole.Values())
}
