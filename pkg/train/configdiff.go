package train

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// KeyDiff is one configuration key whose value differs between the
// configuration a run was started with (Logged) and the one it is started
// again with (Now). Values are JSON, as in a configuration file.
type KeyDiff struct {
	Key         string
	Logged, Now string
	// ReplayIndependent: the key may change on a run (see ReplayIndependent).
	ReplayIndependent bool
}

func (d KeyDiff) String() string {
	return fmt.Sprintf("%s %s (logged) vs %s (now)", d.Key, d.Logged, d.Now)
}

// A run is replayable: every step is a function of the configuration, the
// seed, the step and the worker slot, and a restarted run (a coordinator on
// its --dir, `logitpair train --resume`) continues the same computation
// only if the configuration is the same. A key is replay-independent when
// neither the committed steps' values nor the continuation of the run from
// its saved state depend on it: how often to log, checkpoint or validate,
// where files are, how many threads compute (every kernel gives the same
// bits at any thread count), how long the run is. Every other key defines
// the run. Every Config field is in exactly one of the two tables
// (TestEveryConfigKeyIsClassified), with the reason.
var replayIndependent = map[string]string{
	"data-dir":          "where the dataset is read from (the data are named by dataset; a cluster worker may override it)",
	"threads":           "compute threads: every kernel gives the same bits at any thread count",
	"steps":             "the run's length: a step's computation does not depend on it (schedules name their own lengths), so a run may be extended",
	"log-every":         "progress-line cadence",
	"out":               "where checkpoints are written",
	"resume":            "whether this start continues a run",
	"resume-from":       "which checkpoint this start continues from",
	"checkpoint-every":  "checkpoint cadence: a checkpoint stores the state, it does not change it",
	"keep":              "how many checkpoints are kept",
	"validate-every":    "validation cadence: validation reads the model, it does not change it",
	"validate-examples": "how many examples validation scores",
}

var replayRelevant = map[string]string{
	"dataset":         "the training data",
	"augment":         "each batch's augmentation",
	"model":           "the network",
	"model-config":    "the network's shape",
	"objective":       "the loss",
	"pair-weight":     "the loss",
	"label-smoothing": "the loss",
	"noise-std":       "the loss's input noise",
	"mixup-alpha":     "the loss's mixing",
	"single-step":     "the adversarial batch",
	"random-eps":      "the adversarial batch",
	"static-models":   "the adversarial batch's source models",
	"source-schedule": "each step's source model",
	"attack":          "the adversarial batch",
	"eps":             "the adversarial batch",
	"step-size":       "the adversarial batch",
	"attack-steps":    "the adversarial batch",
	"restarts":        "the adversarial batch",
	"attack-target":   "the adversarial batch",
	"batch":           "each step's examples",
	"optimizer":       "the update rule and its saved state",
	"lr":              "the update",
	"lr-schedule":     "the update",
	"weight-decay":    "the update",
	"ema":             "the EMA weights and their saved state",
	"seed":            "initialization, data order, augmentation and attacks",
	"rmsprop-epsilon": "the update",
	"init-from":       "the initial weights",
	"wire-format":     "the gradients' rounding (bf16 pushes)",
	// The sentinel changes the trajectory: a trip rolls the run back and
	// lowers the learning rate, and whether it trips depends on every one
	// of its settings (the check's examples and attack included).
	"sentinel-every":         "when the sentinel checks, hence where a rollback can happen",
	"sentinel-examples":      "the sentinel's measurement, hence whether it rolls back",
	"sentinel-steps":         "the sentinel's measurement, hence whether it rolls back",
	"sentinel-collapse":      "whether the sentinel rolls back",
	"sentinel-max-gap":       "whether the sentinel rolls back",
	"sentinel-lr-factor":     "the update after a rollback",
	"sentinel-max-rollbacks": "whether a trip stops the run",
}

// ReplayIndependent reports whether configuration key (a flag name, e.g.
// "log-every") may change on a run without changing what its steps compute.
// Unknown keys are not.
func ReplayIndependent(key string) bool {
	_, ok := replayIndependent[key]
	return ok
}

// ConfigKey reports whether key is a Config key (a training flag's name).
func ConfigKey(key string) bool {
	_, a := replayIndependent[key]
	_, b := replayRelevant[key]
	return a || b
}

// Diff returns the keys whose values differ between c (the logged
// configuration) and now, in the order of Config's fields.
func (c Config) Diff(now Config) []KeyDiff {
	return DiffFields(c, now, ReplayIndependent)
}

// DiffFields returns the fields whose values differ between logged and now,
// two values of one struct type whose fields carry JSON names, in field
// order. Values compare as their JSON; an empty slice or map equals a nil
// one. independent classifies each differing key.
func DiffFields(logged, now any, independent func(key string) bool) []KeyDiff {
	a, b := reflect.ValueOf(logged), reflect.ValueOf(now)
	if a.Type() != b.Type() || a.Kind() != reflect.Struct {
		panic(fmt.Sprintf("train.DiffFields: %v and %v are not one struct type", a.Type(), b.Type()))
	}
	var out []KeyDiff
	for i := 0; i < a.NumField(); i++ {
		key := JSONKey(a.Type().Field(i))
		if key == "" {
			continue
		}
		la, lb := jsonValue(a.Field(i)), jsonValue(b.Field(i))
		if la != lb {
			out = append(out, KeyDiff{Key: key, Logged: la, Now: lb, ReplayIndependent: independent(key)})
		}
	}
	return out
}

// JSONKey is a struct field's JSON name ("" for unexported or "-" fields).
func JSONKey(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return f.Name
	}
	return name
}

func jsonValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Slice:
		if v.Len() == 0 {
			return "[]"
		}
	case reflect.Map:
		if v.Len() == 0 {
			return "{}"
		}
	}
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return fmt.Sprintf("%v", v.Interface())
	}
	return string(b)
}

// ReplayIndependentKeys returns the keys that may change on a run, sorted.
func ReplayIndependentKeys() []string {
	var out []string
	for k := range replayIndependent {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
