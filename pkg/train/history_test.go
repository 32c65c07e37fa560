package train

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/logitpair/logitpair/pkg/history"
)

// TestRecordHistory: the trainer's history of a run whose sentinel trips
// once (collapseOnce: at step 6, back to 4) and that validates every 2
// steps: a start record, a train record per log interval with the mean
// terms and the learning rate, the validations, the checks with their
// verdicts and the rollback; its surviving path is the run's final one, and
// a resume appends a start record at the step it resumed from.
func TestRecordHistory(t *testing.T) {
	c := sentinelConfig(t)
	c.LogEvery, c.ValidateEvery = 2, 2
	tr := newTrainer(t, c)
	script(tr, collapseOnce)
	tr.measure = func() (validation, error) {
		return validation{Robust: 0.25, Clean: 0.75, Attack: "scripted", Examples: 4}, nil
	}
	var recs []history.Record
	tr.Record = func(r history.Record) { recs = append(recs, r) }
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s@%d", r.Kind, r.Step))
	}
	want := []string{"start@0",
		"train@2", "sentinel@2", "validation@2",
		"train@4", "sentinel@4", "validation@4",
		"train@6", "sentinel@6", "rollback@4",
		"train@6", "sentinel@6", "validation@6",
		"train@8", "sentinel@8", "validation@8"}
	if !slices.Equal(got, want) {
		t.Fatalf("records\n%v\nwant\n%v", got, want)
	}
	tr1, rb, chk := recs[1], recs[9], recs[8]
	if tr1.Interval != 2 || tr1.Loss == nil || tr1.CleanAcc == nil || tr1.AdvAcc == nil || tr1.LR == nil || *tr1.LR != c.LR || tr1.SamplesPerSec == nil {
		t.Errorf("train record %+v", tr1)
	}
	if rb.From != 6 || rb.LRScale == nil || *rb.LRScale != 0.5 || rb.Reason == "" {
		t.Errorf("rollback record %+v", rb)
	}
	if chk.Verdict != history.VerdictRollback || chk.Rule != "collapse" || *chk.MultiStep != 0.1 || recs[5].Verdict != history.VerdictGood {
		t.Errorf("sentinel records %+v, %+v", chk, recs[5])
	}
	if v := recs[3]; *v.Robust != 0.25 || *v.Clean != 0.75 || v.Examples != 4 {
		t.Errorf("validation record %+v", v)
	}
	// After the rollback the learning rate is halved.
	if lr := recs[10].LR; lr == nil || *lr != c.LR*0.5 {
		t.Errorf("learning rate after the rollback %v, want %v", lr, c.LR*0.5)
	}
	var path []string
	for _, r := range history.Surviving(recs) {
		path = append(path, fmt.Sprintf("%s@%d", r.Kind, r.Step))
	}
	if want := []string{"start@0", "train@2", "sentinel@2", "validation@2", "train@4", "sentinel@4", "validation@4",
		"rollback@4", "train@6", "sentinel@6", "validation@6", "train@8", "sentinel@8", "validation@8"}; !slices.Equal(path, want) {
		t.Fatalf("surviving path\n%v\nwant\n%v", path, want)
	}

	// A resume from the checkpoint of step 8 to 10.
	c.Steps, c.Resume = 10, true
	tr = newTrainer(t, c)
	script(tr, collapseOnce)
	tr.measure = func() (validation, error) { return validation{Robust: 0.25, Clean: 0.75}, nil }
	recs = nil
	tr.Record = func(r history.Record) { recs = append(recs, r) }
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 || recs[0].Kind != history.KindStart || recs[0].Step != 8 || recs[0].Steps != 10 || recs[0].Source != "train" {
		t.Fatalf("resumed run's first record %+v", recs)
	}
}
