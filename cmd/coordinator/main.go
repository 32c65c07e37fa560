// Command coordinator is logitpair's coordinator process; see `coordinator --help` and
// docs/architecture.md. It only parses flags and calls pkg/node.
package main

import (
	"fmt"
	"os"

	"github.com/logitpair/logitpair/pkg/node"
)

func main() {
	cmd := node.CoordinatorCommand()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "coordinator:", err)
		os.Exit(1)
	}
}
