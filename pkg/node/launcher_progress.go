package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/logitpair/logitpair/pkg/progress"
	"github.com/logitpair/logitpair/pkg/statuspage"
)

// DefaultProgressEvery is how often `cluster local` prints its progress
// summary when its output is not a terminal.
const DefaultProgressEvery = 30 * time.Second

// terminalPoll is how often the live bar of `cluster local` on a terminal
// asks the coordinator for its status.
const terminalPoll = 2 * time.Second

// addressLines are the lines `cluster local` prints once the cluster runs:
// the coordinator's status page and metrics, and where the other
// processes' addresses are.
func (c *Cluster) addressLines() []string {
	var lines []string
	if c.Coord != nil && c.Coord.Addr.HTTP != "" {
		h := "http://" + c.Coord.Addr.HTTP
		lines = append(lines, fmt.Sprintf("status page: %s/ (JSON: %s/status.json); coordinator metrics: %s/metrics", h, h, h))
	}
	var shards []string
	for k, p := range c.PS {
		if p != nil && p.Addr.HTTP != "" {
			shards = append(shards, fmt.Sprintf("ps-%d http://%s/metrics", k, p.Addr.HTTP))
		}
	}
	if len(shards) > 0 {
		lines = append(lines, "shard metrics: "+strings.Join(shards, ", "))
	}
	lines = append(lines, fmt.Sprintf("every process's addresses (its /metrics under \"http\"): %s", filepath.Join(c.L.Dir, "addr", "*.json")))
	return lines
}

// clusterStatus is the part of the coordinator's /status.json the progress
// summary reads (statuspage.Snapshot; its history points' terms are JSON
// null where NaN, which statuspage.Point does not read back).
type clusterStatus struct {
	Run      statuspage.Run `json:"run"`
	StepRate float64        `json:"step_rate"`
	History  []statusPoint  `json:"history"`
}

// statusPoint is one committed step of /status.json's history.
type statusPoint struct {
	Step     int64    `json:"step"`
	Loss     *float64 `json:"loss"`
	CleanAcc *float64 `json:"clean_acc"`
	AdvAcc   *float64 `json:"adv_acc"`
}

// getStatus decodes the coordinator's /status.json into v, waiting at
// most timeout.
func (c *Cluster) getStatus(timeout time.Duration, v any) error {
	if c.Coord == nil || c.Coord.Addr.HTTP == "" {
		return errors.New("the coordinator serves no HTTP endpoint")
	}
	client := &http.Client{Timeout: timeout}
	resp, err := client.Get("http://" + c.Coord.Addr.HTTP + "/status.json")
	if err != nil {
		return fmt.Errorf("the coordinator's status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the coordinator's status: HTTP %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v); err != nil {
		return fmt.Errorf("the coordinator's status: %w", err)
	}
	return nil
}

// summaryLine is one progress summary of `cluster local` from the
// coordinator's status: the step out of the run's, the coordinator's step
// rate (over its recent window), the mean loss and batch accuracies of the
// steps committed after step since (the newest step's when none is), the
// elapsed time and the ETA (the steps left at that rate); then the live
// workers and the last checkpoint, and why the run is paused.
func summaryLine(st clusterStatus, since int64, elapsed time.Duration) string {
	r := st.Run
	var b strings.Builder
	fmt.Fprintf(&b, "progress: step %d/%d", r.Step, r.Steps)
	if r.Steps > 0 {
		fmt.Fprintf(&b, " (%.0f%%)", 100*min(float64(r.Step)/float64(r.Steps), 1))
	}
	fmt.Fprintf(&b, "  %.2f steps/s", st.StepRate)
	var pts []statusPoint
	for _, p := range st.History {
		if p.Step > since {
			pts = append(pts, p)
		}
	}
	if len(pts) == 0 && len(st.History) > 0 {
		pts = st.History[len(st.History)-1:]
	}
	for _, t := range []struct {
		name, format string
		scale        float64 // accuracies in percent, as in every human-readable output
		v            func(statusPoint) *float64
	}{
		{"loss", "%.4f", 1, func(p statusPoint) *float64 { return p.Loss }},
		{"clean acc", "%.2f%%", 100, func(p statusPoint) *float64 { return p.CleanAcc }},
		{"adv acc", "%.2f%%", 100, func(p statusPoint) *float64 { return p.AdvAcc }},
	} {
		sum, n := 0.0, 0
		for _, p := range pts {
			if v := t.v(p); v != nil && !math.IsNaN(*v) {
				sum += *v
				n++
			}
		}
		if n > 0 {
			fmt.Fprintf(&b, "  %s "+t.format, t.name, t.scale*sum/float64(n))
		}
	}
	eta := progress.ETA(r.Steps-r.Step, st.StepRate)
	if r.Phase == statuspage.PhasePaused || r.Phase == statuspage.PhaseStarting {
		eta = -1
	}
	fmt.Fprintf(&b, "  %s", progress.Stats{Elapsed: elapsed, ETA: eta}.TimeString())
	fmt.Fprintf(&b, "  [%d/%d workers live", r.LiveWorkers, r.Workers)
	if r.LastCheckpoint > 0 {
		fmt.Fprintf(&b, ", checkpoint at step %d", r.LastCheckpoint)
	}
	b.WriteString("]")
	switch r.Phase {
	case statuspage.PhasePaused:
		b.WriteString("  paused")
		if r.Reason != "" {
			b.WriteString(": " + r.Reason)
		}
	case statuspage.PhaseStarting:
		b.WriteString("  starting")
	}
	return b.String()
}

// reportProgress prints a progress summary from the coordinator's status
// every ProgressEvery (on a terminal: redraws a live bar every
// terminalPoll instead) until ctx ends. start is when the run started.
func (c *Cluster) reportProgress(ctx context.Context, start time.Time) {
	l := c.L
	if l.Out == nil || l.ProgressEvery < 0 {
		return
	}
	every := l.ProgressEvery
	if every == 0 {
		every = DefaultProgressEvery
	}
	if l.Terminal {
		every = terminalPoll
	}
	p := progress.New(progress.Options{Out: l.Out, Label: "cluster", Unit: "steps", Total: l.Train.Steps, Terminal: l.Terminal})
	defer p.Close()
	tick := time.NewTicker(every)
	defer tick.Stop()
	since := int64(-1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var st clusterStatus
		if err := c.getStatus(min(every, 10*time.Second), &st); err != nil {
			continue // the coordinator may be restarting; the next tick tries again
		}
		line := summaryLine(st, since, time.Since(start))
		if p.Terminal() {
			p.Draw(st.Run.Step, line)
		} else {
			p.Println(line)
		}
		if n := len(st.History); n > 0 {
			since = st.History[n-1].Step
		}
	}
}
