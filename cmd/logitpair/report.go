package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/logitpair/logitpair/pkg/checkpoint"
)

// evalSummary is what `logitpair report` reads from an eval JSON file: the
// keys pkg/eval's and pkg/strong's reports share, plus the strong suite's.
type evalSummary struct {
	Suite    string   `json:"suite"`
	Model    string   `json:"model"`
	Dataset  string   `json:"dataset"`
	Examples int      `json:"examples"`
	Eps      float64  `json:"eps"`
	Clean    *float64 `json:"clean_accuracy"`
	Whitebox *float64 `json:"whitebox_accuracy"`
	Transfer *float64 `json:"transfer_accuracy"`
	Robust   *float64 `json:"robust_accuracy"`
	Warnings int      `json:"masking_warnings"`
	Checks   []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	} `json:"checks"`
	// WhiteboxResults are pkg/eval's white-box attacks.
	WhiteboxResults []struct {
		Accuracy float64 `json:"accuracy"`
	} `json:"whitebox"`
	// TransferResults are pkg/eval's per-source transfer attacks.
	TransferResults []struct {
		Source   string  `json:"source"`
		Attack   string  `json:"attack"`
		Accuracy float64 `json:"accuracy"`
	} `json:"transfer"`
	// Stages are pkg/strong's; its transfer stages are named
	// "transfer:SOURCE" and carry their stand-alone accuracy.
	Stages []struct {
		Name       string   `json:"name"`
		Standalone *float64 `json:"standalone_accuracy"`
	} `json:"stages"`
	// Compute is the training compute the evaluated checkpoint recorded.
	Compute *checkpoint.Compute `json:"compute"`
}

