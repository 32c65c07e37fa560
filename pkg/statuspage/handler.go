package statuspage

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"time"
)

var (
	//go:embed assets/page.html
	pageHTML string
	//go:embed assets/page.css
	pageCSS string
	//go:embed assets/page.js
	pageJS string

	// percent prints an accuracy (a fraction) as text does everywhere:
	// a percentage with two decimals; points a difference of two.
	pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
		"percent": func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) },
		"points":  func(v float64) string { return fmt.Sprintf("%.2f points", 100*v) },
	}).Parse(pageHTML))

	// contentSecurityPolicy allows exactly the page's own inline style and
	// script (by hash) and fetches from its own origin: nothing external
	// loads, and markup that slipped past escaping could run nothing.
	contentSecurityPolicy = "default-src 'none'; style-src " + cspHash(pageCSS) + "; script-src " + cspHash(pageJS) +
		"; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

func cspHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(h[:]) + "'"
}

// DefaultRefresh is how often the page refreshes itself.
const DefaultRefresh = 5 * time.Second

// Options configures the handler.
type Options struct {
	// Title heads the page (default "logitpair coordinator").
	Title string
	// Refresh is the page's refresh interval (0: DefaultRefresh; at least
	// one second).
	Refresh time.Duration
	// SingleProcess: the page is a single process's (`logitpair train
	// --http-listen`), one worker and no shards: the cluster's cards
	// (workers, dropped gradients) are left out.
	SingleProcess bool
}

// Handler serves the status page at "/" and its data at "/status.json"
// (paths relative to where it is mounted: use http.StripPrefix to mount it
// below "/"). Other paths are 404, methods other than GET and HEAD 405.
type Handler struct {
	src  Source
	opts Options
}

// NewHandler returns the handler over src.
func NewHandler(src Source, opts Options) (*Handler, error) {
	if src == nil {
		return nil, errors.New("statuspage: nil Source")
	}
	switch {
	case opts.Refresh == 0:
		opts.Refresh = DefaultRefresh
	case opts.Refresh < time.Second:
		return nil, fmt.Errorf("statuspage: refresh interval must be at least 1s, got %v", opts.Refresh)
	}
	if opts.Title == "" {
		opts.Title = "logitpair coordinator"
	}
	return &Handler{src: src, opts: opts}, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method "+r.Method+" not allowed: the status page is read-only (GET, HEAD)", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case "/", "":
		h.serveHTML(w, r)
	case "/status.json":
		h.serveJSON(w, r)
	default:
		http.Error(w, fmt.Sprintf("no such page %q: the status page is / and its data /status.json", r.URL.Path), http.StatusNotFound)
	}
}

// serveJSON writes the snapshot; ?history=N keeps the newest N points
// (default all, 0 none).
func (h *Handler) serveJSON(w http.ResponseWriter, r *http.Request) {
	keep := -1
	if q := r.URL.Query().Get("history"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 0 {
			http.Error(w, fmt.Sprintf("history=%q: want a number of points ≥ 0", q), http.StatusBadRequest)
			return
		}
		keep = n
	}
	s := h.src.Snapshot()
	if keep >= 0 && keep < len(s.History) {
		s.History = s.History[len(s.History)-keep:]
	}
	if s.History == nil {
		s.History = []Point{}
	}
	if s.Members == nil {
		s.Members = []Member{}
	}
	if !isFinite(s.StepRate) {
		s.StepRate = 0
	}
	b, err := json.Marshal(s)
	if err != nil {
		http.Error(w, "encoding the status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(append(b, '\n'))
}

// memberView is a membership row.
type memberView struct {
	Member
	RoleLabel, State, LastStepText, LastSeenText string
}

// pageView is what the template renders.
type pageView struct {
	Title, DocTitle               string
	Single                        bool
	S                             Snapshot
	MaxSteps                      int64
	Percent, StepRate, RateWindow string
	ETA, Updated                  string
	RefreshMillis, RefreshSeconds int64
	Charts                        []chart
	Members                       []memberView
	CSS                           template.CSS
	JS                            template.JS
}

func (h *Handler) serveHTML(w http.ResponseWriter, _ *http.Request) {
	s := h.src.Snapshot()
	v := pageView{Title: h.opts.Title, Single: h.opts.SingleProcess, S: s, MaxSteps: max(s.Run.Steps, 1), CSS: template.CSS(pageCSS), JS: template.JS(pageJS),
		RefreshMillis: h.opts.Refresh.Milliseconds(), RefreshSeconds: int64(math.Ceil(h.opts.Refresh.Seconds())),
		RateWindow: time.Duration(s.RateWindow).String(), Updated: s.Time.UTC().Format("2006-01-02 15:04:05 UTC")}
	v.DocTitle = fmt.Sprintf("step %d/%d · %s · %s", s.Run.Step, s.Run.Steps, s.Run.Phase, h.opts.Title)
	v.Percent = fmt.Sprintf("%.1f%%", 100*float64(min(max(s.Run.Step, 0), v.MaxSteps))/float64(v.MaxSteps))
	v.StepRate = "–"
	if isFinite(s.StepRate) && s.StepRate > 0 {
		v.StepRate = strconv.FormatFloat(s.StepRate, 'f', 2, 64)
		if left := s.Run.Steps - s.Run.Step; left > 0 && s.Run.Phase == PhaseRunning {
			v.ETA = humanDuration(time.Duration(float64(left) / s.StepRate * float64(time.Second)))
		}
	}
	acc := [2]float64{0, 100}
	loss := buildChart("chart-loss", "Loss terms (mean over each step's accepted reports)", s.History, lossSeries, nil)
	loss.YLabel = "loss"
	accuracy := buildChart("chart-acc", "Batch accuracy (clean and adversarial)", s.History, accSeries, &acc)
	accuracy.YLabel = "accuracy (%)"
	v.Charts = []chart{loss, accuracy}
	for _, m := range s.Members {
		mv := memberView{Member: m, RoleLabel: m.Role, State: "alive", LastStepText: "—", LastSeenText: "—"}
		switch {
		case m.Role == RoleShard:
			mv.RoleLabel = "shard"
			if !m.Alive {
				mv.State = "down"
			}
		case !m.Alive:
			mv.State = "free"
		}
		if m.LastStep >= 0 {
			mv.LastStepText = strconv.FormatInt(m.LastStep, 10)
		}
		if !m.LastSeen.IsZero() {
			mv.LastSeenText = humanDuration(s.Time.Sub(m.LastSeen)) + " ago"
		}
		v.Members = append(v.Members, mv)
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, v); err != nil {
		http.Error(w, "rendering the status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(buf.Bytes())
}

// humanDuration prints d to about two significant figures ("850ms",
// "4.2s", "3m10s", "2h05m").
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
