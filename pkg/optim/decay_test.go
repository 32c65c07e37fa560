package optim

import (
	"errors"
	"testing"
)

// wd = ¼ on the ranges [0,2) and [4,5) only.
func TestWeightDecayByHand(t *testing.T) {
	params := []float32{1, 2, 3, 4, 5, 6}
	grad := []float32{0.5, 0.5, 0.5, 0.5, 0.5, 0.5}
	mask := []Range{{4, 5}, {0, 2}} // any order
	if err := AddWeightDecay(grad, params, 0.25, mask); err != nil {
		t.Fatal(err)
	}
	// g_i += ¼·θ_i on elements 0, 1, 4: 0.5 + 0.25, 0.5 + 0.5, 0.5 + 1.25; the others unchanged.
	wantBits(t, "grad", grad, []float32{0.75, 1, 0.5, 0.5, 1.75, 0.5})
	wantBits(t, "params untouched", params, []float32{1, 2, 3, 4, 5, 6})

	// loss = ¼·½·(1² + 2² + 5²) = 0.125·30 = 3.75
	l, err := L2Loss(params, 0.25, mask)
	if err != nil || l != 3.75 {
		t.Errorf("L2Loss = %v, %v; want 3.75", l, err)
	}
	if l, err := L2Loss(params, 0.25, nil); err != nil || l != 0 {
		t.Errorf("L2Loss with no ranges = %v, %v; want 0", l, err)
	}
}

// Two shards with ClipRanges give the whole vector's gradient and loss.
func TestWeightDecaySharded(t *testing.T) {
	params := []float32{1, 2, 3, 4, 5, 6, 7}
	mask := []Range{{0, 2}, {2, 5}, {6, 7}}
	whole := []float32{1, 1, 1, 1, 1, 1, 1}
	if err := AddWeightDecay(whole, params, 0.1, mask); err != nil {
		t.Fatal(err)
	}
	wholeLoss, _ := L2Loss(params, 0.1, mask)
	split := []float32{1, 1, 1, 1, 1, 1, 1}
	var loss float64
	for _, sh := range [][2]int{{0, 3}, {3, 7}} {
		lo, hi := sh[0], sh[1]
		m := ClipRanges(mask, lo, hi)
		if err := AddWeightDecay(split[lo:hi], params[lo:hi], 0.1, m); err != nil {
			t.Fatal(err)
		}
		l, err := L2Loss(params[lo:hi], 0.1, m)
		if err != nil {
			t.Fatal(err)
		}
		loss += l
	}
	wantBits(t, "sharded grad", split, whole)
	wantClose(t, "sharded loss", loss, wholeLoss, 1e-15)

	got := ClipRanges(mask, 3, 7)
	want := []Range{{0, 2}, {3, 4}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("ClipRanges(%v, 3, 7) = %v, want %v", mask, got, want)
	}
}

func TestWeightDecayErrors(t *testing.T) {
	params := []float32{1, 2, 3}
	cases := []struct {
		name   string
		grad   []float32
		wd     float64
		ranges []Range
		frag   string
	}{
		{"length", []float32{0, 0}, 0.1, nil, "length mismatch"},
		{"negative wd", []float32{0, 0, 0}, -0.1, nil, "weight decay must be finite and >= 0, got -0.1"},
		{"NaN wd", []float32{0, 0, 0}, nan(), nil, "got NaN"},
		{"Inf wd", []float32{0, 0, 0}, inf(), nil, "got +Inf"},
		{"past end", []float32{0, 0, 0}, 0.1, []Range{{1, 4}}, "[1,4) is not inside [0,3)"},
		{"negative lo", []float32{0, 0, 0}, 0.1, []Range{{-1, 2}}, "[-1,2) is not inside"},
		{"reversed", []float32{0, 0, 0}, 0.1, []Range{{2, 1}}, "[2,1) is not inside"},
		{"overlap", []float32{0, 0, 0}, 0.1, []Range{{1, 3}, {0, 2}}, "[0,2) and [1,3) overlap"},
	}
	for _, c := range cases {
		before := append([]float32{}, c.grad...)
		err := AddWeightDecay(c.grad, params, c.wd, c.ranges)
		wantErr(t, c.name, err, c.frag)
		wantBits(t, c.name+": grad untouched", c.grad, before)
		if c.name == "length" {
			if !errors.Is(err, ErrLengthMismatch) {
				t.Errorf("length: %v does not wrap ErrLengthMismatch", err)
			}
			continue
		}
		_, err = L2Loss(params, c.wd, c.ranges)
		wantErr(t, c.name+" (L2Loss)", err, c.frag)
	}
}
