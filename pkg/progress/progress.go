// Package progress reports the progress of long work — training steps,
// evaluated examples, a cluster's committed steps — with the work done out
// of its total, the rate, the elapsed time and an ETA.
//
// On a terminal a Progress draws one live bar (github.com/schollz/progressbar)
// that it redraws in place; otherwise it prints plain lines, every Every
// units or every Interval, whichever comes first, so that logs and CI output
// stay readable. The ETA is the remaining work over the rate of a recent
// window (Meter), not of the whole run, so a slow start (data loading, a
// cluster's processes joining) does not skew it for long.
//
// The clock and the writer are injected (Options.Now, Options.Out): tests
// drive both.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// DefaultWindow is the rate window of a Meter whose Options leave it unset.
const DefaultWindow = 30 * time.Second

// redrawEvery bounds how often the terminal bar is redrawn.
const redrawEvery = 100 * time.Millisecond

// Stats is one observation of the work.
type Stats struct {
	// Done and Total are the work done and the whole work, in units
	// (Total ≤ 0: unknown).
	Done, Total int64
	// Rate is units per second over the recent window (0: not known yet).
	Rate float64
	// Elapsed is the time since the work started.
	Elapsed time.Duration
	// ETA is the time left at Rate (< 0: not known).
	ETA time.Duration
}

// Fraction is Done/Total in [0, 1] (0 when Total is unknown).
func (s Stats) Fraction() float64 {
	if s.Total <= 0 {
		return 0
	}
	return min(max(float64(s.Done)/float64(s.Total), 0), 1)
}

// ETAString is the ETA as FormatDuration writes it, "?" when unknown.
func (s Stats) ETAString() string {
	if s.ETA < 0 {
		return "?"
	}
	return FormatDuration(s.ETA)
}

// TimeString is "elapsed E  ETA T", the part every progress line ends with.
func (s Stats) TimeString() string {
	return "elapsed " + FormatDuration(s.Elapsed) + "  ETA " + s.ETAString()
}

// FormatDuration writes d to the second, short: "45s", "3m07s", "2h05m".
func FormatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	default:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
}

// ETA is the time the remaining units take at rate units per second (−1:
// unknown, when the rate is not positive; 0 when nothing remains).
func ETA(remaining int64, rate float64) time.Duration {
	if remaining <= 0 {
		return 0
	}
	if !(rate > 0) {
		return -1
	}
	return time.Duration(float64(remaining) / rate * float64(time.Second))
}

// sample is the work done at a time (done counts forward: see Meter).
type sample struct {
	t    time.Time
	done int64
}

// Meter measures the rate of work over a sliding window of time. Work that
// goes backwards (a training run rolled back to an earlier step) is not
// negative work: the rate counts the units done since, and the ETA the
// units left from where the work is now.
type Meter struct {
	total   int64
	window  time.Duration
	now     func() time.Time
	start   time.Time
	samples []sample // oldest first; the last is the newest kept
	done    int64    // the newest observation, as given
	counted int64    // the newest observation, counted forward
}

// NewMeter starts measuring work of total units, done of them already (a
// resumed run), at now(). window ≤ 0 is DefaultWindow; now nil is time.Now.
func NewMeter(total, done int64, window time.Duration, now func() time.Time) *Meter {
	if window <= 0 {
		window = DefaultWindow
	}
	if now == nil {
		now = time.Now
	}
	t := now()
	return &Meter{total: total, window: window, now: now, start: t, samples: []sample{{t, done}}, done: done, counted: done}
}

