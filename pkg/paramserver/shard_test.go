package paramserver

import (
	"errors"
	"github.com/logitpair/logitpair/pkg/train"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/logitpair/logitpair/pkg/optim"
)

// TestApplyMeanSGDExact: W=4, set {0,2,3}, SGD lr 1: θ ← θ − mean exactly
// (values chosen so every sum and mean is exact).
func TestApplyMeanSGDExact(t *testing.T) {
	cfg := baseConfig(optim.KindSGD, 4, 4)
	cfg.Optim.SGD = optim.DefaultSGD() // plain SGD
	cfg.LR = 1
	cfg.BufLo, cfg.BufHi, cfg.InitBuffers = 0, 2, []float32{0, 1}
	init := []float32{10, 20, 30, 40}
	s := mustShard(t, cfg, init, nil)
	grads := [][]float32{{3, 6, 0.5, -3}, {1000, 1000, 1000, 1000}, {6, 0, 0.25, -6}, {9, 3, 0.75, 0}}
	bufs := [][]float32{{1, 2}, {99, 99}, {2, 3}, {3, 4}}
	for w := range 4 {
		mustPush(t, s, 0, w, grads[w], bufs[w])
	}
	mustApply(t, s, 0, []int{0, 2, 3})
	p, b, err := s.Pull(testCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	sameBitsT(t, "params", p, []float32{10 - 6, 20 - 3, 30 - 0.5, 40 + 3})
	sameBitsT(t, "buffers", b, []float32{2, 3})
	st := s.Stats()
	if st.Version != 1 || st.Applied != 1 || st.Used != 3 || st.DroppedBackup != 1 || st.Pending != 0 || st.Accepted != 4 {
		t.Errorf("stats after apply: %+v", st)
	}
	// Worker 1 again, late: stale, counted, nothing changes.
	err = s.Push(0, 1, grads[1], bufs[1])
	var e *Error
	if !errors.Is(err, ErrStale) || !errors.As(err, &e) || e.Version != 1 || e.Worker != 1 {
		t.Fatalf("late push: %v", err)
	}
	st = s.Stats()
	if st.Rejected.Stale != 1 || st.Dropped() != 2 || st.Accepted != 4 {
		t.Errorf("stats after late push: %+v", st)
	}
	p2, _, _ := s.Pull(testCtx(t), 1)
	sameBitsT(t, "params after late push", p2, p)
}

// TestApplyRMSPropBitExact: the shard's result equals optim applied directly
// to the reference mean, over several steps with a schedule, weight decay
// and EMA.
func TestApplyRMSPropBitExact(t *testing.T) {
	const n, W = 257, 4
	cfg := baseConfig(optim.KindRMSProp, n, W)
	cfg.Schedule, cfg.LR = "step:2:0.5", 0.05
	cfg.WeightDecay, cfg.Decay = 0.002, []optim.Range{optim.Range{Lo: 0, Hi: 100}, optim.Range{Lo: 200, Hi: 257}}
	ema := optim.DefaultEMA()
	cfg.EMA = &ema
	init := vec(n, 1, 7)
	s := mustShard(t, cfg, init, nil)

	ref := slices.Clone(init)
	opt, _ := optim.New(cfg.Optim, n)
	refEMA, _ := optim.NewEMA(ema, ref)
	sched, _ := optim.ParseSchedule(cfg.Schedule, cfg.LR)
	sets := [][]int{{0, 2, 3}, {0, 1, 2}, {1, 3}, {0, 1, 2, 3}, {2}}
	for step, set := range sets {
		t64 := int64(step)
		var gs [][]float32
		for w := range W {
			g := vec(n, 0.5, 1, uint64(step), uint64(w))
			mustPush(t, s, t64, w, g, nil)
			if slices.Contains(set, w) {
				gs = append(gs, g)
			}
		}
		mustApply(t, s, t64, set)
		m := meanOf(gs)
		if err := optim.AddWeightDecay(m, ref, cfg.WeightDecay, cfg.Decay); err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(ref, m, sched.LR(t64), t64); err != nil {
			t.Fatal(err)
		}
		refEMA.Update(ref, t64)
		st := s.Checkpoint()
		sameBitsT(t, "params", st.Params, ref)
		sameBitsT(t, "ema", st.EMA, refEMA.Values())
		for i, ns := range opt.State() {
			sameBitsT(t, ns.Name, st.Optim[i].Data, ns.Data)
		}
	}
	if st := s.Stats(); st.DroppedBackup != int64(4*len(sets)-(3+3+2+4+1)) {
		t.Errorf("backups dropped %d", st.DroppedBackup)
	}
}

// TestPushOrderIndependent: the same pushes in different orders (backups
// included) give the same bits.
func TestPushOrderIndependent(t *testing.T) {
	const n, W = 300, 5
	cfg := baseConfig(optim.KindAdam, n, W)
	cfg.BufLo, cfg.BufHi, cfg.InitBuffers = 0, 6, vec(6, 1, 99)
	init := vec(n, 1, 3)
	orders := [][]int{{0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}, {2, 4, 0, 3, 1}, {3, 0, 4, 1, 2}}
	var want ShardState
	for k, order := range orders {
		s := mustShard(t, cfg, init, nil)
		for step := range int64(3) {
			for _, w := range order {
				mustPush(t, s, step, w, vec(n, 1e3, 5, uint64(step), uint64(w)), vec(6, 10, 6, uint64(step), uint64(w)))
			}
			mustApply(t, s, step, []int{0, 1, 3})
		}
		got := s.Checkpoint()
		if k == 0 {
			want = got
			continue
		}
		sameState(t, "order", got, want)
	}
}

// TestShardedEqualsWhole: two shards (and more) of one vector, each pushed
// its slice, equal one shard holding the whole vector bit for bit, with
// weight decay, EMA and buffers, for each optimizer. The partitions cut
// inside tensors, decayed kernels included (2 shards cut fc1.weight, 17 cut
// every kernel, 499 hold one parameter each), so weight decay must reach
// exactly the decayed elements of a split tensor.
func TestShardedEqualsWhole(t *testing.T) {
	l := smallLayout()
	const W, nbuf = 4, 10
	for _, kind := range optim.KnownKinds() {
		for _, k := range []int{2, 3, 8, 17, l.Total} {
			base := baseConfig(kind, l.Total, W)
			base.Schedule = "warmup:2,cosine:10"
			base.WeightDecay, base.Decay = 0.01, train.DecayMask(l)
			ema := optim.EMAConfig{Decay: 0.9, UseNumUpdates: true}
			base.EMA = &ema
			init, initBuf := vec(l.Total, 0.3, 11), vec(nbuf, 1, 12)

			wholeCfg := base
			wholeCfg.BufHi, wholeCfg.InitBuffers = nbuf, initBuf
			whole := mustShard(t, wholeCfg, init, nil)
			parts, err := Partition(l, k)
			if err != nil {
				t.Fatal(err)
			}
			var shards []*Shard
			for _, p := range parts {
				c := ConfigFor(base, p, nbuf)
				c.InitBuffers = initBuf[c.BufLo:c.BufHi]
				shards = append(shards, mustShard(t, c, init[c.Lo:c.Hi], nil))
			}
			sets := [][]int{{0, 1, 2}, {1, 2, 3}, {0, 3}, {0, 1, 2, 3}, {1}, {0, 2, 3}}
			for step, set := range sets {
				t64 := int64(step)
				for w := range W {
					g, b := vec(l.Total, 2, 13, uint64(step), uint64(w)), vec(nbuf, 1, 14, uint64(step), uint64(w))
					mustPush(t, whole, t64, w, g, b)
					for _, s := range shards {
						c := s.Config()
						mustPush(t, s, t64, w, g[c.Lo:c.Hi], b[c.BufLo:c.BufHi])
					}
				}
				mustApply(t, whole, t64, set)
				for _, s := range shards {
					mustApply(t, s, t64, set)
				}
			}
			var sts []ShardState
			for _, s := range shards {
				sts = append(sts, s.Checkpoint())
			}
			sameState(t, kind, concatStates(sts), whole.Checkpoint())
		}
	}
}

func TestPushRejections(t *testing.T) {
	const n, W = 8, 3
	cfg := baseConfig(optim.KindRMSProp, n, W)
	cfg.BufLo, cfg.BufHi, cfg.InitBuffers = 0, 2, []float32{0, 1}
	s := mustShard(t, cfg, vec(n, 1, 1), nil)
	good, goodBuf := vec(n, 1, 2), []float32{0.5, 0.5}
	// Bring the shard to version 1 so that stale steps exist.
	for w := range W {
		mustPush(t, s, 0, w, good, goodBuf)
	}
	mustApply(t, s, 0, []int{0, 1, 2})
	mustPush(t, s, 1, 0, good, goodBuf) // worker 0 pushed for step 1

	nan, inf, ninf := slices.Clone(good), slices.Clone(good), slices.Clone(good)
	nan[3], inf[0], ninf[7] = float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))
	cases := []struct {
		name   string
		step   int64
		worker int
		g, b   []float32
		kind   error
		count  func(Rejections) int64
	}{
		{"short gradient", 1, 1, good[:n-1], goodBuf, ErrLength, func(r Rejections) int64 { return r.Length }},
		{"long gradient", 1, 1, append(slices.Clone(good), 1), goodBuf, ErrLength, func(r Rejections) int64 { return r.Length }},
		{"short buffers", 1, 1, good, goodBuf[:1], ErrLength, func(r Rejections) int64 { return r.Length }},
		{"nil buffers", 1, 1, good, nil, ErrLength, func(r Rejections) int64 { return r.Length }},
		{"NaN", 1, 1, nan, goodBuf, ErrNonFinite, func(r Rejections) int64 { return r.NonFinite }},
		{"+Inf", 1, 1, inf, goodBuf, ErrNonFinite, func(r Rejections) int64 { return r.NonFinite }},
		{"-Inf", 1, 1, ninf, goodBuf, ErrNonFinite, func(r Rejections) int64 { return r.NonFinite }},
		{"NaN buffer", 1, 1, good, []float32{0, float32(math.NaN())}, ErrNonFinite, func(r Rejections) int64 { return r.NonFinite }},
		{"worker -1", 1, -1, good, goodBuf, ErrUnknownWorker, func(r Rejections) int64 { return r.UnknownWorker }},
		{"worker W", 1, W, good, goodBuf, ErrUnknownWorker, func(r Rejections) int64 { return r.UnknownWorker }},
		{"stale step", 0, 1, good, goodBuf, ErrStale, func(r Rejections) int64 { return r.Stale }},
		{"future step", 2, 1, good, goodBuf, ErrFuture, func(r Rejections) int64 { return r.Future }},
		{"conflicting duplicate", 1, 0, vec(n, 1, 3), goodBuf, ErrConflict, func(r Rejections) int64 { return r.Conflict }},
		{"conflicting duplicate buffers", 1, 0, good, []float32{0.5, 0.25}, ErrConflict, func(r Rejections) int64 { return r.Conflict }},
	}
	for _, c := range cases {
		before, stBefore := s.Checkpoint(), s.Stats()
		err := s.Push(c.step, c.worker, c.g, c.b)
		var e *Error
		if !errors.Is(err, c.kind) || !errors.As(err, &e) || e.Op != "push" || e.Version != 1 {
			t.Errorf("%s: err = %v, want kind %v", c.name, err, c.kind)
			continue
		}
		after, stAfter := s.Checkpoint(), s.Stats()
		sameState(t, c.name, after, before)
		if c.count(stAfter.Rejected) != c.count(stBefore.Rejected)+1 || stAfter.Rejected.Total() != stBefore.Rejected.Total()+1 {
			t.Errorf("%s: rejections %+v -> %+v", c.name, stBefore.Rejected, stAfter.Rejected)
		}
		if stAfter.Accepted != stBefore.Accepted || stAfter.Pending != 1 || stAfter.Duplicates != stBefore.Duplicates || stAfter.Pushes != stBefore.Pushes+1 {
			t.Errorf("%s: stats %+v -> %+v", c.name, stBefore, stAfter)
		}
	}
	// An identical duplicate is acknowledged; the first push is what Apply uses.
	if err := s.Push(1, 0, slices.Clone(good), slices.Clone(goodBuf)); err != nil {
		t.Fatalf("identical duplicate: %v", err)
	}
	if st := s.Stats(); st.Duplicates != 1 || st.Pending != 1 {
		t.Errorf("after duplicate: %+v", st)
	}
	ref := mustShard(t, cfg, vec(n, 1, 1), nil)
	for w := range W {
		mustPush(t, ref, 0, w, good, goodBuf)
	}
	mustApply(t, ref, 0, []int{0, 1, 2})
	mustPush(t, ref, 1, 0, good, goodBuf)
	mustApply(t, s, 1, []int{0})
	mustApply(t, ref, 1, []int{0})
	sameState(t, "after rejections", s.Checkpoint(), ref.Checkpoint())
}

