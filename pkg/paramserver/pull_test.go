package paramserver

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/optim"
)

type pullResult struct {
	params, bufs []float32
	err          error
}

func pullAsync(ctx context.Context, s *Shard, step int64) <-chan pullResult {
	ch := make(chan pullResult, 1)
	go func() {
		p, b, err := s.Pull(ctx, step)
		ch <- pullResult{p, b, err}
	}()
	return ch
}

func TestPullLongPoll(t *testing.T) {
	const n = 5
	cfg := baseConfig(optim.KindRMSProp, n, 2)
	cfg.BufHi, cfg.InitBuffers = 1, []float32{4}
	s := mustShard(t, cfg, vec(n, 1, 1), nil)
	ctx := testCtx(t)

	// Step 0 is available at once, as a copy.
	p0, b0, err := s.Pull(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	p0[0], b0[0] = 1e9, 1e9
	if p, _, _ := s.Pull(ctx, 0); p[0] == 1e9 {
		t.Fatal("Pull returned the live parameters, not a copy")
	}

	// Pulls of steps 1 and 2 wait.
	r1, r2 := pullAsync(ctx, s, 1), pullAsync(ctx, s, 2)
	select {
	case r := <-r1:
		t.Fatalf("Pull(1) returned before Apply(0): %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	mustPush(t, s, 0, 0, vec(n, 1, 2), []float32{6})
	mustPush(t, s, 0, 1, vec(n, 1, 3), []float32{8})
	mustApply(t, s, 0, []int{0, 1})
	var r pullResult
	select {
	case r = <-r1:
	case <-ctx.Done():
		t.Fatal("Pull(1) did not return after Apply(0)")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	st := s.Checkpoint()
	sameBitsT(t, "pulled params", r.params, st.Params)
	sameBitsT(t, "pulled buffers", r.bufs, []float32{7})
	// Pull(2) is still waiting.
	select {
	case r := <-r2:
		t.Fatalf("Pull(2) returned at version 1: %+v", r)
	case <-time.After(20 * time.Millisecond):
	}
	mustPush(t, s, 1, 1, vec(n, 1, 4), []float32{1})
	mustApply(t, s, 1, []int{1})
	select {
	case r = <-r2:
		if r.err != nil {
			t.Fatal(r.err)
		}
	case <-ctx.Done():
		t.Fatal("Pull(2) did not return after Apply(1)")
	}

	// An old step: ErrStale with the version.
	_, _, err = s.Pull(ctx, 0)
	var e *Error
	if !errors.Is(err, ErrStale) || !errors.As(err, &e) || e.Version != 2 || e.Step != 0 {
		t.Errorf("Pull(0) at version 2: %v", err)
	}
}

// TestSnapshot: Snapshot returns the values Pull returns, the same memory
// to every caller of one version, and never sees it change: Apply and
// Restore make the next version in new memory, and a shard that had no
// snapshot taken keeps stepping in place. A stale step and a closed shard
// are refused as by Pull, and a snapshot counts as a pull.
func TestSnapshot(t *testing.T) {
	const n = 6
	cfg := baseConfig(optim.KindRMSProp, n, 1)
	cfg.BufHi, cfg.InitBuffers = 2, []float32{4, 5}
	s := mustShard(t, cfg, vec(n, 1, 1), nil)
	ctx := testCtx(t)

	p0, b0, err := s.Snapshot(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	q0, c0, err := s.Snapshot(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if &p0[0] != &q0[0] || &b0[0] != &c0[0] {
		t.Fatal("two snapshots of version 0 are different memory")
	}
	pp, pb, err := s.Pull(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	sameBitsT(t, "snapshot params", p0, pp)
	sameBitsT(t, "snapshot buffers", b0, pb)
	want0, wantB0 := append([]float32(nil), p0...), append([]float32(nil), b0...)
	start := s.Checkpoint()

	mustPush(t, s, 0, 0, vec(n, 1, 2), []float32{6, 7})
	mustApply(t, s, 0, []int{0})
	sameBitsT(t, "version 0's snapshot after Apply(0)", p0, want0)
	sameBitsT(t, "version 0's buffers after Apply(0)", b0, wantB0)
	p1, b1, err := s.Snapshot(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	st := s.Checkpoint()
	sameBitsT(t, "version 1's snapshot", p1, st.Params)
	sameBitsT(t, "version 1's buffers", b1, []float32{6, 7})
	if &p1[0] == &p0[0] {
		t.Fatal("version 1 was made in version 0's memory")
	}

	// Restore writes the state into new memory too.
	want1 := append([]float32(nil), p1...)
	if err := s.Restore(start); err != nil {
		t.Fatal(err)
	}
	sameBitsT(t, "version 1's snapshot after Restore", p1, want1)
	sameBitsT(t, "version 1's buffers after Restore", b1, []float32{6, 7})
	if p, _, err := s.Snapshot(ctx, 0); err != nil {
		t.Fatal(err)
	} else {
		sameBitsT(t, "the restored version 0", p, want0)
	}

	// Without a snapshot taken, Apply steps in place.
	mustPush(t, s, 0, 0, vec(n, 1, 2), []float32{6, 7})
	mustApply(t, s, 0, []int{0})
	s.mu.Lock()
	inPlace := &s.params[0]
	s.mu.Unlock()
	mustPush(t, s, 1, 0, vec(n, 1, 3), []float32{1, 2})
	mustApply(t, s, 1, []int{0})
	s.mu.Lock()
	moved := &s.params[0] != inPlace
	s.mu.Unlock()
	if moved {
		t.Error("Apply with no snapshot outstanding copied the parameters")
	}

	if _, _, err := s.Snapshot(ctx, 1); !errors.Is(err, ErrStale) {
		t.Errorf("Snapshot(1) at version 2: %v, want ErrStale", err)
	}
	if got := s.Stats().Pulls; got != 5 {
		t.Errorf("Stats.Pulls = %d, want 5 (4 snapshots, 1 pull; the stale one refused)", got)
	}
	s.Close()
	if _, _, err := s.Snapshot(ctx, 2); !errors.Is(err, ErrClosed) {
		t.Errorf("Snapshot on a closed shard: %v, want ErrClosed", err)
	}
}

func TestPullContext(t *testing.T) {
	cfg := baseConfig(optim.KindSGD, 3, 1)
	s := mustShard(t, cfg, vec(3, 1, 1), nil)
	// Already cancelled: ctx.Err() even for an available step.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Pull(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
	// Deadline reached while waiting.
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := s.Pull(ctx, 5); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired ctx: %v", err)
	}
	if d := time.Since(start); d > testTimeout {
		t.Errorf("Pull waited %v", d)
	}
	// Cancelled while waiting.
	ctx, cancel = context.WithCancel(context.Background())
	r := pullAsync(ctx, s, 1)
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case res := <-r:
		if !errors.Is(res.err, context.Canceled) {
			t.Errorf("cancelled while waiting: %v", res.err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Pull did not return after cancel")
	}
}

// TestCloseWakesPulls: Close ends waiting Pulls with ErrClosed and refuses
// later calls; no goroutine is left behind.
func TestCloseWakesPulls(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := baseConfig(optim.KindSGD, 3, 2)
	s, err := NewShard(cfg, vec(3, 1, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	var rs []<-chan pullResult
	for i := range 8 {
		rs = append(rs, pullAsync(ctx, s, int64(1+i%3)))
	}
	time.Sleep(10 * time.Millisecond)
	s.Close()
	s.Close()
	for _, r := range rs {
		select {
		case res := <-r:
			if !errors.Is(res.err, ErrClosed) {
				t.Errorf("waiting pull after Close: %v", res.err)
			}
		case <-ctx.Done():
			t.Fatal("Pull did not return after Close")
		}
	}
	if err := s.Push(0, 0, vec(3, 1, 2), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Push after Close: %v", err)
	}
	if err := s.Apply(0, []int{0}); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close: %v", err)
	}
	if _, _, err := s.Pull(ctx, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Pull after Close: %v", err)
	}
	if st := s.Checkpoint(); st.Version != 0 {
		t.Errorf("Checkpoint after Close: %+v", st)
	}
	deadline := time.Now().Add(testTimeout)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines, %d before", g, before)
	}
}

// TestCheckpointRestore: a checkpoint restored into a new shard (through a
// Store) and into the running shard continues bit for bit.
func TestCheckpointRestore(t *testing.T) {
	const n, W, nbuf = 40, 3, 4
	for _, kind := range optim.KnownKinds() {
		cfg := baseConfig(kind, n, W)
		cfg.Index, cfg.Lo, cfg.Hi = 1, 100, 100+n
		cfg.BufHi, cfg.InitBuffers = nbuf, vec(nbuf, 1, 9)
		cfg.WeightDecay, cfg.Decay = 0.01, []optim.Range{optim.Range{Lo: 0, Hi: 120}}
		ema := optim.DefaultEMA()
		cfg.EMA = &ema
		cfg.Schedule = "exp:3:0.5"
		step := func(s *Shard, t64 int64) {
			for w := range W {
				mustPush(t, s, t64, w, vec(n, 1, 1, uint64(t64), uint64(w)), vec(nbuf, 1, 2, uint64(t64), uint64(w)))
			}
			mustApply(t, s, t64, [][]int{{0, 2}, {1}, {0, 1}}[t64])
		}
		store := NewMemStore()
		s := mustShard(t, cfg, vec(n, 1, 3), store)
		for t64 := range int64(3) {
			step(s, t64)
		}
		if err := s.Save(); err != nil {
			t.Fatal(err)
		}
		ck := s.Checkpoint()
		// Buffered gradients are not part of the checkpoint.
		mustPush(t, s, 3, 0, vec(n, 1, 4), vec(nbuf, 1, 4))
		for t64 := int64(3); t64 < 6; t64++ {
			if t64 > 3 {
				mustPush(t, s, t64, 0, vec(n, 1, 4), vec(nbuf, 1, 4))
			}
			for w := 1; w < W; w++ {
				mustPush(t, s, t64, w, vec(n, 1, 1, uint64(t64), uint64(w)), vec(nbuf, 1, 2, uint64(t64), uint64(w)))
			}
			mustApply(t, s, t64, []int{0, 1, 2})
		}
		want := s.Checkpoint()

		// A fresh shard loading the store starts at the checkpoint.
		s2 := mustShard(t, cfg, make([]float32, n), store)
		sameState(t, kind+" loaded", s2.Checkpoint(), ck)
		// The running shard rolled back, with a buffered gradient pending.
		mustPush(t, s, 6, 1, vec(n, 1, 5), vec(nbuf, 1, 5))
		if err := s.Restore(ck); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Version != 3 || st.Pending != 0 || st.DroppedRestore != 1 {
			t.Errorf("%s: stats after restore: %+v", kind, st)
		}
		for _, sh := range []*Shard{s, s2} {
			for t64 := int64(3); t64 < 6; t64++ {
				mustPush(t, sh, t64, 0, vec(n, 1, 4), vec(nbuf, 1, 4))
				for w := 1; w < W; w++ {
					mustPush(t, sh, t64, w, vec(n, 1, 1, uint64(t64), uint64(w)), vec(nbuf, 1, 2, uint64(t64), uint64(w)))
				}
				mustApply(t, sh, t64, []int{0, 1, 2})
			}
			sameState(t, kind+" continued", sh.Checkpoint(), want)
		}
		// The checkpoint value does not alias the shard.
		ck2 := s.Checkpoint()
		ck2.Params[0], ck2.Optim[0].Data[0] = 1e9, 1e9
		sameState(t, kind+" after editing a checkpoint", s.Checkpoint(), want)
	}
}

func TestRestoreRefusesMismatch(t *testing.T) {
	const n = 6
	cfg := baseConfig(optim.KindRMSProp, n, 2)
	cfg.Lo, cfg.Hi = 10, 10+n
	cfg.BufHi, cfg.InitBuffers = 2, []float32{0, 1}
	ema := optim.DefaultEMA()
	cfg.EMA = &ema
	s := mustShard(t, cfg, vec(n, 1, 1), nil)
	mustPush(t, s, 0, 0, vec(n, 1, 2), []float32{1, 1})
	mustApply(t, s, 0, []int{0})
	good := s.Checkpoint()
	mustPush(t, s, 1, 1, vec(n, 1, 3), []float32{1, 1})
	for name, mut := range map[string]func(*ShardState){
		"other index":      func(st *ShardState) { st.Index = 1 },
		"other range":      func(st *ShardState) { st.Lo, st.Hi = 9, 9+n },
		"other buffers":    func(st *ShardState) { st.BufLo, st.BufHi = 1, 3 },
		"negative version": func(st *ShardState) { st.Version = -1 },
		"short params":     func(st *ShardState) { st.Params = st.Params[1:] },
		"short buffers":    func(st *ShardState) { st.Buffers = st.Buffers[1:] },
		"other optimizer":  func(st *ShardState) { st.OptimKind = optim.KindAdam },
		"missing slot":     func(st *ShardState) { st.Optim = st.Optim[:1] },
		"short slot":       func(st *ShardState) { st.Optim[1].Data = st.Optim[1].Data[1:] },
		"renamed slot":     func(st *ShardState) { st.Optim[0].Name = "v" },
		"no EMA":           func(st *ShardState) { st.EMA = nil },
		"short EMA":        func(st *ShardState) { st.EMA = st.EMA[1:] },
		"NaN param":        func(st *ShardState) { st.Params[2] = float32(nan()) },
		"NaN buffer":       func(st *ShardState) { st.Buffers[0] = float32(nan()) },
	} {
		before, stats := s.Checkpoint(), s.Stats()
		bad := good.Clone()
		bad.Version = 7
		mut(&bad)
		if err := s.Restore(bad); !errors.Is(err, ErrRestore) {
			t.Errorf("%s: Restore: %v", name, err)
		}
		sameState(t, name, s.Checkpoint(), before)
		if st := s.Stats(); st != stats {
			t.Errorf("%s: stats changed %+v -> %+v", name, stats, st)
		}
	}
	// A shard without EMA refuses a state with one.
	cfg2 := cfg
	cfg2.EMA = nil
	s2 := mustShard(t, cfg2, vec(n, 1, 1), nil)
	if err := s2.Restore(good); !errors.Is(err, ErrRestore) {
		t.Errorf("EMA into a shard without: %v", err)
	}
	// Save without a store.
	if err := s2.Save(); err == nil {
		t.Error("Save without a store: no error")
	}
}

func nan() float64 { var z float64; return z / z }