// Observe records that done units are complete now and returns the stats.
func (m *Meter) Observe(done int64) Stats {
	t := m.now()
	m.counted += max(done-m.done, 0)
	m.done = done
	cur := sample{t, m.counted}
	// Keep one sample per window/32 at most (the current one is always
	// used), and drop those the window has left behind but the newest
	// before its start, so that the window is covered.
	if last := m.samples[len(m.samples)-1]; t.Sub(last.t) >= m.window/32 {
		m.samples = append(m.samples, cur)
	}
	from := t.Add(-m.window)
	k := 0
	for k+1 < len(m.samples) && !m.samples[k+1].t.After(from) {
		k++
	}
	m.samples = m.samples[k:]
	st := Stats{Done: done, Total: m.total, Elapsed: t.Sub(m.start), ETA: -1}
	if old := m.samples[0]; t.After(old.t) {
		st.Rate = float64(cur.done-old.done) / t.Sub(old.t).Seconds()
	}
	if m.total > 0 {
		st.ETA = ETA(m.total-done, st.Rate)
	}
	return st
}

// Options configures a Progress.
type Options struct {
	// Out receives the bar or the lines (nil: nothing is written).
	Out io.Writer
	// Label leads each line, e.g. "eval" or "strong apgd-ce run 1/10".
	Label string
	// Unit is the plural name of a unit of work: "steps", "examples".
	Unit string
	// Total is the whole work in units; Start the units already done (a
	// resumed run).
	Total, Start int64
	// Terminal draws a live bar, redrawn in place, instead of lines.
	Terminal bool
	// Every and Interval: without a terminal, Update prints a line when
	// Every units (0: never by count) or Interval (0: never by time) have
	// passed since the last line.
	Every    int64
	Interval time.Duration
	// Window is the rate window (DefaultWindow when 0).
	Window time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Progress reports one piece of long work. Its methods are safe for
// concurrent use.
type Progress struct {
	mu       sync.Mutex
	o        Options
	m        *Meter
	bar      *progressbar.ProgressBar
	drawn    time.Time // last redraw of the bar (zero: never)
	lineAt   time.Time // last line printed
	lineDone int64     // Done at the last line
	last     Stats
}

// New starts reporting the work o describes.
func New(o Options) *Progress {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Unit == "" {
		o.Unit = "units"
	}
	p := &Progress{o: o, m: NewMeter(o.Total, o.Start, o.Window, o.Now), lineDone: o.Start}
	p.lineAt = p.m.start
	p.last = Stats{Done: o.Start, Total: o.Total, ETA: -1}
	p.newBar()
	return p
}

// newBar makes the terminal bar once Out is a terminal and Total known.
func (p *Progress) newBar() {
	o := p.o
	if p.bar != nil || !o.Terminal || o.Out == nil || o.Total <= 0 {
		return
	}
	p.bar = progressbar.NewOptions64(o.Total,
		progressbar.OptionSetWriter(o.Out),
		progressbar.OptionSetWidth(20),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(false),
		progressbar.OptionUseANSICodes(true),
		progressbar.OptionEnableColorCodes(false))
	_ = p.bar.Set64(min(max(p.last.Done, 0), o.Total))
}

// SetTotal sets the whole work, e.g. once the first report tells it; the
// time and work so far still count.
func (p *Progress) SetTotal(total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if total == p.o.Total {
		return
	}
	p.o.Total, p.m.total, p.last.Total = total, total, total
	if p.bar != nil && total > 0 {
		p.bar.ChangeMax64(total)
	}
	p.newBar()
}

// Terminal reports whether p draws a live bar.
func (p *Progress) Terminal() bool { return p.bar != nil }

// Observe records that done units are complete and returns the stats,
// writing nothing.
func (p *Progress) Observe(done int64) Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = p.m.Observe(done)
	return p.last
}

// Stats are the stats of the last observation.
func (p *Progress) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// Line is the plain line of st: "LABEL: DONE/TOTAL UNIT (P%)  R UNIT/s
// elapsed E  ETA T  DETAIL".
func (p *Progress) Line(st Stats, detail string) string {
	var b strings.Builder
	if p.o.Label != "" {
		b.WriteString(p.o.Label + ": ")
	}
	if st.Total > 0 {
		fmt.Fprintf(&b, "%d/%d %s (%.0f%%)", st.Done, st.Total, p.o.Unit, 100*st.Fraction())
	} else {
		fmt.Fprintf(&b, "%d %s", st.Done, p.o.Unit)
	}
	fmt.Fprintf(&b, "  %s/s  %s", rateString(st.Rate, p.o.Unit), st.TimeString())
	if detail != "" {
		b.WriteString("  " + detail)
	}
	return b.String()
}