// TestPushCopies: the shard keeps its own copy of a pushed slice.
func TestPushCopies(t *testing.T) {
	cfg := baseConfig(optim.KindSGD, 3, 1)
	cfg.Optim.SGD, cfg.LR = optim.DefaultSGD(), 1
	s := mustShard(t, cfg, []float32{1, 1, 1}, nil)
	g := []float32{1, 2, 3}
	mustPush(t, s, 0, 0, g, nil)
	g[0] = 100
	mustApply(t, s, 0, []int{0})
	p, _, _ := s.Pull(testCtx(t), 1)
	sameBitsT(t, "params", p, []float32{0, -1, -2})
}

func TestApplyErrorsAndIdempotency(t *testing.T) {
	const n, W = 16, 4
	cfg := baseConfig(optim.KindAdam, n, W)
	ema := optim.DefaultEMA()
	cfg.EMA = &ema
	s := mustShard(t, cfg, vec(n, 1, 1), nil)
	for _, w := range []int{0, 2} {
		mustPush(t, s, 0, w, vec(n, 1, 2, uint64(w)), nil)
	}
	before, stBefore := s.Checkpoint(), s.Stats()
	cases := []struct {
		name string
		step int64
		set  []int
		kind error
	}{
		{"missing workers", 0, []int{0, 1, 2, 3}, ErrMissing},
		{"empty set", 0, nil, ErrBadSet},
		{"unsorted set", 0, []int{2, 0}, ErrBadSet},
		{"repeated worker", 0, []int{0, 0, 2}, ErrBadSet},
		{"unknown worker", 0, []int{0, 2, 4}, ErrUnknownWorker},
		{"negative worker", 0, []int{-1, 0}, ErrUnknownWorker},
		{"future step", 1, []int{0, 2}, ErrFuture},
	}
	for _, c := range cases {
		err := s.Apply(c.step, c.set)
		if !errors.Is(err, c.kind) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.kind)
		}
		sameState(t, c.name, s.Checkpoint(), before)
		if st := s.Stats(); st != stBefore {
			t.Errorf("%s: stats %+v -> %+v", c.name, stBefore, st)
		}
	}
	var e *Error
	if err := s.Apply(0, []int{0, 1, 2, 3}); !errors.As(err, &e) || !slices.Equal(e.Workers, []int{1, 3}) {
		t.Errorf("ErrMissing should name workers 1 and 3: %v", err)
	}
	// The set is still appliable after the failures.
	mustApply(t, s, 0, []int{0, 2})
	after := s.Checkpoint()
	// Resends are acknowledged and change nothing.
	for range 3 {
		if err := s.Apply(0, []int{0, 2}); err != nil {
			t.Fatalf("resend: %v", err)
		}
	}
	sameState(t, "after resends", s.Checkpoint(), after)
	if st := s.Stats(); st.ApplyRepeats != 3 || st.Applied != 1 {
		t.Errorf("stats after resends: %+v", st)
	}
	// A resend naming another set contradicts what was applied.
	if err := s.Apply(0, []int{0}); !errors.Is(err, ErrSetMismatch) {
		t.Errorf("resend with another set: %v", err)
	}
	// Older steps are acknowledged too.
	for w := range W {
		mustPush(t, s, 1, w, vec(n, 1, 3, uint64(w)), nil)
	}
	mustApply(t, s, 1, []int{1, 2, 3})
	if err := s.Apply(0, []int{0, 2}); err != nil {
		t.Errorf("resend of an older step: %v", err)
	}
	if st := s.Stats(); st.Version != 2 || st.DroppedBackup != 1 {
		t.Errorf("stats: %+v", st)
	}
}

