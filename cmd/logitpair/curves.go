package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/logitpair/logitpair/pkg/history"
	"github.com/logitpair/logitpair/pkg/metrics"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/sentinel"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/trainstatus"
)

// curves wires a single-process run's curves: the history file in its
// --out (every record the trainer makes), and with addr the /metrics and
// status page (trainstatus). The returned function marks the run done and
// stops both; call it when Run returns.
func curves(ctx context.Context, cmd *cobra.Command, tr *train.Trainer, c train.Config, addr string) (func(), error) {
	hw, err := history.Open(c.Out)
	if err != nil {
		return nil, err
	}
	warned := false
	write := func(r history.Record) {
		if err := hw.Write(r); err != nil && !warned {
			warned = true // once: the run goes on without its history
			fmt.Fprintf(cmd.ErrOrStderr(), "WARN %v; the run goes on, the rest of its history is not recorded\n", err)
		}
	}
	tr.Record = write
	if addr == "" {
		return func() { hw.Close() }, nil
	}
	reg := metrics.NewRegistry()
	var sent *sentinel.State
	if tr.SentinelSummary() != "" { // the sentinel is on, or the resumed run had one
		s := tr.Sentinel()
		sent = &s
	}
	live, err := trainstatus.New(reg, tr.Step, c.Steps, c.Sentinel(), sent)
	if err != nil {
		hw.Close()
		return nil, err
	}
	tr.SentinelMetrics = live.Sentinel
	onStep := tr.OnStep
	tr.OnStep = func(step int64, t objective.Terms) {
		live.Step(step, t)
		if onStep != nil {
			onStep(step, t)
		}
	}
	tr.Record = func(r history.Record) {
		write(r)
		live.Record(r, tr.Sentinel())
	}
	tr.OnSave = live.Checkpointed
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(cmd.ErrOrStderr()), zap.WarnLevel))
	hs, err := live.Serve(ctx, addr, reg, log)
	if err != nil {
		hw.Close()
		return nil, err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "INFO serving /metrics and the status page on http://%s/\n", hs.Addr())
	return func() {
		live.Done()
		hs.Close()
		hw.Close()
	}, nil
}
