package rpc

import (
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/logitpair/logitpair/pkg/paramserver"
)

// TestApplyScaleAndCheckpointKeep: Apply's learning-rate scale reaches the
// shard (the step equals the same scaled step applied in memory; a bad
// scale is INVALID_ARGUMENT, a resend with another scale
// FAILED_PRECONDITION), and Checkpoint's keep list reaches the shard's
// store, which then spares those versions when it prunes.
func TestApplyScaleAndCheckpointKeep(t *testing.T) {
	const n = 10
	ctx := ctxFor(t, time.Minute)
	store, err := paramserver.NewFileStore(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	cfg := paramserver.DefaultConfig()
	cfg.Hi, cfg.Workers = n, 1
	init := make([]float32, n)
	for i := range init {
		init[i] = float32(i) / 7
	}
	remote, err := paramserver.NewLocal(cfg, init, store)
	if err != nil {
		t.Fatal(err)
	}
	local, err := paramserver.NewLocal(cfg, init, paramserver.NewMemStepStore())
	if err != nil {
		t.Fatal(err)
	}
	f := newPSFixture(t, remote, nil)
	for step := int64(0); step < 5; step++ {
		g := make([]float32, n)
		for i := range g {
			g[i] = float32(i+int(step)) / 3
		}
		if err := f.client.Push(ctx, step, 0, g, nil); err != nil {
			t.Fatal(err)
		}
		if err := local.S.Push(step, 0, g, nil); err != nil {
			t.Fatal(err)
		}
		if step == 0 {
			wantCode(t, "apply with a NaN scale", f.client.Apply(ctx, step, []int{0}, math.NaN()), codes.InvalidArgument, "bad learning-rate scale")
		}
		if err := f.client.Apply(ctx, step, []int{0}, 0.25); err != nil {
			t.Fatal(err)
		}
		if err := local.S.ApplyScaled(step, []int{0}, 0.25); err != nil {
			t.Fatal(err)
		}
		if err := f.client.Checkpoint(ctx, step+1, []int64{1}); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, "resend with another scale", f.client.Apply(ctx, 4, []int{0}, 1), codes.FailedPrecondition, "learning-rate scale")
	p, _, err := f.client.Pull(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := local.S.Pull(ctx, 5)
	sameBits(t, "parameters after scaled steps", p, want)
	held, err := f.client.Held(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(held, []int64{5, 4, 1}) {
		t.Errorf("held %v, want [5 4 1]: the 2 newest and the kept version 1", held)
	}
}