// TestApplyOverflowChangesNothing: a mean that becomes non-finite after
// weight decay makes Apply fail with the shard unchanged.
func TestApplyOverflowChangesNothing(t *testing.T) {
	cfg := baseConfig(optim.KindSGD, 2, 1)
	cfg.WeightDecay, cfg.Decay = 10, []optim.Range{optim.Range{Lo: 0, Hi: 2}}
	big := float32(math.MaxFloat32)
	s := mustShard(t, cfg, []float32{big, 1}, nil)
	mustPush(t, s, 0, 0, []float32{big, 1}, nil)
	before := s.Checkpoint()
	if err := s.Apply(0, []int{0}); !errors.Is(err, optim.ErrNonFinite) {
		t.Fatalf("Apply: %v", err)
	}
	sameState(t, "after failed apply", s.Checkpoint(), before)
	if st := s.Stats(); st.Applied != 0 || st.Pending != 1 {
		t.Errorf("stats: %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := baseConfig(optim.KindRMSProp, 4, 2)
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	badEMA := optim.EMAConfig{Decay: 2}
	for name, mut := range map[string]func(*ShardConfig){
		"negative index":     func(c *ShardConfig) { c.Index = -1 },
		"inverted range":     func(c *ShardConfig) { c.Lo, c.Hi = 3, 2 },
		"negative lo":        func(c *ShardConfig) { c.Lo = -1 },
		"inverted buffers":   func(c *ShardConfig) { c.BufLo, c.BufHi = 1, 0 },
		"buffer init length": func(c *ShardConfig) { c.BufHi = 3 },
		"no workers":         func(c *ShardConfig) { c.Workers = 0 },
		"negative step":      func(c *ShardConfig) { c.Step = -1 },
		"negative decay":     func(c *ShardConfig) { c.WeightDecay = -1 },
		"NaN decay":          func(c *ShardConfig) { c.WeightDecay = math.NaN() },
		"bad optimizer":      func(c *ShardConfig) { c.Optim.Kind = "lamb" },
		"bad rmsprop":        func(c *ShardConfig) { c.Optim.RMSProp.Decay = 1 },
		"bad schedule":       func(c *ShardConfig) { c.Schedule = "linear" },
		"negative lr":        func(c *ShardConfig) { c.LR = -1 },
		"overlapping decay":  func(c *ShardConfig) { c.Decay = []optim.Range{optim.Range{Lo: 0, Hi: 3}, optim.Range{Lo: 2, Hi: 4}} },
		"negative decay lo":  func(c *ShardConfig) { c.Decay = []optim.Range{optim.Range{Lo: -1, Hi: 3}} },
		"bad EMA":            func(c *ShardConfig) { c.EMA = &badEMA },
	} {
		c := ok
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := NewShard(c, make([]float32, max(c.Hi-c.Lo, 0)), nil); err == nil {
			t.Errorf("%s: NewShard: no error", name)
		}
	}
	if _, err := NewShard(ok, make([]float32, 3), nil); err == nil {
		t.Error("init of the wrong length: no error")
	}
	if _, err := NewShard(ok, []float32{0, 0, float32(math.NaN()), 0}, nil); err == nil {
		t.Error("NaN init: no error")
	}
}

// TestConcurrentPushPullApply drives many steps with workers pushing and
// pulling concurrently (run with -race).
func TestConcurrentPushPullApply(t *testing.T) {
	const n, W, steps = 64, 6, 20
	cfg := baseConfig(optim.KindRMSProp, n, W)
	cfg.BufHi, cfg.InitBuffers = 3, []float32{0, 0, 1}
	s := mustShard(t, cfg, vec(n, 1, 1), nil)
	ctx := testCtx(t)
	done := make(chan [2]int, W*steps) // (step, worker) pushed
	var wg sync.WaitGroup
	for w := range W {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for step := int64(0); step < steps; step++ {
				if _, _, err := s.Pull(ctx, step); err != nil {
					if errors.Is(err, ErrStale) { // a slow backup: skip ahead
						continue
					}
					t.Errorf("worker %d pull %d: %v", w, step, err)
					return
				}
				err := s.Push(step, w, vec(n, 1, 2, uint64(step), uint64(w)), vec(3, 1, 3, uint64(step), uint64(w)))
				if err != nil && !errors.Is(err, ErrStale) {
					t.Errorf("worker %d push %d: %v", w, step, err)
					return
				}
				if err == nil {
					done <- [2]int{int(step), w}
				}
			}
		}()
	}
	// Coordinator: the first 4 done reports of each step make it.
	var log []Entry
	pending := map[int][]int{}
	for step := 0; step < steps; {
		select {
		case d := <-done:
			if d[0] != step {
				continue // a late report of an already-applied step
			}
			pending[step] = append(pending[step], d[1])
			if len(pending[step]) == 4 {
				set := slices.Sorted(slices.Values(pending[step]))
				log = append(log, Entry{Step: int64(step), Workers: set})
				mustApply(t, s, int64(step), set)
				step++
			}
		case <-ctx.Done():
			t.Fatalf("step %d: %v", step, ctx.Err())
		}
	}
	wg.Wait()
	st := s.Stats()
	if st.Version != steps || st.Applied != steps || st.Used != 4*steps {
		t.Errorf("stats: %+v", st)
	}
	if st.Accepted != st.Used+st.DroppedBackup+st.Pending {
		t.Errorf("accepted %d != used %d + backups %d + pending %d", st.Accepted, st.Used, st.DroppedBackup, st.Pending)
	}
	// Replaying the log onto a fresh shard gives the same bits.
	fresh := mustShard(t, cfg, vec(n, 1, 1), nil)
	err := Replay(log, []*Shard{fresh}, func(step int64, w int) ([]float32, []float32) {
		return vec(n, 1, 2, uint64(step), uint64(w)), vec(3, 1, 3, uint64(step), uint64(w))
	})
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, "replayed", fresh.Checkpoint(), s.Checkpoint())
}

