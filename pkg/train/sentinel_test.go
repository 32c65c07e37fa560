package train

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/sentinel"
)

// sentinelConfig is tinyConfig (ALP, RMSProp, EMA, weight decay) with a
// sentinel check every 2 steps, a checkpoint every step and keep 1: only
// the sentinel's protection keeps the last good checkpoint.
func sentinelConfig(t *testing.T) Config {
	c := tinyConfig(t)
	c.Steps, c.CheckpointEvery, c.Keep = 8, 1, 1
	c.SentinelEvery = 2
	return c
}

// script drives tr's sentinel with results from f(step, state before the
// check) and logs its progress into the returned buffer.
func script(tr *Trainer, f func(step int64, s sentinel.State) (single, multi float64)) *bytes.Buffer {
	var log bytes.Buffer
	tr.Progress = &log
	tr.sentinelMeasure = func() (sentinel.Result, error) {
		single, multi := f(tr.Step, tr.sent)
		return sentinel.Result{Clean: 0.9, SingleStep: single, MultiStep: multi, Examples: 4, SingleAttack: "scripted", MultiAttack: "scripted"}, nil
	}
	return &log
}

// collapseOnce: robust accuracy 0.5 everywhere except a collapse to 0.1
// at step 6 before any rollback.
func collapseOnce(step int64, s sentinel.State) (float64, float64) {
	if step == 6 && s.Rollbacks == 0 {
		return 0.3, 0.1
	}
	return 0.6, 0.5
}

// snapshot is a trainer's state: parameters, optimizer slots, EMA.
type snapshot struct {
	step        int64
	params, ema []float32
	opt         []optim.NamedState
}

func snap(tr *Trainer) snapshot {
	s := snapshot{step: tr.Step, params: append([]float32(nil), tr.Params()...), ema: append([]float32(nil), tr.EMA.Values()...)}
	for _, o := range tr.Opt.State() {
		s.opt = append(s.opt, optim.NamedState{Name: o.Name, Data: append([]float32(nil), o.Data...)})
	}
	return s
}

func sameSnapshot(t *testing.T, what string, got, want snapshot) {
	t.Helper()
	if got.step != want.step {
		t.Fatalf("%s: step %d, want %d", what, got.step, want.step)
	}
	bits(t, what+": parameters", got.params, want.params)
	bits(t, what+": EMA", got.ema, want.ema)
	for i := range want.opt {
		bits(t, what+": optimizer "+want.opt[i].Name, got.opt[i].Data, want.opt[i].Data)
	}
}

