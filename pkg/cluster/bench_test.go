package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/models"
)

// BenchmarkStraggler (issue 5, benchmark iii): 3 workers; first without a
// straggler (step time T), then with worker 2 slowed by an injected sleep of
// 2T per step (so it takes ≈ 3T), with b = 0 (every step waits for it) and
// b = 1 (its gradient is dropped). Reports each ms/step and the ratios to T.
// On a machine with fewer cores than workers, the workers' compute competes
// for cores: the no-straggler time T then includes that contention.
func BenchmarkStraggler(b *testing.B) {
	const steps = 20
	run := func(backups int, sleep time.Duration) float64 {
		cfg := tinyConfig(b)
		cfg.ModelConfig = models.Config{"conv1": 8, "conv2": 16, "hidden": 64}
		cfg.Objective, cfg.AttackSteps, cfg.Batch = "mpgd", 5, 8
		cfg.Steps = steps
		c := newClusterB(b, cfg, 3, backups, 2)
		if sleep > 0 {
			for _, s := range c.Shards {
				s.BeforePush = func(ctx context.Context, step int64, w int) error {
					if w == 2 && step >= 2 {
						time.Sleep(sleep / time.Duration(len(c.Shards)))
					}
					return nil
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		// Steps 0–1 warm up; time steps 2..steps-1 from the coordinator's view.
		var start time.Time
		c.Coord.SetCommittedHook(func(step int64) {
			if step == 1 {
				start = time.Now()
			}
		})
		if err := c.Run(ctx); err != nil {
			b.Fatal(err)
		}
		return float64(time.Since(start).Microseconds()) / 1000 / float64(steps-2)
	}
	for i := 0; i < b.N; i++ {
		t := run(0, 0)
		slow0 := run(0, time.Duration(2*t*float64(time.Millisecond)))
		slow1 := run(1, time.Duration(2*t*float64(time.Millisecond)))
		b.ReportMetric(t, "none-ms/step")
		b.ReportMetric(slow0, "b0-ms/step")
		b.ReportMetric(slow1, "b1-ms/step")
		b.ReportMetric(slow0/t, "b0/none")
		b.ReportMetric(slow1/t, "b1/none")
	}
}
