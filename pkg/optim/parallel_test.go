package optim

import (
	"errors"
	"math"
	"math/rand"
	"runtime"
	"slices"
	"testing"
)

// Updates split over goroutines equal the single-goroutine loop bit for bit,
// for every optimizer and the EMA, on a vector long enough to be split.
func TestParallelUpdatesAreBitIdentical(t *testing.T) {
	n := 5*minChunk + 123
	rng := rand.New(rand.NewSource(1))
	p0, g := make([]float32, n), make([]float32, n)
	for i := range p0 {
		p0[i], g[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	sgdMom := DefaultSGD()
	sgdMom.Momentum = 0.9
	nesterov := sgdMom
	nesterov.Nesterov = true
	centered := DefaultRMSProp()
	centered.Centered = true
	cases := map[string]func() (Optimizer, error){
		"adam":     func() (Optimizer, error) { return NewAdam(DefaultAdam(), n) },
		"rmsprop":  func() (Optimizer, error) { return NewRMSProp(DefaultRMSProp(), n) },
		"centered": func() (Optimizer, error) { return NewRMSProp(centered, n) },
		"sgd":      func() (Optimizer, error) { return NewSGD(DefaultSGD(), n) },
		"momentum": func() (Optimizer, error) { return NewSGD(sgdMom, n) },
		"nesterov": func() (Optimizer, error) { return NewSGD(nesterov, n) },
	}
	run := func(procs int, mk func() (Optimizer, error)) ([]float32, []float32) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		o, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		p := slices.Clone(p0)
		for step := int64(0); step < 3; step++ {
			if err := o.Step(p, g, 0.01, step); err != nil {
				t.Fatal(err)
			}
		}
		e, err := NewEMA(DefaultEMA(), p0)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Update(p, 5); err != nil {
			t.Fatal(err)
		}
		return p, slices.Clone(e.Values())
	}
	for name, mk := range cases {
		p1, e1 := run(1, mk)
		p4, e4 := run(4, mk)
		if !bitsEqual(p1, p4) || !bitsEqual(e1, e4) {
			t.Errorf("%s: 4 goroutines differ from 1", name)
		}
		if bitsEqual(p1, p0) {
			t.Errorf("%s: parameters did not change", name)
		}
	}
}

func bitsEqual(a, b []float32) bool {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return len(a) == len(b)
}

// The non-finite scan reports the lowest bad index whichever chunk holds
// it, and the step then changes nothing.
func TestParallelScanReportsTheFirstNonFinite(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	n := 4*minChunk + 7
	g := make([]float32, n)
	if i := firstNonFinite(g); i != -1 {
		t.Fatalf("finite vector: %d", i)
	}
	g[n-1] = float32(math.Inf(1))
	g[3*minChunk+5] = float32(math.NaN())
	if i := firstNonFinite(g); i != 3*minChunk+5 {
		t.Fatalf("first non-finite %d, want %d", i, 3*minChunk+5)
	}
	g[10] = float32(math.Inf(-1))
	o, _ := NewAdam(DefaultAdam(), n)
	p := make([]float32, n)
	err := o.Step(p, g, 0.1, 0)
	if !errors.Is(err, ErrNonFinite) || err.Error() != "adam: "+ErrNonFinite.Error()+" at index 10 (-Inf)" {
		t.Fatalf("error %v", err)
	}
	if slices.ContainsFunc(p, func(v float32) bool { return v != 0 }) {
		t.Fatal("a rejected step changed the parameters")
	}
}