// TestNonFinite: the blockwise scan finds the first NaN or ±Inf (of any
// payload) wherever it is, at any alignment of the slice, exactly as the
// value by value scan, and passes every finite extreme.
func TestNonFinite(t *testing.T) {
	bad := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(0x7f800001), math.Float32frombits(0xffffffff), math.Float32frombits(0x7fc00000)}
	finite := []float32{math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32,
		math.Float32frombits(0x80000000), math.Float32frombits(0x7f7fffff), 1, -2.5}
	base := make([]float32, 64)
	for i := range base {
		base[i] = finite[i%len(finite)]
	}
	for off := range 3 {
		for n := 0; n+off <= len(base); n++ {
			v := base[off : off+n]
			if got := nonFinite(v); got != -1 {
				t.Fatalf("offset %d, %d finite values: nonFinite = %d", off, n, got)
			}
			for pos := range n {
				for _, b := range bad {
					old := v[pos]
					v[pos] = b
					second := min(pos+1+pos%5, n-1) // a later one must not hide the first
					old2 := v[second]
					v[second] = float32(math.NaN())
					if got, want := nonFinite(v), firstNonFinite(v); got != want || want != pos {
						t.Fatalf("offset %d, %d values, %08x at %d: nonFinite = %d, want %d", off, n, math.Float32bits(b), pos, got, pos)
					}
					v[second] = old2
					v[pos] = old
				}
			}
		}
	}
}

