package plan

import (
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/paramserver"
)

// BenchmarkShardApply measures the two rates of a shard's Apply that the
// model's defaults come from (DefaultMeanRate, DefaultApplyRate): it times
// paramserver.Shard.Apply on n elements with the mean of 1 and of 8 pushed
// gradients, under the shard's default configuration (the paper's RMSProp,
// no weight decay, no EMA, no buffers), and fits t(N) = n·N/R_mean + n/R_apply:
//
//	R_mean  = 7n / (t(8) − t(1))        gradient elements averaged per second
//	R_apply = n / (t(1) − n/R_mean)     elements updated per second
//
// Run it on one core, as a shard's Apply is (the mean is one loop):
//
//	go test -run '^$' -bench ShardApply -cpu 1 -count 5 ./pkg/plan/
func BenchmarkShardApply(b *testing.B) {
	const n = 1 << 21
	grad := make([]float32, n)
	for i := range grad {
		grad[i] = float32(i%7) * 1e-3
	}
	shard := func(workers int) *paramserver.Shard {
		cfg := paramserver.DefaultConfig()
		cfg.Hi, cfg.Workers = n, workers
		s, err := paramserver.NewShard(cfg, make([]float32, n), nil)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	one, eight := shard(1), shard(8)
	set8 := []int{0, 1, 2, 3, 4, 5, 6, 7}
	var t1, t8 time.Duration
	apply := func(s *paramserver.Shard, step int64, set []int) time.Duration {
		for _, w := range set {
			if err := s.Push(step, w, grad, nil); err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now()
		if err := s.Apply(step, set); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t1 += apply(one, int64(i), []int{0})
		t8 += apply(eight, int64(i), set8)
	}
	mean := 7 * float64(n) * float64(b.N) / (t8 - t1).Seconds()
	update := float64(n) * float64(b.N) / (t1.Seconds() - float64(n)*float64(b.N)/mean)
	b.ReportMetric(mean, "mean-elem/s")
	b.ReportMetric(update, "apply-elem/s")
}
