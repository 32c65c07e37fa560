package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/checkpoint"
)

// TestErrorsSayWhatToDo: each mistake a new user makes gets an error that
// names the problem and the next command or file (issue 15): a missing
// dataset, a file that is not safetensors or an optimizer state given as a
// model, a config file with a key twice.
func TestErrorsSayWhatToDo(t *testing.T) {
	dir := t.TempDir()
	dataDir := writeData(t, dir)
	out := filepath.Join(dir, "run")
	mc := `{"conv1": 2, "conv2": 2, "hidden": 8}`
	if _, err := run(t, "train", "--dataset", "mnist", "--data-dir", dataDir, "--model-config", mc, "--objective", "plain",
		"--batch", "2", "--steps", "2", "--threads", "1", "--log-every", "0", "--out", out); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(out, checkpoint.ModelFileName(2))
	state := filepath.Join(out, checkpoint.StateFileName(2))
	latest := filepath.Join(out, checkpoint.PointerFile)
	gone, empty := filepath.Join(dir, "gone"), filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)
	emptyFile := filepath.Join(dir, "model.safetensors")
	dup := filepath.Join(dir, "dup.yaml")
	for p, b := range map[string]string{emptyFile: "", dup: "steps: 3\nbatch: 2\nsteps: 4\n"} {
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	trainArgs := func(more ...string) []string {
		return append([]string{"train", "--model-config", mc, "--objective", "plain", "--batch", "2", "--steps", "1",
			"--threads", "1", "--out", filepath.Join(dir, "other")}, more...)
	}
	evalArgs := func(more ...string) []string {
		return append([]string{"eval", "--data-dir", dataDir, "--examples", "2", "--steps", "0", "--threads", "1"}, more...)
	}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"train, no data folder", trainArgs("--data-dir", gone),
			[]string{"mnist train split not found in " + gone, gone + " does not exist", "logitpair data fetch mnist --dir " + gone}},
		{"train, empty data folder", trainArgs("--dataset", "fashion-mnist", "--data-dir", empty),
			[]string{"missing train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]", "logitpair data fetch fashion-mnist --dir " + empty}},
		{"train, no CIFAR-10", trainArgs("--dataset", "cifar10", "--data-dir", empty),
			[]string{"cifar10 train split not found", "`logitpair data fetch` cannot get it", "cifar-10-binary.tar.gz"}},
		{"eval, no data", evalArgs("--checkpoint", model, "--data-dir", gone),
			[]string{"mnist test split not found", "logitpair data fetch mnist --dir " + gone}},
		{"eval, latest.json as the model", evalArgs("--checkpoint", latest),
			[]string{latest + " is not a safetensors file (it starts with \"{", "JSON?", "a logitpair checkpoint's model is ckpt-NNNNNNNN.safetensors", "the newest there is " + model}},
		{"eval, empty file", evalArgs("--checkpoint", emptyFile),
			[]string{emptyFile + " is not a safetensors file (it is empty)"}},
		{"eval, the run folder", evalArgs("--checkpoint", out),
			[]string{out + " is a directory", "the newest there is " + model}},
		{"eval, optimizer state", evalArgs("--checkpoint", state),
			[]string{state + " is the optimizer state of the checkpoint of step 2", "give its model file, " + model}},
		{"eval --source, optimizer state", evalArgs("--checkpoint", model, "--steps", "1", "--source", state),
			[]string{"--source: " + state + " is the optimizer state"}},
		{"train --static-models, optimizer state", trainArgs("--data-dir", dataDir, "--objective", "ensemble-adv", "--static-models", state),
			[]string{state + " is the optimizer state", model}},
		{"train --init-from, optimizer state", trainArgs("--data-dir", dataDir, "--init-from", state),
			[]string{"--init-from: " + state + " is the optimizer state", model}},
		{"train --config with a key twice", trainArgs("--data-dir", dataDir, "--config", dup),
			[]string{"config " + dup + ": duplicate key: line 3: key \"steps\" given again"}},
	}
	for _, c := range cases {
		_, err := run(t, c.args...)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", c.name, err, w)
			}
		}
		for _, bad := range []string{"give --model", "exceeds the", "header length"} {
			if strings.Contains(err.Error(), bad) {
				t.Errorf("%s: %q still says %q", c.name, err, bad)
			}
		}
	}
}
