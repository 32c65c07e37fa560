package checkpoint

import (
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
)

// run is a tiny model with an RMSProp optimizer and an EMA, whose state
// differs from a fresh one's.
func run(t *testing.T, seed int64) *Checkpoint {
	t.Helper()
	be := cpu.New(cpu.Options{Threads: 1})
	m, err := models.New(be, "madry-mnist", models.Config{"conv1": 2, "conv2": 2, "hidden": 8})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(seed)
	n := m.FlatLayout().Total
	oc, err := optim.DefaultConfig(optim.KindRMSProp)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := optim.New(oc, n)
	if err != nil {
		t.Fatal(err)
	}
	params := make([]float32, n)
	nn.Gather(be, m.Trainable(), params, false)
	ema, err := optim.NewEMA(optim.DefaultEMA(), params)
	if err != nil {
		t.Fatal(err)
	}
	grad := make([]float32, n)
	for i := range grad {
		grad[i] = float32(math.Sin(float64(int64(i) + seed)))
	}
	if err := opt.Step(params, grad, 0.01, 0); err != nil {
		t.Fatal(err)
	}
	if err := ema.Update(params, 0); err != nil {
		t.Fatal(err)
	}
	nn.Scatter(be, m.Trainable(), params)
	return &Checkpoint{Model: m, Opt: opt, EMA: ema, Meta: map[string]string{"objective": "plain"}}
}

// save writes c as the checkpoint of each of steps.
func save(t *testing.T, dir string, c *Checkpoint, steps ...int64) {
	t.Helper()
	for _, s := range steps {
		c.Step = s
		if _, err := Save(dir, *c, 1); err != nil {
			t.Fatal(err)
		}
	}
}

func sameState(t *testing.T, what string, a, b *Checkpoint) {
	t.Helper()
	if !reflect.DeepEqual(a.Model.StateDict().Tensors, b.Model.StateDict().Tensors) {
		t.Errorf("%s: the models differ", what)
	}
	if !reflect.DeepEqual(a.Opt.State(), b.Opt.State()) {
		t.Errorf("%s: the optimizer states differ", what)
	}
	if !reflect.DeepEqual(a.EMA.Values(), b.EMA.Values()) {
		t.Errorf("%s: the EMAs differ", what)
	}
}

// dirState is every file of dir with its content.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		out[e.Name()] = string(b)
	}
	return out
}

// truncate cuts path to half its size, as a crash or a full disk would.
func truncate(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// TestSaveRestore: Save writes the files the format names, latest.json
// points at the newest, and Restore brings model, optimizer and EMA back
// exactly, from latest.json or from a given step.
func TestSaveRestore(t *testing.T) {
	dir := t.TempDir()
	want := run(t, 1)
	save(t, dir, want, 2, 4)
	for _, f := range []string{"ckpt-00000004.safetensors", "ckpt-00000004.state.safetensors", "ckpt-00000004-ema.safetensors", "latest.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("Save did not write %s: %v", f, err)
		}
	}
	p, err := ReadPointer(dir)
	if err != nil || p != (Pointer{Step: 4, Model: ModelFileName(4), State: StateFileName(4), EMA: EMAFileName(4)}) {
		t.Fatalf("latest.json: %+v %v", p, err)
	}
	for _, from := range []int64{0, 2} {
		got := run(t, 2)
		step, err := Restore(dir, from, got)
		if err != nil {
			t.Fatal(err)
		}
		wantStep := int64(4) // latest.json's
		if from > 0 {
			wantStep = from
		}
		if step != wantStep {
			t.Fatalf("Restore(%d) returned step %d, want %d", from, step, wantStep)
		}
		sameState(t, "restored", got, want)
	}
	if steps, err := Steps(dir); err != nil || !slices.Equal(steps, []int64{4, 2}) {
		t.Fatalf("Steps: %v %v", steps, err)
	}
}