// rateString writes a rate with 3 significant digits, whole numbers from
// 100 ("?" when unknown).
func rateString(r float64, unit string) string {
	switch {
	case !(r > 0):
		return "? " + unit
	case r >= 100:
		return fmt.Sprintf("%.0f %s", r, unit)
	default:
		return fmt.Sprintf("%.3g %s", r, unit)
	}
}

// Update records that done units are complete: on a terminal it redraws
// the bar (at most every 100 ms, and always at the end) with Line as its
// description; otherwise it prints Line when a line is due (Every,
// Interval). detail is appended to the line.
func (p *Progress) Update(done int64, detail string) Stats {
	st := p.Observe(done)
	if p.bar != nil {
		p.Draw(done, p.Line(st, detail))
	} else if p.Due(done) {
		p.Println(p.Line(st, detail))
	}
	return st
}

// Due reports whether, without a terminal, a periodic line is due at done
// units (Every units or Interval since the last line).
func (p *Progress) Due(done int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil || p.o.Out == nil {
		return false
	}
	if e := p.o.Every; e > 0 && floorDiv(done, e) != floorDiv(p.lineDone, e) {
		return true
	}
	return p.o.Interval > 0 && p.o.Now().Sub(p.lineAt) >= p.o.Interval
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Draw redraws the terminal bar at done units with line as its
// description (at most every 100 ms, and always when done reaches the
// total); without a terminal it does nothing.
func (p *Progress) Draw(done int64, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar == nil {
		return
	}
	now := p.o.Now()
	if !p.drawn.IsZero() && now.Sub(p.drawn) < redrawEvery && done < p.o.Total {
		return
	}
	p.drawn = now
	// The description first: Set64 draws again only when the percentage
	// changes, and draws the finished bar (later calls do not).
	p.bar.Describe(line)
	_ = p.bar.Set64(min(max(done, 0), p.o.Total))
}

// Println prints a line that stays: on a terminal the bar is cleared, the
// line printed, and the bar drawn again below it.
func (p *Progress) Println(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.o.Out == nil {
		return
	}
	if p.bar != nil {
		_ = p.bar.Clear()
	}
	fmt.Fprintln(p.o.Out, line)
	p.lineAt, p.lineDone = p.o.Now(), p.last.Done
	if p.bar != nil && !p.bar.IsFinished() {
		_ = p.bar.RenderBlank()
	}
}

// Close clears the terminal bar for good (nothing without a terminal):
// later lines are plain.
func (p *Progress) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Clear()
		_ = p.bar.Exit()
		p.bar = nil
	}
}

// Finish records done units, clears the bar and prints the closing line:
// "LABEL: DONE/TOTAL UNIT in E (R UNIT/s)  DETAIL".
func (p *Progress) Finish(done int64, detail string) Stats {
	st := p.Observe(done)
	p.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.o.Out == nil {
		return st
	}
	var b strings.Builder
	if p.o.Label != "" {
		b.WriteString(p.o.Label + ": ")
	}
	fmt.Fprintf(&b, "%d", st.Done)
	if st.Total > 0 {
		fmt.Fprintf(&b, "/%d", st.Total)
	}
	fmt.Fprintf(&b, " %s in %s", p.o.Unit, FormatDuration(st.Elapsed))
	if s := st.Elapsed.Seconds(); s > 0 && st.Done > p.o.Start {
		fmt.Fprintf(&b, " (%s/s)", rateString(float64(st.Done-p.o.Start)/s, p.o.Unit))
	}
	if detail != "" {
		b.WriteString("  " + detail)
	}
	fmt.Fprintln(p.o.Out, b.String())
	return st
}
