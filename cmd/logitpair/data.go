package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/logitpair/logitpair/pkg/data"
)

func newDataCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "data", Short: "Datasets"}
	var dir string
	fetch := &cobra.Command{
		Use:   "fetch mnist|fashion-mnist",
		Short: "Put a dataset into --dir: from local copies when present, else downloaded with SHA-256 verification",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				dir = "data/" + args[0]
			}
			opts := data.FetchOptions{Logf: func(format string, a ...any) {
				fmt.Fprintf(cmd.OutOrStdout(), format+"\n", a...)
			}}
			if err := data.Fetch(args[0], dir, opts); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is in %s\n", args[0], dir)
			return nil
		},
	}
	fetch.Flags().StringVar(&dir, "dir", "", "target directory (default data/NAME)")
	cmd.AddCommand(fetch)
	return cmd
}
