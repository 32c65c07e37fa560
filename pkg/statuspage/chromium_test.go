//go:build unix

package statuspage

import (
	"bytes"
	"context"
	"flag"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests render the page in headless Chromium: the DOM after the
// scripts ran (live refresh included), the page with JavaScript disabled,
// and a screenshot (kept at docs/img/status-page.png with
// -update-screenshot: go test ./pkg/statuspage -run Screenshot
// -update-screenshot).

var updateScreenshot = flag.Bool("update-screenshot", false, "write the screenshot to docs/img/status-page.png")

// chromiumTimeout bounds one Chromium run.
const chromiumTimeout = 90 * time.Second

// chromium returns the browser to run, or skips (fails with
// LOGITPAIR_REQUIRE_E2E=1) when there is none. LOGITPAIR_CHROMIUM names it
// explicitly.
func chromium(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell"}
	if env := os.Getenv("LOGITPAIR_CHROMIUM"); env != "" {
		names = []string{env}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := "no Chromium on PATH (" + strings.Join(names, ", ") + "; Debian: apt-get install -y --no-install-recommends chromium fonts-dejavu-core, which make deps does)"
	if os.Getenv("LOGITPAIR_REQUIRE_E2E") == "1" {
		t.Fatal(msg + " and LOGITPAIR_REQUIRE_E2E=1")
	}
	t.Skip(msg + "; set LOGITPAIR_REQUIRE_E2E=1 to make this a failure")
	return ""
}

// runChromium runs the browser headless on url with its own profile
// directory, bounded by chromiumTimeout, and kills its whole process group
// when it returns (Chromium forks renderer and utility processes). It
// returns stdout.
func runChromium(t *testing.T, bin, url string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), chromiumTimeout)
	defer cancel()
	all := append([]string{"--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--no-default-browser-check",
		"--disable-extensions", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--mute-audio", "--user-data-dir=" + t.TempDir()}, args...)
	cmd := exec.CommandContext(ctx, bin, append(all, url)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Start()
	if err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) }) // leftover children
	err = cmd.Wait()
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within %v; stderr:\n%s", bin, chromiumTimeout, tail(stderr.String(), 4000))
	}
	if err != nil {
		t.Fatalf("%s: %v; stderr:\n%s", bin, err, tail(stderr.String(), 4000))
	}
	return stdout.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// serve starts the handler over src on an OS-chosen 127.0.0.1 port.
func serve(t *testing.T, src Source, refresh time.Duration) string {
	t.Helper()
	h, err := NewHandler(src, Options{Refresh: refresh})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

var (
	stepRe   = regexp.MustCompile(`id="step">(\d+) / 1000<`)
	pathRe   = regexp.MustCompile(`<path class="series ([a-z-]+)" data-series="([^"]+)" data-vertices="(\d+)" d="([^"]+)"`)
	memberRe = regexp.MustCompile(`<tr class="member" data-role="(worker|paramserver)" data-slot="(\d)"`)
)

// checkRenderedDOM checks the curves, the membership rows and the escaping
// in a dumped DOM.
func checkRenderedDOM(t *testing.T, dom string) {
	t.Helper()
	if regexp.MustCompile(`<title>[^<]*pwned`).MatchString(dom) {
		t.Fatal("the hostile member name ran script")
	}
	if strings.Contains(dom, "<img") || strings.Contains(dom, "<script>document") {
		t.Error("the hostile member name became markup")
	}
	if !strings.Contains(dom, `&lt;script&gt;document.title="pwned"&lt;/script&gt;`) {
		t.Error("the hostile member name is not shown as text")
	}
	series := map[string]int{}
	for _, m := range pathRe.FindAllStringSubmatch(dom, -1) {
		n, _ := strconv.Atoi(m[3])
		if got := strings.Count(m[4], "L") + strings.Count(m[4], "M"); got != n {
			t.Errorf("series %q: data-vertices %d, path has %d", m[2], n, got)
		}
		series[m[2]] += n
	}
	for _, name := range []string{"total loss", "clean CE", "adversarial CE", "pairing term", "clean accuracy", "adversarial accuracy"} {
		if series[name] < 100 {
			t.Errorf("curve %q has %d vertices, want ≥ 100 (of 300 history points)", name, series[name])
		}
	}
	rows := memberRe.FindAllStringSubmatch(dom, -1)
	if len(rows) != 6 {
		t.Errorf("%d membership rows, want 6", len(rows))
	}
	if !strings.Contains(dom, "127.0.0.1:40002") || !strings.Contains(dom, "worker-2-4250") {
		t.Error("membership rows lack a shard address or a worker name")
	}
}

// TestChromiumLiveDOM loads the page with JavaScript on and enough virtual
// time for several refreshes: the DOM must show the curves, the members,
// and a newer step than the first render.
func TestChromiumLiveDOM(t *testing.T) {
	bin := chromium(t)
	src := newFakeSource(t, 300)
	url := serve(t, src, 2*time.Second)
	dom := runChromium(t, bin, url, "--dump-dom", "--virtual-time-budget=9000")
	checkRenderedDOM(t, dom)
	m := stepRe.FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no step in the DOM:\n%s", tail(dom, 3000))
	}
	step, _ := strconv.Atoi(m[1])
	if step <= 300 {
		t.Errorf("step %d after the refreshes, want > 300 (the first render's)", step)
	}
	r := regexp.MustCompile(`data-refreshes="(\d+)"`).FindStringSubmatch(dom)
	if r == nil || r[1] == "0" {
		t.Errorf("the page did not refresh itself (data-refreshes %v)", r)
	}
	if !strings.Contains(dom, `class="live ok"`) {
		t.Error("the live indicator does not say live")
	}
	if calls := src.calls.Load(); calls < 2 {
		t.Errorf("%d snapshots served, want ≥ 2", calls)
	}
}