// TestRestoreNamesTheNewestIntact: a damaged newest checkpoint is a
// *CorruptError naming the newest intact one; nothing is loaded and no
// file changes.
func TestRestoreNamesTheNewestIntact(t *testing.T) {
	dir := t.TempDir()
	save(t, dir, run(t, 1), 2, 4, 6)
	truncate(t, filepath.Join(dir, StateFileName(6)))
	truncate(t, filepath.Join(dir, ModelFileName(4)))
	before := dirState(t, dir)
	got, fresh := run(t, 2), run(t, 2)
	_, err := Restore(dir, 0, got)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Step != 6 || !ce.Newest || !ce.HaveIntact || ce.Intact != 2 {
		t.Fatalf("got %v (%+v), want 6 corrupt and 2 intact", err, ce)
	}
	if !strings.Contains(err.Error(), "--resume-from 2") {
		t.Errorf("%q does not say how to resume", err)
	}
	sameState(t, "after a failed Restore", got, fresh)
	if !reflect.DeepEqual(dirState(t, dir), before) {
		t.Fatal("the failed Restore changed the directory")
	}
}

// TestBest: best.json keeps its format, and ReadBest reads it back.
func TestBest(t *testing.T) {
	dir := t.TempDir()
	c := run(t, 1)
	b := Best{Step: 3, RobustAccuracy: 0.25, CleanAccuracy: 0.5, Attack: "pgd"}
	if err := WriteBest(dir, ModelFile(c.Model, 3, nil), b); err != nil {
		t.Fatal(err)
	}
	j, _ := os.ReadFile(filepath.Join(dir, "best.json"))
	if want := `{"attack":"pgd","clean_accuracy":0.5,"robust_accuracy":0.25,"step":3}` + "\n"; string(j) != want {
		t.Fatalf("best.json is %q, want %q", j, want)
	}
	if got, ok := ReadBest(dir); !ok || got != b {
		t.Fatalf("ReadBest: %+v %v", got, ok)
	}
	if _, ok := ReadBest(t.TempDir()); ok {
		t.Fatal("ReadBest of an empty directory found a best model")
	}
}

// TestCheckOutAndRemoveRun: a directory with another run's files is
// refused for a new run unless forced; RemoveRun deletes exactly those files
// (checkpoints, latest.json, best.*) and leaves everything else.
func TestCheckOutAndRemoveRun(t *testing.T) {
	if err := CheckOut(filepath.Join(t.TempDir(), "missing"), false); err != nil {
		t.Fatalf("a missing --out: %v", err)
	}
	dir := t.TempDir()
	if err := CheckOut(dir, false); err != nil {
		t.Fatalf("an empty --out: %v", err)
	}
	c := run(t, 1)
	save(t, dir, c, 2, 4)
	if err := WriteBest(dir, ModelFile(c.Model, 4, nil), Best{Step: 4}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"train.log", "notes-ckpt.txt", "ckpt-notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "ckpt-00000009.safetensors"), 0o755); err != nil { // not a file: not the run's
		t.Fatal(err)
	}
	err := CheckOut(dir, false)
	for _, want := range []string{dir, "newest step 4", "--resume", "--force", "another --out"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckOut: %v, want it to name %q", err, want)
		}
	}
	if err := CheckOut(dir, true); err != nil {
		t.Fatalf("CheckOut with force: %v", err)
	}
	removed, err := RemoveRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if removed[0] != "latest.json" || len(removed) != 9 { // latest, best.json, best.safetensors, 2 × (model, EMA, state)
		t.Fatalf("removed %v", removed)
	}
	left := slices.Sorted(maps.Keys(dirState(t, dir)))
	want := []string{"ckpt-00000009.safetensors", "ckpt-notes.txt", "notes-ckpt.txt", "train.log"}
	if !reflect.DeepEqual(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	if err := CheckOut(dir, false); err != nil {
		t.Fatalf("after RemoveRun: %v", err)
	}
}
