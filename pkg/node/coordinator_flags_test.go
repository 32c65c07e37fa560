package node

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCoordinatorCommand parses args as `coordinator` would and returns the
// options it would run with (nil when it refused to run) and the error.
func runCoordinatorCommand(t *testing.T, args ...string) (*CoordinatorOptions, error) {
	t.Helper()
	var got *CoordinatorOptions
	cmd := coordinatorCommand(func(o CoordinatorOptions) error { got = &o; return nil })
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SilenceUsage = true
	return got, cmd.Execute()
}

// TestCoordinatorRefusesTrainingFlagsItIgnores: --out, --resume,
// --validate-every, --validate-examples and --threads, given on the
// coordinator's command line, stop it before it runs with an error naming
// the flag and what to use instead; the same keys in a --config file (shared
// with `logitpair train`) are accepted, and the flags the coordinator does use
// still work.
func TestCoordinatorRefusesTrainingFlagsItIgnores(t *testing.T) {
	for _, c := range []struct {
		flag    string
		args    []string
		instead string
	}{
		{"--out", []string{"--out", "runs/x"}, "--dir"},
		{"--resume", []string{"--resume"}, "same --dir"},
		{"--resume", []string{"--resume=false"}, "same --dir"}, // explicit, even when off
		{"--validate-every", []string{"--validate-every", "100"}, "logitpair eval"},
		{"--validate-examples", []string{"--validate-examples", "500"}, "logitpair eval"},
		{"--threads", []string{"--threads", "4"}, "logitpair worker"},
		{"--resume-from", []string{"--resume-from", "3"}, "newest consistent checkpoint"},
		{"--threads", []string{"--dir", t.TempDir(), "--steps", "10", "--threads=0"}, "logitpair worker"},
	} {
		o, err := runCoordinatorCommand(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.flag+" is not used by the coordinator") || !strings.Contains(err.Error(), c.instead) {
			t.Errorf("%v: %v, want an error naming %s and %q", c.args, err, c.flag, c.instead)
		}
		if o != nil {
			t.Errorf("%v: the coordinator ran", c.args)
		}
	}

	// A config file setting them (as `cluster local`'s and the deployments'
	// do) is fine; so are the training flags the coordinator uses.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "train.yaml")
	if err := os.WriteFile(cfg, []byte("out: runs/shared\nresume: true\nvalidate-every: 100\nvalidate-examples: 200\nthreads: 3\nsteps: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	coordDir := filepath.Join(dir, "coordinator")
	o, err := runCoordinatorCommand(t, "--config", cfg, "--dir", coordDir, "--keep", "2", "--checkpoint-every", "3", "--log-every", "1")
	if err != nil {
		t.Fatalf("config file with the ignored keys: %v", err)
	}
	if o == nil || o.Dir != coordDir || o.Train.Steps != 7 || o.Train.Keep != 2 || o.Train.CheckpointEvery != 3 || o.Train.LogEvery != 1 {
		t.Fatalf("options %+v", o)
	}
	if o, err := runCoordinatorCommand(t, "--dir", coordDir, "--steps", "5"); err != nil || o == nil || o.Train.Steps != 5 {
		t.Fatalf("plain flags: %+v %v", o, err)
	}
	// The sentinel's keys are the coordinator's (it checks its checkpoints),
	// on the command line as in a config file.
	if o, err := runCoordinatorCommand(t, "--dir", coordDir, "--checkpoint-every", "50", "--sentinel-every", "100", "--sentinel-max-gap", "0.3",
		"--sentinel-examples", "200", "--sentinel-steps", "7", "--sentinel-collapse", "0.4", "--sentinel-lr-factor", "0.25", "--sentinel-max-rollbacks", "2"); err != nil || o == nil ||
		o.Train.SentinelEvery != 100 || o.Train.SentinelMaxGap != 0.3 || o.Train.SentinelExamples != 200 || o.Train.SentinelSteps != 7 ||
		o.Train.SentinelCollapse != 0.4 || o.Train.SentinelLRFactor != 0.25 || o.Train.SentinelMaxRollbacks != 2 {
		t.Fatalf("--sentinel-*: %+v %v", o, err)
	}
	if err := os.WriteFile(cfg, []byte("sentinel-every: 60\ncheckpoint-every: 20\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err := runCoordinatorCommand(t, "--config", cfg, "--dir", coordDir); err != nil || o == nil || o.Train.SentinelEvery != 60 {
		t.Fatalf("sentinel-every in a config file: %+v %v", o, err)
	}
	if o, err := runCoordinatorCommand(t, "--dir", coordDir, "--allow-config-change", "log-every,checkpoint_every", "--allow-config-change", "steps"); err != nil ||
		o == nil || strings.Join(o.AllowConfigChange, " ") != "log-every checkpoint_every steps" {
		t.Fatalf("--allow-config-change: %+v %v", o, err)
	}
}
