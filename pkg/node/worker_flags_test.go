package node

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestWorkerSyntheticComputeFlag: --synthetic-compute switches the worker to
// the synthetic computer (0 included: a benchmark of the overhead alone),
// its absence keeps the training step, and a negative length is refused
// before the worker runs, naming the flag.
func TestWorkerSyntheticComputeFlag(t *testing.T) {
	parse := func(args ...string) (*WorkerOptions, error) {
		var got *WorkerOptions
		cmd := workerCommand(func(o WorkerOptions) error { got = &o; return nil })
		cmd.SetArgs(append([]string{"--coordinator", "127.0.0.1:1"}, args...))
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SilenceUsage = true
		return got, cmd.Execute()
	}
	for _, c := range []struct {
		args []string
		want *time.Duration
	}{
		{nil, nil},
		{[]string{"--synthetic-compute", "20ms"}, new(20 * time.Millisecond)},
		{[]string{"--synthetic-compute=0s"}, new(time.Duration(0))},
	} {
		o, err := parse(c.args...)
		if err != nil || o == nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if (o.SyntheticCompute == nil) != (c.want == nil) || (c.want != nil && *o.SyntheticCompute != *c.want) {
			t.Errorf("%v: SyntheticCompute = %v, want %v", c.args, o.SyntheticCompute, c.want)
		}
	}
	o, err := parse("--synthetic-compute", "-5ms")
	if err == nil || !strings.Contains(err.Error(), "--synthetic-compute must be ≥ 0") || o != nil {
		t.Fatalf("negative: ran %v, error %v; want a refusal naming the flag", o != nil, err)
	}
}