func ckptSteps(t *testing.T, dir string) []int64 {
	t.Helper()
	s, err := checkpoint.Steps(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSentinelRollbackRestoresTheLastGoodCheckpoint: the collapse at step
// 6 puts parameters, optimizer slots, EMA and step back exactly as they
// were at the last good check (step 4), with the learning rate halved from
// then on; latest.json and the rewritten checkpoint of step 4 carry the new
// state, the abandoned trajectory's checkpoints are gone, and with keep 1
// the last good checkpoint survived every pruning.
func TestSentinelRollbackRestoresTheLastGoodCheckpoint(t *testing.T) {
	c := sentinelConfig(t)
	c.Steps = 6
	tr := newTrainer(t, c)
	log := script(tr, collapseOnce)
	var at4 *snapshot
	var stepsAt6 []int64
	measure := tr.sentinelMeasure
	tr.sentinelMeasure = func() (sentinel.Result, error) {
		if tr.Step == 4 && at4 == nil {
			s := snap(tr)
			at4 = &s
		}
		if tr.Step == 6 && tr.sent.Rollbacks == 0 {
			stepsAt6 = ckptSteps(t, c.Out) // step 6 saved and pruned: 6 and the protected 4
		}
		return measure()
	}
	// Stop right after the rollback: the first gradient after it.
	var after *snapshot
	tr.W.data = batchHook{inner: tr.W.data, f: func(step int64) {
		if tr.sent.Rollbacks == 1 && after == nil {
			s := snap(tr)
			after = &s
		}
	}}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(stepsAt6, []int64{6, 4}) {
		t.Fatalf("checkpoints when step 6 was judged: %v, want [6 4] (keep 1 plus the last good one)", stepsAt6)
	}
	if at4 == nil || after == nil {
		t.Fatal("no rollback happened")
	}
	sameSnapshot(t, "after the rollback", *after, *at4)
	for _, want := range []string{"sentinel rollback 1 of at most 3", "step 6 tripped (collapse)", "10.00%", "rolling back to step 4", "scale 1 → 0.5"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	s := tr.Sentinel()
	if s.Rollbacks != 1 || s.LRScale != 0.5 || s.LastGood != 6 || s.Last.Step != 6 {
		t.Fatalf("state %+v", s)
	}
	if tr.LR(5) != 0.5*tr.Sched.LR(5) {
		t.Fatalf("learning rate %v, schedule %v", tr.LR(5), tr.Sched.LR(5))
	}
	// The two abandoned steps count in the compute: 6 + 2 steps taken.
	if comp, ok := tr.Compute(); !ok || comp.Steps != 8 || comp.ExamplesSeen != 8*int64(c.Batch) {
		t.Fatalf("compute %+v %v, want 8 steps", comp, ok)
	}
	if !strings.Contains(tr.SentinelSummary(), "1 rollbacks, learning rate scale 0.5") {
		t.Fatalf("summary %q", tr.SentinelSummary())
	}
	// The final checkpoint (6, judged good) carries the state.
	meta := readST(t, filepath.Join(c.Out, checkpoint.ModelFileName(6))).Metadata
	if got, ok, err := sentinel.ReadState(meta); !ok || err != nil || got.Rollbacks != 1 || got.LRScale != 0.5 {
		t.Fatalf("state in the final checkpoint: %+v %v %v", got, ok, err)
	}
}

// batchHook calls f before each batch (the start of a step's gradient).
type batchHook struct {
	inner Batcher
	f     func(step int64)
}

func (b batchHook) Batch(step int64, w, ws, n int, x []float32, y []int32) ([]int, error) {
	b.f(step)
	return b.inner.Batch(step, w, ws, n, x, y)
}

// TestSentinelRollbackFiles: right after the rollback, latest.json points
// at the rewritten last good checkpoint, whose metadata holds the new
// state, and the tripped checkpoint and those after the last good one are
// deleted.
func TestSentinelRollbackFiles(t *testing.T) {
	c := sentinelConfig(t)
	c.Steps, c.Keep = 5, 10
	tr := newTrainer(t, c)
	script(tr, collapseOnce)
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := ckptSteps(t, c.Out); !reflect.DeepEqual(got, []int64{5, 4, 3, 2, 1}) {
		t.Fatalf("checkpoints %v", got)
	}
	if _, err := tr.TrainStep(); err != nil {
		t.Fatal(err)
	}
	rolled, err := tr.sentinelCheck(true)
	if err != nil || !rolled {
		t.Fatalf("check at 6: rolled %v, %v", rolled, err)
	}
	if got := ckptSteps(t, c.Out); !reflect.DeepEqual(got, []int64{4, 3, 2, 1}) {
		t.Fatalf("checkpoints after the rollback %v, want 5 and 6 deleted", got)
	}
	p, err := checkpoint.ReadPointer(c.Out)
	if err != nil || p.Step != 4 {
		t.Fatalf("latest.json %+v %v", p, err)
	}
	s, ok, err := sentinel.ReadState(readST(t, filepath.Join(c.Out, p.Model)).Metadata)
	if !ok || err != nil || s.Rollbacks != 1 || s.LRScale != 0.5 || s.LastGood != 4 {
		t.Fatalf("state in the rewritten checkpoint %+v %v %v", s, ok, err)
	}
}

// TestSentinelLRScaleIsApplied: the step after a rollback is exactly a step
// at the schedule's learning rate times the scale: the same as a trainer
// resumed from the same checkpoint with --lr halved and no scale, and not
// the same as one at the full rate.
func TestSentinelLRScaleIsApplied(t *testing.T) {
	c := sentinelConfig(t)
	c.Steps, c.Keep = 5, 10
	tr := newTrainer(t, c)
	script(tr, collapseOnce)
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr.TrainStep()
	if rolled, err := tr.sentinelCheck(true); err != nil || !rolled {
		t.Fatalf("check at 6: rolled %v, %v", rolled, err)
	}
	if _, err := tr.TrainStep(); err != nil {
		t.Fatal(err)
	}
	resumed := func(lr, scale float64) []float32 {
		r := c
		r.ResumeFrom, r.LR = 4, lr
		o := newTrainer(t, r)
		if o.Step != 4 || o.Sentinel().LRScale != 0.5 || o.Sentinel().Rollbacks != 1 {
			t.Fatalf("resumed at %d with %+v", o.Step, o.Sentinel())
		}
		o.sent.LRScale = scale
		if _, err := o.TrainStep(); err != nil {
			t.Fatal(err)
		}
		return o.Params()
	}
	bits(t, "scaled step vs --lr halved", tr.Params(), resumed(c.LR/2, 1))
	bits(t, "scaled step vs the resumed scale", tr.Params(), resumed(c.LR, 0.5))
	full := resumed(c.LR, 1)
	same := true
	for i := range full {
		same = same && full[i] == tr.Params()[i]
	}
	if same {
		t.Fatal("the step at the full rate equals the scaled one: the test proves nothing")
	}
}

// TestSentinelResumeAndReplay: a run whose process stops between saving a
// check's checkpoint and judging it (the measurement fails), resumed, ends
// bit for bit where the uninterrupted run does, with the same sentinel
// state: the resumed trainer judges that checkpoint again, trips, and
// rolls back as the first would have. The same configuration run again
// gives the same run.
func TestSentinelResumeAndReplay(t *testing.T) {
	c := sentinelConfig(t)
	straight := newTrainer(t, c)
	script(straight, collapseOnce)
	if err := straight.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := straight.Sentinel(); s.Rollbacks != 1 || s.LastGood != 8 {
		t.Fatalf("straight run's state %+v", s)
	}

	c2 := c
	c2.Out = t.TempDir()
	again := newTrainer(t, c2)
	script(again, collapseOnce)
	if err := again.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	bits(t, "replay", again.Params(), straight.Params())

	c3 := c
	c3.Out = t.TempDir()
	first := newTrainer(t, c3)
	script(first, collapseOnce)
	measure := first.sentinelMeasure
	crash := errors.New("killed")
	first.sentinelMeasure = func() (sentinel.Result, error) {
		if first.Step == 6 {
			return sentinel.Result{}, crash
		}
		return measure()
	}
	if err := first.Run(context.Background()); !errors.Is(err, crash) {
		t.Fatalf("first part: %v", err)
	}
	if p, _ := checkpoint.ReadPointer(c3.Out); p.Step != 6 {
		t.Fatalf("latest checkpoint %d, want the unjudged 6", p.Step)
	}
	c3.Resume = true
	second := newTrainer(t, c3)
	if !second.recheck || second.Sentinel().LastGood != 4 {
		t.Fatalf("resumed: recheck %v, state %+v", second.recheck, second.Sentinel())
	}
	log := script(second, collapseOnce)
	if err := second.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "rolling back to step 4") {
		t.Fatalf("the resumed run did not judge step 6:\n%s", log)
	}
	bits(t, "resumed vs straight", second.Params(), straight.Params())
	if a, b := second.Sentinel(), straight.Sentinel(); !reflect.DeepEqual(a, b) {
		t.Fatalf("state %+v, straight %+v", a, b)
	}
}

// TestSentinelRollbackToTheStart: a gap at the first check rolls back to
// the initial state (the seed's initialization, a fresh optimizer), which
// has no checkpoint file before; the run then goes on at the lower rate.
func TestSentinelRollbackToTheStart(t *testing.T) {
	c := sentinelConfig(t)
	c.Steps = 2
	tr := newTrainer(t, c)
	init := snap(tr)
	log := script(tr, func(step int64, s sentinel.State) (float64, float64) {
		if s.Rollbacks == 0 {
			return 0.9, 0.1
		}
		return 0.3, 0.2
	})
	var after *snapshot
	tr.W.data = batchHook{inner: tr.W.data, f: func(int64) {
		if tr.sent.Rollbacks == 1 && after == nil {
			s := snap(tr)
			after = &s
		}
	}}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after == nil {
		t.Fatal("no rollback")
	}
	sameSnapshot(t, "after the rollback to the start", *after, init)
	if !strings.Contains(log.String(), "(gap)") || !strings.Contains(log.String(), "the initial state (step 0)") {
		t.Fatalf("log:\n%s", log)
	}
	if s := tr.Sentinel(); s.Rollbacks != 1 || s.LRScale != 0.5 || s.LastGood != 2 {
		t.Fatalf("state %+v", s)
	}
}

// TestSentinelTooManyRollbacks: a trip beyond --sentinel-max-rollbacks
// stops training with an error that says what to change and how to
// continue from the last good checkpoint, which is still there.
func TestSentinelTooManyRollbacks(t *testing.T) {
	c := sentinelConfig(t)
	c.SentinelMaxRollbacks = 1
	tr := newTrainer(t, c)
	script(tr, func(step int64, _ sentinel.State) (float64, float64) {
		if step == 6 {
			return 0.3, 0.1
		}
		return 0.6, 0.5
	})
	err := tr.Run(context.Background())
	if !errors.Is(err, sentinel.ErrTooManyRollbacks) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"training stopped", "after 1 rollbacks", "lower --lr", "--resume-from 4", checkpoint.ModelFileName(4)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(c.Out, checkpoint.ModelFileName(4))); err != nil {
		t.Fatal("the last good checkpoint is gone:", err)
	}
}

func TestSentinelConfig(t *testing.T) {
	c := DefaultConfig()
	if s := c.Sentinel(); s.On() || s != sentinel.DefaultConfig() {
		t.Fatalf("default sentinel %+v", s)
	}
	cases := map[string]func(*Config){
		"--sentinel-every":         func(c *Config) { c.SentinelEvery = -5 },
		"--sentinel-examples":      func(c *Config) { c.SentinelExamples = 0 },
		"--sentinel-steps":         func(c *Config) { c.SentinelSteps = 0 },
		"--sentinel-collapse":      func(c *Config) { c.SentinelCollapse = 2 },
		"--sentinel-max-gap":       func(c *Config) { c.SentinelMaxGap = -1 },
		"--sentinel-lr-factor":     func(c *Config) { c.SentinelLRFactor = 1.5 },
		"--sentinel-max-rollbacks": func(c *Config) { c.SentinelMaxRollbacks = -1 },
	}
	for want, mod := range cases {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
	tc := tinyConfig(t)
	tc.SentinelEvery = 10
	if _, err := NewTrainer(newTrainer(t, tinyConfig(t)).W.be, tc, nil, nil); err == nil || !strings.Contains(err.Error(), "needs validation data") {
		t.Fatalf("no validation data: %v", err)
	}
}
