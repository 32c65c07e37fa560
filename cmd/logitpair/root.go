package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/logitpair/logitpair/pkg/atomicfile"
	"github.com/logitpair/logitpair/pkg/node"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "logitpair",
		Short:         "Adversarially robust training with adversarial logit pairing",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newBenchCmd(), newTrainCmd(), newEvalCmd(), newDataCmd(), clusterCommand(node.ClusterCommand()), newReportCmd(), newPlotCmd(), newCertsCmd(), newPlanCmd())
	for _, c := range []*cobra.Command{node.CoordinatorCommand(), node.ParamServerCommand(), node.WorkerCommand()} {
		c.Hidden = true // the cluster processes, for `cluster local` and single-binary deployments
		root.AddCommand(c)
	}
	suggest(root)
	return root
}

// writeJSON writes v as indented JSON to path, "-" meaning standard output.
// A file is written to a temporary name and renamed, so a reader never sees
// half of it.
func writeJSON(path string, stdout io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = stdout.Write(b)
		return err
	}
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
