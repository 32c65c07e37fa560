package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// suggest makes root's unknown commands and flags errors that name the
// nearest known ones: every command group (a command with subcommands and
// nothing to run itself) answers an unknown subcommand with an error instead
// of its help and exit status 0, and every command an unknown flag with the
// nearest flags by edit distance (or the commands that have that flag).
func suggest(root *cobra.Command) {
	root.SetFlagErrorFunc(flagError)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.SuggestionsMinimumDistance = 2
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					return cmd.Help()
				}
				return unknownCommand(cmd, args[0])
			}
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

// unknownCommand is the error for a subcommand name that cmd lacks.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %s", name, cmd.CommandPath())
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += ": did you mean " + orList(s) + "?"
	}
	return fmt.Errorf("%s (%s --help lists its commands)", msg, cmd.CommandPath())
}

// flagError adds suggestions to an unknown-flag error; other flag errors
// pass through.
func flagError(cmd *cobra.Command, err error) error {
	var ne *pflag.NotExistError
	if !errors.As(err, &ne) || ne.GetSpecifiedShortnames() != "" {
		return err
	}
	if a := cmd.Flags().Args(); cmd.HasSubCommands() && len(a) > 0 {
		// `logitpair evl --checkpoint x`: the command is what is wrong.
		return unknownCommand(cmd, a[0])
	}
	name := ne.GetSpecifiedName()
	msg := fmt.Sprintf("unknown flag --%s for %s", name, cmd.CommandPath())
	if near := nearestFlags(cmd.Flags(), name); len(near) > 0 {
		msg += ": did you mean " + orList(near) + "?"
	} else if owners := flagOwners(cmd.Root(), name); len(owners) > 0 {
		msg += ": it is a flag of " + orList(owners)
	}
	return fmt.Errorf("%s (%s --help lists its flags)", msg, cmd.CommandPath())
}

// nearestFlags returns the visible flags of fs nearest to name ("--NAME"),
// by edit distance (at most 1 for names under 5 letters, else 2, a
// transposition counting 1) or as names that name begins.
func nearestFlags(fs *pflag.FlagSet, name string) []string {
	type cand struct {
		name string
		d    int
	}
	limit := 2
	if len(name) < 5 {
		limit = 1
	}
	var cs []cand
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Deprecated != "" {
			return
		}
		d := editDistance(strings.ToLower(name), f.Name)
		if d <= limit || (len(name) >= 3 && strings.HasPrefix(f.Name, name)) {
			cs = append(cs, cand{f.Name, d})
		}
	})
	slices.SortStableFunc(cs, func(a, b cand) int { return a.d - b.d })
	var out []string
	for _, c := range cs[:min(len(cs), 3)] {
		out = append(out, "--"+c.name)
	}
	return out
}

// flagOwners returns the paths of the visible commands under root that have
// a flag called name.
func flagOwners(root *cobra.Command, name string) []string {
	var out []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		if f := c.Flags().Lookup(name); f != nil && !f.Hidden && (c.Runnable() && !c.HasSubCommands()) {
			out = append(out, c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	return out
}

// orList joins items as "a", "a or b", "a, b or c".
func orList(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// editDistance is the optimal-string-alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent
// letters each count 1.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
