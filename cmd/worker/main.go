// Command worker is logitpair's worker process; see `worker --help` and
// docs/architecture.md. It only parses flags and calls pkg/node.
package main

import (
	"fmt"
	"os"

	"github.com/logitpair/logitpair/pkg/node"
)

func main() {
	cmd := node.WorkerCommand()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}