// TestPushOwned: a gradient received into a GradientBuffer and handed over
// with PushOwned makes the same step as one pushed with Push; the shard
// keeps it without a copy, and once the step is applied GradientBuffer
// lends that memory again (up to Workers gradients, new memory beyond).
// A refused PushOwned keeps nothing.
func TestPushOwned(t *testing.T) {
	const n, workers = 9, 2
	cfg := baseConfig(optim.KindRMSProp, n, workers)
	owned := mustShard(t, cfg, vec(n, 1, 1), nil)
	copied := mustShard(t, cfg, vec(n, 1, 1), nil)

	var lent [][]float32
	for w := range workers {
		g := owned.GradientBuffer()
		if len(g) != 0 || cap(g) != n {
			t.Fatalf("GradientBuffer: length %d, capacity %d, want 0 and %d", len(g), cap(g), n)
		}
		g = append(g, vec(n, 1, uint64(10+w))...)
		if err := owned.PushOwned(0, w, g, nil); err != nil {
			t.Fatal(err)
		}
		mustPush(t, copied, 0, w, vec(n, 1, uint64(10+w)), nil)
		lent = append(lent, g)
	}
	owned.mu.Lock()
	kept := &owned.pending[1].grad[0] == &lent[1][0]
	owned.mu.Unlock()
	if !kept {
		t.Error("PushOwned copied the gradient")
	}
	mustApply(t, owned, 0, []int{0, 1})
	mustApply(t, copied, 0, []int{0, 1})
	sameBitsT(t, "parameters after owned pushes", owned.Checkpoint().Params, copied.Checkpoint().Params)

	seen := map[*float32]bool{}
	for range workers {
		g := owned.GradientBuffer()
		seen[&g[:1][0]] = true
	}
	if !seen[&lent[0][0]] || !seen[&lent[1][0]] {
		t.Error("GradientBuffer did not lend the applied gradients' memory again")
	}
	if g := owned.GradientBuffer(); seen[&g[:1][0]] || cap(g) != n {
		t.Error("GradientBuffer lent one gradient's memory twice")
	}

	g := append(owned.GradientBuffer(), vec(n, 1, 3)...)
	if err := owned.PushOwned(0, 0, g, nil); !errors.Is(err, ErrStale) {
		t.Fatalf("PushOwned of an applied step: %v, want ErrStale", err)
	}
	if st := owned.Stats(); st.Pending != 0 {
		t.Errorf("a refused PushOwned left %d gradients pending", st.Pending)
	}
}
