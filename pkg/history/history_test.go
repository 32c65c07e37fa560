package history

import (
	"bytes"
	"flag"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var keepPlots = flag.String("keep-plots", "", "also write the test's PNGs to this directory (to look at them)")

func TestWriteReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := []Record{
		{Kind: KindStart, Step: 0, Steps: 10, Source: "train", Time: at},
		{Kind: KindTrain, Step: 2, Interval: 2, Loss: Float(1.5), AdvCE: Float(math.NaN()), CleanAcc: Float(0.25), LR: Float(0.1), Time: at},
		{Kind: KindValidation, Step: 2, Clean: Float(0.5), Robust: Float(0.125), Attack: "PGD", Examples: 8, Time: at},
	}
	for _, r := range in {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(in[0]); err == nil {
		t.Error("a write after Close succeeded")
	}
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	if n := bytes.Count(b, []byte("\n")); n != len(in) {
		t.Fatalf("%d lines, want %d:\n%s", n, len(in), b)
	}
	if bytes.Contains(b, []byte("adv_ce")) || bytes.Contains(b, []byte("NaN")) {
		t.Errorf("a NaN term was written:\n%s", b)
	}
	got, notes, err := ReadFile(filepath.Join(dir, FileName))
	if err != nil || len(notes) > 0 {
		t.Fatalf("read: %v, notes %q", err, notes)
	}
	if len(got) != len(in) || *got[1].Loss != 1.5 || got[1].AdvCE != nil || *got[2].Robust != 0.125 || !got[0].Time.Equal(at) || got[0].Steps != 10 {
		t.Fatalf("read back %+v", got)
	}
}

// A crash mid-line: the reader skips the torn line with a note, and the
// next Open ends it so that the next record is whole.
func TestTornLastLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	whole := `{"kind":"train","step":1,"time":"2026-01-02T03:04:05Z","loss":2}` + "\n"
	if err := os.WriteFile(path, []byte(whole+`{"kind":"train","step":2,"ti`), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, notes, err := ReadFile(path)
	if err != nil || len(recs) != 1 || len(notes) != 1 || !strings.Contains(notes[0], "line 2: skipped a torn last line") {
		t.Fatalf("records %v, notes %q, err %v", recs, notes, err)
	}
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(Record{Kind: KindStart, Step: 1}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	recs, notes, err = ReadFile(path)
	if err != nil || len(recs) != 2 || recs[1].Kind != KindStart || len(notes) != 1 || !strings.Contains(notes[0], "line 2: skipped, not a record") {
		t.Fatalf("after reopening: records %v, notes %q, err %v", recs, notes, err)
	}
}

func TestSurviving(t *testing.T) {
	var recs []Record
	tr := func(step int64) Record { return Record{Kind: KindTrain, Step: step, Loss: Float(float64(step))} }
	recs = append(recs, Record{Kind: KindStart, Step: 0}, tr(2), tr(4),
		Record{Kind: KindSentinel, Step: 4, Verdict: VerdictGood}, tr(6), tr(8),
		Record{Kind: KindSentinel, Step: 8, Verdict: VerdictRollback},
		Record{Kind: KindRollback, Step: 4, From: 8}, tr(6), tr(8),
		// A crash after step 10 was logged; the resume starts from the
		// checkpoint of step 8.
		tr(10), Record{Kind: KindStart, Step: 8}, tr(10), tr(12),
		// A rollback without its record (a cluster's recovery) to step
		// 10: train@12 again.
		Record{Kind: KindValidation, Step: 12}, tr(12), tr(14))
	var got []string
	for _, r := range Surviving(recs) {
		got = append(got, r.Kind+"@"+strconv.FormatInt(r.Step, 10))
	}
	want := []string{"start@0", "train@2", "train@4", "sentinel@4", "rollback@4", "train@6", "train@8", "start@8", "train@10", "train@12", "train@14"}
	if !slices.Equal(got, want) {
		t.Fatalf("surviving %v\nwant      %v", got, want)
	}
}

// syntheticRun is a run of 400 steps logged every 10 with a robust
// validation every 50 and a sentinel every 100, whose check at step 300
// trips and rolls back to 200 (the abandoned steps' loss is far off, so
// a plot that drew them would show it).
func syntheticRun() []Record {
	var recs []Record
	recs = append(recs, Record{Kind: KindStart, Step: 0, Steps: 400, Source: "train"})
	train := func(from, to int64, off float64) {
		for s := from; s <= to; s += 10 {
			x := float64(s) / 400
			recs = append(recs, Record{Kind: KindTrain, Step: s, Interval: 10,
				Loss: Float(2.3*math.Exp(-3*x) + 0.3 + off), CleanCE: Float(2.3*math.Exp(-3.5*x) + 0.1), AdvCE: Float(2.3*math.Exp(-2*x) + 0.4),
				Pair: Float(0.2 * math.Exp(-x)), CleanAcc: Float(0.1 + 0.85*(1-math.Exp(-4*x))), AdvAcc: Float(0.1 + 0.5*(1-math.Exp(-3*x)) - off/10)})
			if s%50 == 0 {
				recs = append(recs, Record{Kind: KindValidation, Step: s, Clean: Float(0.1 + 0.8*(1-math.Exp(-4*x))), Robust: Float(0.05 + 0.4*(1-math.Exp(-3*x)) - off/10), Examples: 500})
			}
		}
	}
	sentinel := func(s int64, multi float64, v string) {
		recs = append(recs, Record{Kind: KindSentinel, Step: s, Clean: Float(0.8), SingleStep: Float(0.6), MultiStep: Float(multi), Verdict: v, Examples: 200})
	}
	train(10, 100, 0)
	sentinel(100, 0.3, VerdictGood)
	train(110, 200, 0)
	sentinel(200, 0.4, VerdictGood)
	train(210, 300, 3) // the abandoned trajectory
	sentinel(300, 0.02, VerdictRollback)
	recs = append(recs, Record{Kind: KindRollback, Step: 200, From: 300, Reason: "collapse", LRScale: Float(0.5)})
	train(210, 300, 0)
	sentinel(300, 0.42, VerdictGood)
	train(310, 400, 0)
	return recs
}

func TestPlot(t *testing.T) {
	dir := t.TempDir()
	files, err := Plot(syntheticRun(), dir, "synthetic")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{LossPNG, AccuracyPNG, ValidationPNG}; !slices.Equal(files, want) {
		t.Fatalf("wrote %v, want %v", files, want)
	}
	for _, f := range files {
		fh, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 300 {
			t.Errorf("%s is %v", f, b)
		}
		if *keepPlots != "" {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			if err := os.WriteFile(filepath.Join(*keepPlots, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A history with train records only: no validation plot.
	files, err = Plot([]Record{{Kind: KindTrain, Step: 1, Loss: Float(1)}, {Kind: KindTrain, Step: 2, Loss: Float(0.5)}}, t.TempDir(), "")
	if err != nil || !slices.Equal(files, []string{LossPNG}) {
		t.Fatalf("train-only history: %v, %v", files, err)
	}
}
