package train

import (
	"reflect"
	"testing"

	"github.com/spf13/pflag"

	"github.com/logitpair/logitpair/pkg/models"
)

// TestEveryConfigKeyIsClassified: every Config field has a JSON key that
// is a training flag and is in exactly one of the two tables (replay
// depends on it or not), and the tables name no other key — so a field
// added to Config without a decision fails here.
func TestEveryConfigKeyIsClassified(t *testing.T) {
	c := DefaultConfig()
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	BindFlags(fs, &c)
	typ := reflect.TypeOf(Config{})
	keys := map[string]bool{}
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		key := JSONKey(f)
		if key == "" || key == f.Name {
			t.Errorf("field %s has no JSON key", f.Name)
			continue
		}
		keys[key] = true
		_, ind := replayIndependent[key]
		_, rel := replayRelevant[key]
		if ind == rel {
			t.Errorf("key %s (field %s): replay-independent %v, replay-relevant %v: classify it in exactly one table", key, f.Name, ind, rel)
		}
		if fs.Lookup(key) == nil {
			t.Errorf("key %s (field %s) is not a flag", key, f.Name)
		}
		if ReplayIndependent(key) != ind || !ConfigKey(key) {
			t.Errorf("key %s: ReplayIndependent %v, ConfigKey %v", key, ReplayIndependent(key), ConfigKey(key))
		}
	}
	for _, table := range []map[string]string{replayIndependent, replayRelevant} {
		for k, why := range table {
			if !keys[k] {
				t.Errorf("classified key %s is not a Config key", k)
			}
			if why == "" {
				t.Errorf("key %s: no reason", k)
			}
		}
	}
	if ReplayIndependent("no-such-key") || ConfigKey("no-such-key") {
		t.Error("an unknown key is classified")
	}
}

// TestConfigDiff: Diff lists exactly the keys that differ, in field order,
// with JSON values and their classification; an empty list or map equals a
// missing one.
func TestConfigDiff(t *testing.T) {
	logged := DefaultConfig()
	now := logged
	now.StaticModels, now.ModelConfig = []string{}, models.Config{}
	if d := logged.Diff(now); len(d) != 0 {
		t.Fatalf("empty vs nil: %v", d)
	}
	now.LR, now.Seed, now.LogEvery, now.Optimizer = 0.01, 2, 10, "sgd"
	now.ModelConfig = models.Config{"hidden": 16}
	want := []KeyDiff{
		{Key: "model-config", Logged: "{}", Now: `{"hidden":16}`},
		{Key: "optimizer", Logged: `"adam"`, Now: `"sgd"`},
		{Key: "lr", Logged: "0.0001", Now: "0.01"},
		{Key: "seed", Logged: "1", Now: "2"},
		{Key: "log-every", Logged: "100", Now: "10", ReplayIndependent: true},
	}
	got := logged.Diff(now)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff:\n got %+v\nwant %+v", got, want)
	}
	if s := got[2].String(); s != "lr 0.0001 (logged) vs 0.01 (now)" {
		t.Fatalf("String: %q", s)
	}
}
