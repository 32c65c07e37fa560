package cuda

import (
	"os"
	"path/filepath"
	"strings"
)

// goSources reads the package's non-test Go files.
func goSources() (map[string]string, error) {
	names, err := filepath.Glob("*.go")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out[n] = string(b)
	}
	return out, nil
}
