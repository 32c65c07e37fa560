// Command logitpair is the user-facing CLI of logitpair: benchmarks of the
// numeric engine today; training, evaluation, data and the local cluster as
// their issues land. It only parses flags and wires packages together.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "logitpair:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode is 130 for a command that Ctrl-C interrupted (as a shell reports
// a process that SIGINT ended), 1 for any other error.
func exitCode(err error) int {
	var ie *interruptedError
	if errors.As(err, &ie) || errors.Is(err, context.Canceled) {
		return 130
	}
	return 1
}