func newReportCmd() *cobra.Command {
	var sourceArgs []string
	cmd := &cobra.Command{
		Use:   "report [--source LABEL=MODEL]... RUN...",
		Short: "One Markdown table (Method | White box | Black box | Clean) from eval JSON files or run directories",
		Long: `Reads each RUN — an eval JSON file (from logitpair eval --json or --report) or a
directory holding eval.json — and prints one Markdown table laid out like the
paper's: Method | White box | Black box | Clean. The method is the run's
directory name (or the file's name without .json); write LABEL=RUN to name it.
Runs whose checkpoint recorded its training compute (the eval JSON's
"compute") add a note with the wall time and the passes per training example;
strong-suite runs add a note with their accuracy under every attack and their
masking-check warnings.

With --source LABEL=MODEL (repeatable) the table is a transfer table instead:
one column per source, LABEL, holding each run's accuracy under the transfer
attacks crafted on MODEL, read from the transfer results already in the run's
eval JSON (logitpair eval --source MODEL; the lowest accuracy over the attacks
from that source; with --suite strong, the transfer stage's stand-alone
accuracy), then the worst of those columns; White box is the lowest accuracy
over the run's white-box attacks. A source path matches the one the
eval was given when both name the same file. "—" marks a run evaluated without
that source (e.g. the source is the run's own model).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sources, err := parseSources(sourceArgs)
			if err != nil {
				return err
			}
			var labels []string
			var runs []evalSummary
			for _, a := range args {
				label, path := runLabel(a)
				s, err := readEvalSummary(path)
				if err != nil {
					return err
				}
				labels, runs = append(labels, label), append(runs, s)
			}
			if len(sources) > 0 {
				return writeTransferTable(cmd.OutOrStdout(), labels, runs, sources)
			}
			writeReportTable(cmd.OutOrStdout(), labels, runs)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&sourceArgs, "source", nil, "LABEL=MODEL: a transfer-table column of accuracy under attacks crafted on MODEL (repeatable; the runs' eval JSON must hold them: logitpair eval --source MODEL)")
	return cmd
}

// runLabel splits LABEL=PATH (a LABEL without a path separator) and
// otherwise names the run after its directory or file.
func runLabel(arg string) (label, path string) {
	if l, p, ok := strings.Cut(arg, "="); ok && l != "" && !strings.ContainsRune(l, filepath.Separator) {
		return l, p
	}
	path = arg
	clean := filepath.Clean(arg)
	if st, err := os.Stat(clean); err == nil && st.IsDir() {
		return filepath.Base(clean), path
	}
	if filepath.Base(clean) == "eval.json" {
		return filepath.Base(filepath.Dir(clean)), path
	}
	return strings.TrimSuffix(filepath.Base(clean), ".json"), path
}

func readEvalSummary(path string) (evalSummary, error) {
	var s evalSummary
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "eval.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	if s.Clean == nil {
		return s, fmt.Errorf("%s: not an eval report (no clean_accuracy)", path)
	}
	return s, nil
}

// percent formats an accuracy (a fraction) as text does everywhere: a
// percentage with two decimals; nil is "—".
func percent(v *float64) string {
	if v == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f%%", 100**v)
}

func writeReportTable(w io.Writer, labels []string, runs []evalSummary) {
	fmt.Fprintln(w, "| Method | White box | Black box | Clean |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for i, r := range runs {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", labels[i], percent(r.Whitebox), percent(r.Transfer), percent(r.Clean))
	}
	var notes []string
	for i, r := range runs {
		if r.Compute != nil {
			notes = append(notes, labels[i]+": "+computeNote(*r.Compute))
		}
	}
	for i, r := range runs {
		if r.Suite != "strong" {
			continue
		}
		n := fmt.Sprintf("%s: strong suite, ε = %.4g, %d examples; all attacks together: %s", labels[i], r.Eps, r.Examples, percent(r.Robust))
		switch {
		case len(r.Checks) == 0:
			n += "; masking checks not run"
		case r.Warnings == 0:
			n += "; masking checks passed"
		default:
			var warned []string
			for _, c := range r.Checks {
				if c.Status == "warn" {
					warned = append(warned, c.Name)
				}
			}
			n += fmt.Sprintf("; **%d masking warning(s)**: %s", r.Warnings, strings.Join(warned, ", "))
		}
		notes = append(notes, n)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// computeNote describes a run's training compute: its wall time, steps and
// passes per example of the training set (when the dataset size is known),
// then the totals.
func computeNote(c checkpoint.Compute) string {
	wall := time.Duration(c.WallSeconds * float64(time.Second)).Round(time.Second)
	n := fmt.Sprintf("trained %d steps (%d examples) in %s wall time", c.Steps, c.ExamplesSeen, wall)
	if c.DatasetSize > 0 {
		n += fmt.Sprintf("; %.4g passes per training example (%.4g forward + %.4g backward, over %d examples)",
			c.PassesPerExample, c.ForwardPerExample, c.BackwardPerExample, c.DatasetSize)
	}
	return n + fmt.Sprintf("; %d forward and %d backward passes in total", c.ForwardPasses, c.BackwardPasses)
}

// reportSource is one --source LABEL=MODEL of `logitpair report`.
type reportSource struct{ label, path string }

func parseSources(args []string) ([]reportSource, error) {
	var out []reportSource
	seen := map[string]bool{}
	for _, a := range args {
		l, p, ok := strings.Cut(a, "=")
		if !ok || strings.TrimSpace(l) == "" || strings.TrimSpace(p) == "" {
			return nil, fmt.Errorf("--source %q: want LABEL=MODEL, e.g. mpgd=runs/repro-mnist/mpgd/ckpt-00001000.safetensors", a)
		}
		if seen[l] {
			return nil, fmt.Errorf("--source: label %q given twice", l)
		}
		seen[l] = true
		out = append(out, reportSource{label: l, path: p})
	}
	return out, nil
}

// sameModel reports whether two model paths name the same file: equal
// cleaned or absolute paths, or the same file on disk.
func sameModel(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	aa, errA := filepath.Abs(a)
	ab, errB := filepath.Abs(b)
	if errA == nil && errB == nil && aa == ab {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// transferFrom returns a run's accuracy under the transfer attacks crafted
// on the source at path: the lowest over pkg/eval's attacks from it, or
// pkg/strong's stand-alone accuracy of its transfer stage; ok is false when
// the run has none.
func transferFrom(r evalSummary, path string) (acc float64, ok bool) {
	acc = math.Inf(1)
	for _, t := range r.TransferResults {
		if sameModel(t.Source, path) {
			acc, ok = math.Min(acc, t.Accuracy), true
		}
	}
	for _, st := range r.Stages {
		if name, isTransfer := strings.CutPrefix(st.Name, "transfer:"); isTransfer && st.Standalone != nil && sameModel(name, path) {
			acc, ok = math.Min(acc, *st.Standalone), true
		}
	}
	return acc, ok
}

// writeTransferTable prints one row per run and one column per source (the
// accuracy under the attacks crafted on it), then the worst column. A source
// found in no run is an error: it is most likely a mistyped path.
func writeTransferTable(w io.Writer, labels []string, runs []evalSummary, sources []reportSource) error {
	cells := make([][]*float64, len(runs))
	for i, r := range runs {
		cells[i] = make([]*float64, len(sources))
		for j, s := range sources {
			if v, ok := transferFrom(r, s.path); ok {
				cells[i][j] = &v
			}
		}
	}
	for j, s := range sources {
		found := false
		for i := range runs {
			found = found || cells[i][j] != nil
		}
		if !found {
			var known []string
			for _, r := range runs {
				for _, t := range r.TransferResults {
					known = append(known, t.Source)
				}
				for _, st := range r.Stages {
					if name, ok := strings.CutPrefix(st.Name, "transfer:"); ok {
						known = append(known, name)
					}
				}
			}
			return fmt.Errorf("--source %s=%s: no run has transfer results crafted on %s (the runs' sources: %s); evaluate with logitpair eval --source %s",
				s.label, s.path, s.path, strings.Join(dedupe(known), ", "), s.path)
		}
	}
	head := []string{"Defended model", "Clean", "White box"}
	for _, s := range sources {
		head = append(head, "from "+s.label)
	}
	head = append(head, "Worst black box")
	fmt.Fprintf(w, "| %s |\n", strings.Join(head, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(head)))
	for i, r := range runs {
		white := r.Whitebox // the strong suite's, or the lowest over pkg/eval's attacks
		for _, wb := range r.WhiteboxResults {
			if white == nil || wb.Accuracy < *white {
				white = &wb.Accuracy
			}
		}
		row := []string{labels[i], percent(r.Clean), percent(white)}
		var worst *float64
		for _, c := range cells[i] {
			row = append(row, percent(c))
			if c != nil && (worst == nil || *c < *worst) {
				worst = c
			}
		}
		row = append(row, percent(worst))
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "White box: the lowest accuracy over the run's white-box attacks. \"from LABEL\": accuracy under the transfer (black-box) attacks crafted on that source model, the lowest over its attacks; — : not evaluated from that source.")
	for _, s := range sources {
		fmt.Fprintf(w, "- %s: %s\n", s.label, s.path)
	}
	return nil
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}
