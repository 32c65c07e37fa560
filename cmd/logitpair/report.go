package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
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
}

func newReportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "report RUN...",
		Short: "One Markdown table (Method | White box | Black box | Clean) from eval JSON files or run directories",
		Long: `Reads each RUN — an eval JSON file (from logitpair eval --json or --report) or a
directory holding eval.json — and prints one Markdown table laid out like the
paper's: Method | White box | Black box | Clean. The method is the run's
directory name (or the file's name without .json); write LABEL=RUN to name it.
Strong-suite runs add a note with their accuracy under every attack and their
masking-check warnings.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			writeReportTable(cmd.OutOrStdout(), labels, runs)
			return nil
		},
	}
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

func writeReportTable(w io.Writer, labels []string, runs []evalSummary) {
	pct := func(v *float64) string {
		if v == nil {
			return "—"
		}
		return fmt.Sprintf("%.1f%%", 100**v)
	}
	fmt.Fprintln(w, "| Method | White box | Black box | Clean |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for i, r := range runs {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", labels[i], pct(r.Whitebox), pct(r.Transfer), pct(r.Clean))
	}
	var notes []string
	for i, r := range runs {
		if r.Suite != "strong" {
			continue
		}
		n := fmt.Sprintf("%s: strong suite, ε = %.4g, %d examples; all attacks together: %s", labels[i], r.Eps, r.Examples, pct(r.Robust))
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
