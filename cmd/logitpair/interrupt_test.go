package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data/datatest"
)

// cancelAt is a progress writer that cancels the command's context once it
// has printed the progress line of a step (as Ctrl-C would, between steps).
type cancelAt struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	line   string
	cancel context.CancelFunc
}

func (w *cancelAt) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.line) {
		w.cancel()
	}
	return len(p), nil
}

// TestTrainInterruptSavesAndSaysHowToResume: Ctrl-C during train saves the
// checkpoint of the step reached, and the error names it, says
// "interrupted" (exit status 130) and gives the command that resumes, which
// then continues the run from that step.
func TestTrainInterruptSavesAndSaysHowToResume(t *testing.T) {
	dir := t.TempDir()
	dataDir, out := filepath.Join(dir, "mnist"), filepath.Join(dir, "my run")
	datatest.WriteMNIST(t, dataDir, 16, 1)
	args := []string{"train", "--dataset", "mnist", "--data-dir", dataDir, "--model-config", `{"conv1": 2, "conv2": 2, "hidden": 8}`,
		"--objective", "plain", "--batch", "4", "--threads", "1", "--log-every", "1", "--checkpoint-every", "100", "--steps", "6", "--out", out}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newRootCmd()
	w := &cancelAt{line: "step 2/6", cancel: cancel}
	cmd.SetOut(w)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	var ie *interruptedError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v, want an interruptedError", err)
	}
	if exitCode(err) != 130 || exitCode(errors.New("x")) != 1 {
		t.Errorf("exit codes %d, %d; want 130 for an interrupt, 1 otherwise", exitCode(err), exitCode(errors.New("x")))
	}
	model := filepath.Join(out, checkpoint.ModelFileName(2))
	msg := err.Error()
	for _, want := range []string{"interrupted at step 2 of 6: saved its checkpoint, " + model + "; resume with: logitpair train ",
		"--out='" + out + "'", `--model-config='{"conv1":2,"conv2":2,"hidden":8}'`, "--steps=6", "--resume"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "context canceled") {
		t.Errorf("%q still says context canceled", msg)
	}
	if _, err := os.Stat(model); err != nil {
		t.Fatalf("no checkpoint of the step reached: %v", err)
	}
	// The command it gives resumes the run from step 2.
	text, err := run(t, append(args, "--resume")...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "from step 2 to 6") {
		t.Errorf("the resumed run does not start at step 2:\n%s", text)
	}
	if p, err := checkpoint.ReadPointer(out); err != nil || p.Step != 6 {
		t.Errorf("after the resume latest.json = %+v (%v), want step 6", p, err)
	}
}

func TestResumeCommandQuotes(t *testing.T) {
	cmd := newRootCmd()
	train, _, err := cmd.Find([]string{"train"})
	if err != nil {
		t.Fatal(err)
	}
	if err := train.ParseFlags([]string{"--out", "runs/it's", "--force", "--augment=false", "--resume-from", "3", "--steps", "9", "--static-models", "a.safetensors,b.safetensors"}); err != nil {
		t.Fatal(err)
	}
	got := resumeCommand(train)
	want := `logitpair train --augment=false --out='runs/it'\''s' --static-models=a.safetensors,b.safetensors --steps=9 --resume`
	if got != want {
		t.Errorf("resumeCommand = %s\nwant            %s", got, want)
	}
}
