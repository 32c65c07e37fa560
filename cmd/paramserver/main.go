// Command paramserver is logitpair's paramserver process; see `paramserver --help` and
// docs/architecture.md. It only parses flags and calls pkg/node.
package main

import (
	"fmt"
	"os"

	"github.com/logitpair/logitpair/pkg/node"
)

func main() {
	cmd := node.ParamServerCommand()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "paramserver:", err)
		os.Exit(1)
	}
}
