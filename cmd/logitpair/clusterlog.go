package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/paramserver"
)

// clusterCommand is `cluster` (from pkg/node) with the hidden `log` and
// `status` subcommands added.
func clusterCommand(base *cobra.Command) *cobra.Command {
	base.AddCommand(newClusterLogCmd(), newClusterStatusCmd())
	return base
}

// logEntryJSON is one commit-log entry as `cluster log --json` prints it.
type logEntryJSON struct {
	Step    int64 `json:"step"`
	Workers []int `json:"workers"`
}

func newClusterLogCmd() *cobra.Command {
	var asJSON bool
	expect := int64(-1)
	cmd := &cobra.Command{
		Use:   "log PATH",
		Short: "Print a coordinator's commit log (PATH: its --dir or the commit.log file) and optionally check a finished run",
		Long: `Prints every entry of a coordinator's commit log, one line per step with the
workers whose gradients make it (S_t), or a JSON array with --json.

The log is read from a private copy, so PATH is never modified, even when its
last record is torn (the copy is truncated as the coordinator would, with a
warning on standard error).

--expect-steps N checks a finished run: the log holds steps 0..N-1, each
exactly once (after any rollbacks), and, when PATH is a directory, its
newest consistent checkpoint (cluster-checkpoint.json) is step N and the
model file ckpt-N.safetensors exists. A failed check is an error naming what
is wrong.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, logPath, err := commitLogPath(args[0])
			if err != nil {
				return err
			}
			entries, err := readCommitLog(logPath)
			if err != nil {
				return err
			}
			if err := printCommitLog(cmd.OutOrStdout(), entries, asJSON); err != nil {
				return err
			}
			if expect < 0 {
				return nil
			}
			if err := checkStepsOnce(entries, expect); err != nil {
				return fmt.Errorf("%s: %w", logPath, err)
			}
			if dir != "" {
				if err := checkFinalCheckpoint(dir, expect); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "ok: steps 0..%d each committed exactly once", expect-1)
			if dir != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "; final checkpoint %s", filepath.Join(dir, checkpoint.ModelFileName(expect)))
			}
			fmt.Fprintln(cmd.ErrOrStderr())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the entries as a JSON array of {step, workers}")
	cmd.Flags().Int64Var(&expect, "expect-steps", -1, "check that the run committed steps 0..N-1 exactly once and checkpointed step N (−1: no check)")
	return cmd
}

// commitLogPath resolves PATH: a coordinator directory (dir is returned
// too) or a commit-log file (dir is empty).
func commitLogPath(path string) (dir, logPath string, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", "", fmt.Errorf("commit log: %w", err)
	}
	if !st.IsDir() {
		return "", path, nil
	}
	logPath = filepath.Join(path, "commit.log")
	if _, err := os.Stat(logPath); err != nil {
		return "", "", fmt.Errorf("%s is not a coordinator directory: %w", path, err)
	}
	return path, logPath, nil
}

// readCommitLog reads a FileLog through a copy in a temporary directory:
// opening the log itself would truncate a torn tail in place.
func readCommitLog(path string) ([]paramserver.Entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("commit log: %w", err)
	}
	tmp, err := os.MkdirTemp("", "logitpair-commitlog-")
	if err != nil {
		return nil, fmt.Errorf("commit log: a private copy needs a temporary directory (set TMPDIR): %w", err)
	}
	defer os.RemoveAll(tmp)
	cp := filepath.Join(tmp, "commit.log")
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		return nil, fmt.Errorf("commit log: copying %s: %w", path, err)
	}
	l, err := paramserver.OpenFileLog(cp)
	if err != nil {
		return nil, fmt.Errorf("commit log %s: %w", path, err)
	}
	defer l.Close()
	return l.Entries()
}

func printCommitLog(w io.Writer, entries []paramserver.Entry, asJSON bool) error {
	if asJSON {
		out := make([]logEntryJSON, len(entries))
		for i, e := range entries {
			out[i] = logEntryJSON{Step: e.Step, Workers: e.Workers}
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	for _, e := range entries {
		if _, err := fmt.Fprintf(w, "step %d workers %v\n", e.Step, e.Workers); err != nil {
			return err
		}
	}
	return nil
}

// checkStepsOnce reports whether entries hold steps 0..n-1, each exactly
// once, in order.
func checkStepsOnce(entries []paramserver.Entry, n int64) error {
	seen := make(map[int64]int, len(entries))
	for i, e := range entries {
		seen[e.Step]++
		if seen[e.Step] > 1 {
			return fmt.Errorf("step %d is committed more than once (entry %d)", e.Step, i)
		}
		if e.Step < 0 || e.Step >= n {
			return fmt.Errorf("entry %d is step %d, outside 0..%d", i, e.Step, n-1)
		}
		if e.Step != int64(i) {
			return fmt.Errorf("entry %d is step %d: steps are not 0, 1, 2, … in order", i, e.Step)
		}
		if len(e.Workers) == 0 {
			return fmt.Errorf("step %d has no workers", e.Step)
		}
	}
	if int64(len(entries)) != n {
		return fmt.Errorf("%d steps committed, want %d (the run has not finished)", len(entries), n)
	}
	return nil
}

// checkFinalCheckpoint reports whether dir's newest consistent checkpoint is
// step n and its model file exists.
func checkFinalCheckpoint(dir string, n int64) error {
	step, ok, err := checkpoint.FileRecord{Dir: dir}.LastCheckpoint()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: no consistent checkpoint recorded (no %s)", dir, checkpoint.RecordFile)
	}
	if step != n {
		return fmt.Errorf("%s: the newest consistent checkpoint is step %d, want the final step %d", dir, step, n)
	}
	p := filepath.Join(dir, checkpoint.ModelFileName(n))
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("final checkpoint: %w", err)
	}
	return nil
}
