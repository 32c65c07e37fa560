//go:build cgo && linux && !static && !purego

package cuda

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// ProfileEnv names the environment variable that turns on the backend's op
// profiler: when it is "1" at New, every kernel launch and GEMM is followed
// by a stream synchronization and its wall time is added to a per-op table
// (kernels by name, GEMMs by shape), which ProfileReport prints. The
// synchronizations remove all overlap of host and device work, so a
// profiled run is slower than a normal one: the table says where device time
// and launch overhead go, not how fast the unprofiled run is.
const ProfileEnv = "LOGITPAIR_CUDA_PROFILE"

// profiler accumulates time per op. Used only with the backend entered.
type profiler struct {
	ops map[string]*opTime
}

type opTime struct {
	calls int
	total time.Duration
}

func newProfiler() *profiler {
	if os.Getenv(ProfileEnv) != "1" {
		return nil
	}
	return &profiler{ops: map[string]*opTime{}}
}

// timed runs launch, waits for the stream and charges the time to op.
func (b *Backend) timed(op string, launch func()) {
	if b.prof == nil {
		launch()
		return
	}
	t0 := time.Now()
	launch()
	b.sync()
	dt := time.Since(t0)
	o := b.prof.ops[op]
	if o == nil {
		o = &opTime{}
		b.prof.ops[op] = o
	}
	o.calls++
	o.total += dt
}

// ProfileReport returns the profiler's table, most expensive op first (the
// top n; n ≤ 0 for all), or "" when the profiler is off (see ProfileEnv).
func (b *Backend) ProfileReport(n int) string {
	b.enter()
	defer b.leave()
	if b.prof == nil {
		return ""
	}
	type row struct {
		name string
		opTime
	}
	var rows []row
	var total time.Duration
	for k, v := range b.prof.ops {
		rows = append(rows, row{k, *v})
		total += v.total
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].total != rows[j].total {
			return rows[i].total > rows[j].total
		}
		return rows[i].name < rows[j].name
	})
	if n > 0 && len(rows) > n {
		rows = rows[:n]
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-48s %8s %10s %9s %6s\n", "op", "calls", "total ms", "µs/call", "share")
	for _, r := range rows {
		fmt.Fprintf(&sb, "%-48s %8d %10.1f %9.1f %5.1f%%\n", r.name, r.calls, ms(r.total),
			float64(r.total.Microseconds())/float64(r.calls), 100*float64(r.total)/float64(max(total, 1)))
	}
	fmt.Fprintf(&sb, "%-48s %8s %10.1f\n", "all ops", "", ms(total))
	return sb.String()
}

// ResetProfile clears the profiler's table (e.g. after warm-up).
func (b *Backend) ResetProfile() {
	b.enter()
	defer b.leave()
	if b.prof != nil {
		b.prof.ops = map[string]*opTime{}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
