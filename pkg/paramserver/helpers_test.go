package paramserver

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/optim"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// layoutOf builds a back-to-back layout of named tensors with the given
// sizes; names ending in ".weight" are decayed kernels.
func layoutOf(names []string, sizes []int) nn.Layout {
	var l nn.Layout
	for i, n := range names {
		role := nn.Bias
		if len(n) > 7 && n[len(n)-7:] == ".weight" {
			role = nn.Weight
		}
		l.Ranges = append(l.Ranges, nn.Range{Name: n, Offset: l.Total, Size: sizes[i], Role: role})
		l.Total += sizes[i]
	}
	return l
}

var madryNames = []string{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}

func madryLayout() nn.Layout {
	return layoutOf(madryNames, []int{800, 32, 51200, 64, 3211264, 1024, 10240, 10})
}

// smallLayout is a madry-shaped layout small enough for many steps.
func smallLayout() nn.Layout {
	return layoutOf(madryNames, []int{40, 4, 96, 8, 300, 12, 36, 3})
}

// vec returns n deterministic pseudo-random float32 values in about
// [−scale, scale), a function of the seeds only.
func vec(n int, scale float64, seeds ...uint64) []float32 {
	var s1, s2 uint64 = 0x9e3779b97f4a7c15, 0
	for _, s := range seeds {
		s1 = s1*0x100000001b3 ^ s
		s2 += s*0xbf58476d1ce4e5b9 + 1
	}
	r := rand.New(rand.NewPCG(s1, s2))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((r.Float64()*2 - 1) * scale)
	}
	return v
}

// baseConfig is a shard config over [0, n) with W workers.
func baseConfig(kind string, n, workers int) ShardConfig {
	c := DefaultConfig()
	oc, err := optim.DefaultConfig(kind)
	if err != nil {
		panic(err)
	}
	if kind == optim.KindSGD {
		oc.SGD.Momentum = 0.9
	}
	c.Optim, c.Lo, c.Hi, c.Workers, c.LR = oc, 0, n, workers, 0.01
	return c
}

func mustShard(t *testing.T, cfg ShardConfig, init []float32, store Store) *Shard {
	t.Helper()
	s, err := NewShard(cfg, init, store)
	if err != nil {
		t.Fatalf("NewShard: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustPush(t *testing.T, s *Shard, step int64, w int, g, b []float32) {
	t.Helper()
	if err := s.Push(step, w, g, b); err != nil {
		t.Fatalf("Push(%d, %d): %v", step, w, err)
	}
}

func mustApply(t *testing.T, s *Shard, step int64, set []int) {
	t.Helper()
	if err := s.Apply(step, set); err != nil {
		t.Fatalf("Apply(%d, %v): %v", step, set, err)
	}
}

// meanOf is the reference mean: float64 sum in set order, /N, float32.
func meanOf(vs [][]float32) []float32 {
	out := make([]float32, len(vs[0]))
	for i := range out {
		var s float64
		for _, v := range vs {
			s += float64(v[i])
		}
		out[i] = float32(s / float64(len(vs)))
	}
	return out
}

func sameBitsT(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: length %d, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v (%#x), want %v (%#x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// sameState compares two states bit for bit.
func sameState(t *testing.T, what string, got, want ShardState) {
	t.Helper()
	if got.Version != want.Version {
		t.Fatalf("%s: version %d, want %d", what, got.Version, want.Version)
	}
	sameBitsT(t, what+" params", got.Params, want.Params)
	sameBitsT(t, what+" buffers", got.Buffers, want.Buffers)
	sameBitsT(t, what+" ema", got.EMA, want.EMA)
	if got.OptimKind != want.OptimKind || len(got.Optim) != len(want.Optim) {
		t.Fatalf("%s: optimizer %q with %d slots, want %q with %d", what, got.OptimKind, len(got.Optim), want.OptimKind, len(want.Optim))
	}
	for i := range got.Optim {
		if got.Optim[i].Name != want.Optim[i].Name {
			t.Fatalf("%s: slot %d is %q, want %q", what, i, got.Optim[i].Name, want.Optim[i].Name)
		}
		sameBitsT(t, what+" "+got.Optim[i].Name, got.Optim[i].Data, want.Optim[i].Data)
	}
}

// concatStates joins shards' states (in index order) into one whole-vector
// state, for comparison with a single shard.
func concatStates(sts []ShardState) ShardState {
	out := ShardState{Version: sts[0].Version, OptimKind: sts[0].OptimKind}
	for _, st := range sts {
		out.Params = append(out.Params, st.Params...)
		out.Buffers = append(out.Buffers, st.Buffers...)
		if st.EMA != nil {
			out.EMA = append(out.EMA, st.EMA...)
		}
	}
	for i, ns := range sts[0].Optim {
		var d []float32
		for _, st := range sts {
			d = append(d, st.Optim[i].Data...)
		}
		out.Optim = append(out.Optim, optim.NamedState{Name: ns.Name, Data: d})
	}
	out.Params = slices.Clip(out.Params)
	return out
}
