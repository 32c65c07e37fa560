package strong

import (
	"strings"
	"testing"
)

func headlineReport(steps, restarts, queries int) *Report {
	return &Report{Examples: 500, Eps: 0.3, CleanAccuracy: 0.988, RobustAccuracy: 0.884, Stages: []StageResult{
		{Stage: Stage{Name: "apgd-ce", Kind: StageAPGD, Steps: steps, Restarts: restarts}},
		{Stage: Stage{Name: "apgd-dlr", Kind: StageAPGD, Steps: steps, Restarts: restarts}},
		{Stage: Stage{Name: "apgd-t-ll", Kind: StageAPGD, Steps: steps, Restarts: 1}, Target: "least-likely"},
		{Stage: Stage{Name: "apgd-t-rnd", Kind: StageAPGD, Steps: steps, Restarts: 1}, Target: "random"},
		{Stage: Stage{Name: "square", Kind: StageSquare, Queries: queries, Examples: 200, Restarts: 1}},
	}}
}

// The headline names every attack with its budget and says whether the
// budget is the suite's full one.
func TestHeadlineNamesAttacksAndBudget(t *testing.T) {
	got := Headline(headlineReport(50, 2, 300))
	for _, want := range []string{"robust accuracy 88.40% (clean 98.80%) on 500 examples at ε = 0.3",
		"APGD-CE and APGD-DLR (50 steps × 2 restarts)", "targeted APGD (least-likely, random; 50 steps)",
		"Square (300 queries, 200 examples)", "the strong suite at a reduced budget."} {
		if !strings.Contains(got, want) {
			t.Errorf("headline lacks %q:\n%s", want, got)
		}
	}
	full := Headline(headlineReport(DefaultSteps, DefaultRestarts, DefaultSquareQueries))
	if !strings.HasSuffix(full, "the strong suite at its full budget.") {
		t.Errorf("full budget not recognised:\n%s", full)
	}
	// Fewer restarts alone make the budget reduced.
	if h := Headline(headlineReport(DefaultSteps, 5, DefaultSquareQueries)); !strings.HasSuffix(h, "reduced budget.") {
		t.Errorf("5 restarts called full:\n%s", h)
	}
}
