package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/logitpair/logitpair/pkg/history"
)

func newPlotCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "plot RUN_DIR",
		Short: "Draw a run's curves (loss, accuracies, validation vs step) as PNGs",
		Long: `Draw a run's curves from RUN_DIR/history.jsonl as PNGs: loss.png (the loss
terms), accuracy.png (clean and adversarial batch accuracy) and validation.png
(robust validation, and the sentinel's clean, single-step and multi-step
accuracy), each against the step. RUN_DIR is a train --out or a cluster
coordinator's --dir. The path the run took in the end is drawn: the steps a
rollback (or a resume from an older checkpoint) abandoned are left out, and
each rollback is a dashed line at the step the run went back to.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			path := filepath.Join(dir, history.FileName)
			recs, notes, err := history.ReadFile(path)
			if os.IsNotExist(err) {
				return fmt.Errorf("%s has no %s: not a run directory, or a run from before histories were written", dir, history.FileName)
			}
			if err != nil {
				return err
			}
			for _, n := range notes {
				fmt.Fprintf(cmd.ErrOrStderr(), "NOTE %s: %s\n", path, n)
			}
			if out == "" {
				out = dir
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			abs, _ := filepath.Abs(dir)
			files, err := history.Plot(recs, out, filepath.Base(abs))
			for _, f := range files {
				fmt.Fprintln(cmd.OutOrStdout(), filepath.Join(out, f))
			}
			if err != nil {
				return err
			}
			if len(files) == 0 {
				return fmt.Errorf("%s holds no step to plot (%d records)", path, len(recs))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the PNGs to this directory (default RUN_DIR)")
	return cmd
}
