package main

import (
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/train"
)

// TestHelpListsTheRegistries: every command's --model, --dataset and
// --objective help lists the registry's names (models.Names, the shared
// train.DatasetUsage, objective.Names), the names the parsers' errors list.
// pkg/train's TestHelpListsWhatTheParserAccepts checks the training flags
// against the parsers.
func TestHelpListsTheRegistries(t *testing.T) {
	modelList := strings.Join(models.Names(), ", ")
	objList := strings.Join(objective.Names(), ", ")
	root := newRootCmd()
	for _, tc := range []struct {
		cmd  []string
		flag string
		want string
	}{
		{[]string{"train"}, "model", modelList},
		{[]string{"train"}, "objective", objList},
		{[]string{"train"}, "dataset", train.DatasetUsage},
		{[]string{"eval"}, "model", modelList},
		{[]string{"eval"}, "dataset", train.DatasetUsage},
		{[]string{"bench", "step"}, "model", modelList},
		{[]string{"bench", "train-step"}, "model", modelList},
		{[]string{"bench", "train-step"}, "objective", objList},
		{[]string{"bench", "cluster"}, "model", modelList},
		{[]string{"plan"}, "model", modelList},
	} {
		c, _, err := root.Find(tc.cmd)
		if err != nil {
			t.Fatal(err)
		}
		f := c.Flags().Lookup(tc.flag)
		if f == nil {
			t.Errorf("%v: no --%s", tc.cmd, tc.flag)
			continue
		}
		if !strings.Contains(f.Usage, tc.want) {
			t.Errorf("%v --%s: help %q does not list %q", tc.cmd, tc.flag, f.Usage, tc.want)
		}
	}
}
