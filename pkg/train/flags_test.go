package train

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/wire"
)

// listed returns the names a help text or error message enumerates: the
// text after marker up to the first " (" or ")", split at commas and " or ",
// each item's last word ("or the image folders tiny-imagenet" →
// "tiny-imagenet").
func listed(t *testing.T, text, marker string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(text, marker)
	if !ok {
		t.Fatalf("%q does not contain %q", text, marker)
	}
	if i := strings.Index(rest, " ("); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.Index(rest, ")"); i >= 0 {
		rest = rest[:i]
	}
	var out []string
	for _, item := range strings.Split(strings.ReplaceAll(rest, " or ", ","), ",") {
		if f := strings.Fields(item); len(f) > 0 {
			out = append(out, f[len(f)-1])
		}
	}
	slices.Sort(out)
	return out
}

// TestHelpListsWhatTheParserAccepts: each enumerating training flag's help
// text names exactly the values its parser accepts: every listed name
// parses, and the parser's error for an unknown name lists the same names
// (the error naming five models while the help named four was issue 15).
func TestHelpListsWhatTheParserAccepts(t *testing.T) {
	c := DefaultConfig()
	fs := pflag.NewFlagSet("train", pflag.ContinueOnError)
	BindFlags(fs, &c)
	for _, tc := range []struct {
		flag, marker string
		parse        func(string) error
		errMarker    string
	}{
		{"model", "model: ", func(n string) error { _, err := models.Defaults(n); return err }, "known: "},
		{"objective", "objective: ", func(n string) error {
			return objective.Config{Name: n, PairWeight: 1, MixupAlpha: 1, SingleStep: objective.SingleStepLL, StaticModels: 1}.Validate()
		}, "known: "},
		{"dataset", "dataset: ", func(n string) error {
			_, err := data.Open(n, t.TempDir(), "test", data.OpenOptions{})
			if err != nil && !strings.Contains(err.Error(), "unknown dataset") {
				return nil // known, but no files in the empty folder
			}
			return err
		}, "want "},
		{"optimizer", "optimizer: ", func(n string) error { _, err := optim.DefaultConfig(n); return err }, "known: "},
		{"wire-format", "wire: ", func(n string) error { _, err := wire.ParseFormat(n); return err }, "use one of "},
	} {
		f := fs.Lookup(tc.flag)
		if f == nil {
			t.Fatalf("no --%s", tc.flag)
		}
		help := listed(t, f.Usage, tc.marker)
		if len(help) < 2 {
			t.Errorf("--%s: help %q lists %v", tc.flag, f.Usage, help)
		}
		for _, n := range help {
			if err := tc.parse(n); err != nil {
				t.Errorf("--%s: the help lists %q, which the parser rejects: %v", tc.flag, n, err)
			}
		}
		err := tc.parse("no-such-" + tc.flag)
		if err == nil {
			t.Fatalf("--%s: an unknown name parsed", tc.flag)
		}
		if known := listed(t, err.Error(), tc.errMarker); !slices.Equal(help, known) {
			t.Errorf("--%s: the help lists %v, the error for an unknown name %v (%v)", tc.flag, help, known, err)
		}
	}
}
