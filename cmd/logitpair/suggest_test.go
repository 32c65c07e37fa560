package main

import (
	"strings"
	"testing"
)

// TestUnknownCommandsAndFlagsSuggest: a mistyped command or flag is an
// error naming the nearest known ones, in groups as at the top.
func TestUnknownCommandsAndFlagsSuggest(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"trian"}, `unknown command "trian" for logitpair: did you mean train?`},
		{[]string{"evl", "--checkpoint", "x"}, `unknown command "evl" for logitpair: did you mean eval?`},
		{[]string{"data", "fetchh", "mnist"}, `unknown command "fetchh" for logitpair data: did you mean fetch? (logitpair data --help lists its commands)`},
		{[]string{"cluster", "locl"}, `unknown command "locl" for logitpair cluster: did you mean local or log?`},
		{[]string{"cluster", "stauts"}, `unknown command "stauts" for logitpair cluster: did you mean status?`},
		{[]string{"data", "zzz"}, `unknown command "zzz" for logitpair data (logitpair data --help`},
		{[]string{"train", "--stesp", "3"}, "unknown flag --stesp for logitpair train: did you mean --steps? (logitpair train --help lists its flags)"},
		{[]string{"train", "--stesp=3"}, "did you mean --steps?"},
		{[]string{"train", "--check", "3"}, "did you mean --checkpoint-every?"},
		{[]string{"eval", "--chekpoint", "x"}, "unknown flag --chekpoint for logitpair eval: did you mean --checkpoint?"},
		{[]string{"eval", "--out", "x"}, "unknown flag --out for logitpair eval: it is a flag of "},
		{[]string{"data", "fetch", "mnist", "--dri", "x"}, "did you mean --dir?"},
		{[]string{"train", "--xyzzy"}, "unknown flag --xyzzy for logitpair train (logitpair train --help lists its flags)"},
	}
	for _, c := range cases {
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
	// A group alone still prints its help.
	if out, err := run(t, "data"); err != nil || !strings.Contains(out, "fetch") {
		t.Errorf("logitpair data: %v\n%s", err, out)
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"steps", "steps", 0}, {"stesp", "steps", 1}, {"step", "steps", 1}, {"lr", "eps", 3}, {"", "abc", 3}, {"kitten", "sitting", 3}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}
