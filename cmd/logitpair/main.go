// Command logitpair is the user-facing CLI of logitpair: benchmarks of the
// numeric engine today; training, evaluation, data and the local cluster as
// their issues land. It only parses flags and wires packages together.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "logitpair:", err)
		os.Exit(1)
	}
}