// TestChromiumNoJavaScript: without its script the server-rendered page
// still shows the step, the curves and the tables. Chromium's command line
// cannot both disable JavaScript and dump the DOM (--dump-dom evaluates
// script), so the server's answer loses its <script> element on the way to
// the browser instead.
func TestChromiumNoJavaScript(t *testing.T) {
	bin := chromium(t)
	h, err := NewHandler(newFakeSource(t, 300), Options{Refresh: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	strip := regexp.MustCompile(`(?s)<script>.*?</script>`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(strip.ReplaceAll(rec.Body.Bytes(), nil))
	}))
	t.Cleanup(srv.Close)
	dom := runChromium(t, bin, srv.URL+"/", "--dump-dom", "--virtual-time-budget=1000")
	if strings.Contains(dom, "<script") {
		t.Fatal("the page still has a script")
	}
	checkRenderedDOM(t, dom)
	if m := stepRe.FindStringSubmatch(dom); m == nil || m[1] != "300" {
		t.Errorf("step %v, want 300", m)
	}
	if !strings.Contains(dom, `data-refreshes="0"`) || !strings.Contains(dom, "static page: reloads every 2 s") {
		t.Error("without JavaScript the page does not say that it is static")
	}
}

// TestChromiumScreenshot takes a 1280×900 screenshot and checks that it is
// a PNG of that size, not blank, and that the curves' colours are on it.
func TestChromiumScreenshot(t *testing.T) {
	bin := chromium(t)
	src := newFakeSource(t, 300)
	src.benign = true
	url := serve(t, src, 5*time.Second)
	b, img := screenshot(t, bin, url)
	checkScreenshot(t, img)
	if *updateScreenshot {
		dst := filepath.Join("..", "..", "docs", "img", "status-page.png")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", dst)
	}
}

// screenshot takes a 1280×900 screenshot of url and decodes it.
func screenshot(t *testing.T, bin, url string, args ...string) ([]byte, image.Image) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "status.png")
	runChromium(t, bin, url, append([]string{"--screenshot=" + file, "--window-size=1280,900", "--hide-scrollbars", "--virtual-time-budget=1000"}, args...)...)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	return b, img
}

// checkScreenshot checks the size, that the image is not blank, and that
// each curve colour of the stylesheet covers some pixels.
func checkScreenshot(t *testing.T, img image.Image) {
	t.Helper()
	if got := img.Bounds().Size(); got != (image.Point{X: 1280, Y: 900}) {
		t.Fatalf("screenshot is %v, want 1280×900", got)
	}
	if v := lumaVariance(img); v < 100 {
		t.Errorf("screenshot looks blank: luminance variance %.1f", v)
	}
	for name, c := range map[string][3]int{"clean (blue)": {0x1f, 0x77, 0xb4}, "adversarial (red)": {0xd6, 0x27, 0x28}, "pairing (green)": {0x2c, 0xa0, 0x2c}} {
		if n := countNear(img, c, 40); n < 200 {
			t.Errorf("%d pixels near the %s curve colour, want ≥ 200", n, name)
		}
	}
}

func lumaVariance(img image.Image) float64 {
	var sum, sq, n float64
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			l := (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(bl)) / 257
			sum += l
			sq += l * l
			n++
		}
	}
	mean := sum / n
	return sq/n - mean*mean
}

func countNear(img image.Image, c [3]int, tol int) int {
	abs := func(v int) int { return max(v, -v) }
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if abs(int(r>>8)-c[0])+abs(int(g>>8)-c[1])+abs(int(bl>>8)-c[2]) <= tol {
				n++
			}
		}
	}
	return n
}
