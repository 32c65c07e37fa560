package train

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
)

// dirState is every file of dir with a hash of its content.
func dirState(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][32]byte{}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		out[e.Name()] = sha256.Sum256(b)
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

// TestResumeWithACorruptNewestCheckpoint: --resume on a directory whose
// newest checkpoint is damaged fails with an error that says the newest is
// corrupt, what was wrong, and names the newest intact checkpoint and how to
// resume from it; nothing in the directory changes. --resume-from that step
// then continues the run bit for bit.
func TestResumeWithACorruptNewestCheckpoint(t *testing.T) {
	c := tinyConfig(t)
	c.Objective, c.CheckpointEvery, c.Keep = "plain", 2, 10
	straight := newTrainer(t, c)
	if err := straight.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Checkpoints of steps 2, 4 and 6; step 6's model file is cut short.
	truncate(t, filepath.Join(c.Out, checkpoint.ModelFileName(6)))
	before := dirState(t, c.Out)

	r := c
	r.Resume = true
	_, err := NewTrainer(straight.W.be, r, nil, nil)
	var ce *checkpoint.CorruptError
	if !errors.As(err, &ce) || ce.Step != 6 || !ce.Newest || !ce.HaveIntact || ce.Intact != 4 {
		t.Fatalf("got %v (%+v), want the newest (6) corrupt and 4 intact", err, ce)
	}
	for _, want := range []string{"newest checkpoint", "step 6", "is corrupt", checkpoint.ModelFileName(6), "newest intact checkpoint is step 4", "--resume-from 4", "nothing was deleted"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	t.Log(err)
	if after := dirState(t, c.Out); !reflect.DeepEqual(before, after) {
		t.Fatal("the failed resume changed the directory")
	}

	// Step 4's state damaged too: the newest intact one is 2.
	truncate(t, filepath.Join(c.Out, checkpoint.StateFileName(4)))
	if _, err := NewTrainer(straight.W.be, r, nil, nil); !errors.As(err, &ce) || ce.Intact != 2 {
		t.Fatalf("got %v, want 2 named as intact", err)
	}
	// --resume-from a damaged older step says so, and names the one below.
	r.ResumeFrom = 4
	if _, err := NewTrainer(straight.W.be, r, nil, nil); !errors.As(err, &ce) || ce.Step != 4 || ce.Newest || ce.Intact != 2 ||
		!strings.Contains(err.Error(), "checkpoint of step 4") {
		t.Fatalf("--resume-from 4: got %v", err)
	}
	r.ResumeFrom = 5
	if _, err := NewTrainer(straight.W.be, r, nil, nil); err == nil || !strings.Contains(err.Error(), "no checkpoint of step 5") {
		t.Fatalf("--resume-from 5: got %v", err)
	}

	// --resume-from 2 continues to step 6 exactly as the straight run did.
	r.ResumeFrom, r.Resume = 2, false
	resumed := newTrainer(t, r)
	if resumed.Step != 2 {
		t.Fatalf("resumed at %d, want 2", resumed.Step)
	}
	if err := resumed.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	bits(t, "parameters", resumed.Params(), straight.Params())
	if p, err := checkpoint.ReadPointer(c.Out); err != nil || p.Step != 6 {
		t.Fatalf("latest.json after the resumed run: %+v %v", p, err)
	}
}

// TestResumeWithACorruptPointer: a damaged latest.json names the newest
// checkpoint whose files are whole.
func TestResumeWithACorruptPointer(t *testing.T) {
	c := tinyConfig(t)
	c.Objective, c.Steps, c.CheckpointEvery, c.Keep = "plain", 4, 2, 10
	if err := newTrainer(t, c).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Out, "latest.json"), []byte(`{"step": 4, "mod`), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Resume = true
	_, err := NewTrainer(cpu.New(cpu.Options{Threads: 1}), c, nil, nil)
	var ce *checkpoint.CorruptError
	if !errors.As(err, &ce) || ce.Step != -1 || ce.Intact != 4 || !strings.Contains(err.Error(), "latest.json") || !strings.Contains(err.Error(), "--resume-from 4") {
		t.Fatalf("got %v", err)
	}
	// No intact checkpoint at all.
	for _, s := range []int64{2, 4} {
		truncate(t, filepath.Join(c.Out, checkpoint.ModelFileName(s)))
	}
	if _, err := NewTrainer(cpu.New(cpu.Options{Threads: 1}), c, nil, nil); !errors.As(err, &ce) || ce.HaveIntact ||
		!strings.Contains(err.Error(), "no intact checkpoint") {
		t.Fatalf("got %v", err)
	}
}
