package optim

import (
	"errors"
	"math"
	"testing"
)

// num_updates caps the decay at (1+n)/(10+n); n = 6 and n = 22 give the
// exact fractions 7/16 and 23/32.
func TestEMAByHand(t *testing.T) {
	e, err := NewEMA(EMAConfig{Decay: 0.5, UseNumUpdates: true}, []float32{0, 16})
	if err != nil {
		t.Fatal(err)
	}
	// n = 6: d = min(½, 7/16) = 7/16, 1−d = 9/16; θ = (16, 0):
	//   s0 = 0 − (0 − 16)·9/16 = 9;  s1 = 16 − (16 − 0)·9/16 = 7
	if d := e.Decay(6); d != 7.0/16 {
		t.Errorf("Decay(6) = %v, want 7/16", d)
	}
	if err := e.Update([]float32{16, 0}, 6); err != nil {
		t.Fatal(err)
	}
	wantBits(t, "shadow after n=6", e.Values(), []float32{9, 7})
	// n = 22: d = min(½, 23/32) = ½; θ = (16, 0):
	//   s0 = 9 − (9 − 16)·½ = 12.5;  s1 = 7 − 7·½ = 3.5
	if d := e.Decay(22); d != 0.5 {
		t.Errorf("Decay(22) = %v, want 1/2", d)
	}
	if err := e.Update([]float32{16, 0}, 22); err != nil {
		t.Fatal(err)
	}
	wantBits(t, "shadow after n=22", e.Values(), []float32{12.5, 3.5})

	// Without num_updates the step is ignored: d = ¾, s0 = 0 − (0 − 16)·¼ = 4.
	e2, _ := NewEMA(EMAConfig{Decay: 0.75}, []float32{0})
	if err := e2.Update([]float32{16}, 6); err != nil {
		t.Fatal(err)
	}
	wantBits(t, "shadow without num_updates", e2.Values(), []float32{4})
}

func TestEMADefaults(t *testing.T) {
	cfg := DefaultEMA()
	if cfg != (EMAConfig{Decay: 0.9999, UseNumUpdates: true}) {
		t.Fatalf("DefaultEMA() = %+v", cfg)
	}
	init := []float32{1, 2}
	e, err := NewEMA(cfg, init)
	if err != nil {
		t.Fatal(err)
	}
	init[0] = 100 // NewEMA copied it
	wantBits(t, "initial shadow", e.Values(), []float32{1, 2})
	// (1+n)/(10+n) in float32 while it is below 0.9999, then 0.9999.
	for n, want := range map[int64]float32{0: float32(1) / 10, 1: float32(2) / 11, 1000: float32(1001) / 1010, 1_000_000: float32(0.9999)} {
		if d := e.Decay(n); d != want {
			t.Errorf("Decay(%d) = %v, want %v", n, d, want)
		}
	}
	// n = 0: d = 0.1, shadow moves 90% of the way: 1 − (1 − 11)·0.9 = 10.
	if err := e.Update([]float32{11, 2}, 0); err != nil {
		t.Fatal(err)
	}
	wantClose(t, "shadow after n=0", float64(e.Values()[0]), 10, 1e-6)
	if e.Values()[1] != 2 {
		t.Errorf("shadow of an unchanged parameter moved to %v", e.Values()[1])
	}
}

func TestEMAStateAndErrors(t *testing.T) {
	e, _ := NewEMA(EMAConfig{Decay: 0.9, UseNumUpdates: true}, []float32{1, 2, 3})
	_ = e.Update([]float32{2, 3, 4}, 5)
	f, _ := NewEMA(EMAConfig{Decay: 0.9, UseNumUpdates: true}, []float32{0, 0, 0})
	if err := f.SetState(e.State()); err != nil {
		t.Fatal(err)
	}
	for n := int64(6); n < 9; n++ {
		p := []float32{float32(n), -float32(n), 0.5}
		_ = e.Update(p, n)
		_ = f.Update(p, n)
	}
	wantBits(t, "restored EMA", f.Values(), e.Values())

	before := append([]float32{}, e.Values()...)
	err := e.Update([]float32{1, 2}, 3)
	wantErr(t, "short params", err, "ema: length mismatch: params has length 2, average has 3")
	if !errors.Is(err, ErrLengthMismatch) {
		t.Errorf("%v does not wrap ErrLengthMismatch", err)
	}
	wantErr(t, "negative step", e.Update([]float32{1, 2, 3}, -1), "ema: step must be >= 0, got -1")
	wantErr(t, "missing slot", e.SetState(nil), `ema: SetState: missing state slot "ema"`)
	wantErr(t, "short slot", e.SetState([]NamedState{{Name: "ema", Data: []float32{1}}}), `state slot "ema" has length 1, want 3`)
	wantErr(t, "unknown slot", e.SetState([]NamedState{{Name: "shadow", Data: []float32{1, 2, 3}}}), `unknown state slot "shadow" (want ema)`)
	wantBits(t, "EMA after errors", e.Values(), before)

	for _, d := range []float64{-0.1, 1.5, math.NaN()} {
		_, err := NewEMA(EMAConfig{Decay: d}, nil)
		wantErr(t, "decay", err, "ema: decay must be in [0,1], got")
	}
	if _, err := NewEMA(EMAConfig{Decay: 1}, nil); err != nil {
		t.Errorf("decay 1 (a frozen average) rejected: %v", err)
	}
}
