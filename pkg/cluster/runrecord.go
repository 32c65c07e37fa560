package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/atomicfile"
	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/train"
)

// RunRecordFile is the coordinator's record, in its --dir, of the
// configuration its run was started with: written atomically at the first
// start, before the first step, and compared at every later start
// (CheckRun), because the commit log only replays under the configuration
// that wrote it.
const RunRecordFile = "run.json"

const runRecordFormat = "logitpair-run-v1"

// Shape is the coordinator's cluster flags that, beside the training
// configuration, define a run. Every field is classified in shapeKeys
// (TestEveryShapeKeyIsClassified).
type Shape struct {
	Workers int  `json:"workers"`
	Backups int  `json:"backups"`
	PS      int  `json:"ps"`
	Elastic bool `json:"elastic"`
}

// shapeKeys says, for each Shape key, whether replay is independent of it
// (as train.ReplayIndependent does for the training keys), and why.
var shapeKeys = map[string]struct {
	independent bool
	why         string
}{
	"workers": {false, "each slot's batch is its data shard out of W, and the commit log names slots of W"},
	"backups": {false, "every step averages W − b gradients"},
	"ps":      {false, "each shard's saved state is its range of a partition into K shards"},
	"elastic": {true, "each step's worker set is in the commit log, and replay averages exactly that set; --elastic only decides whether a step waits for W − b workers"},
}

func shapeIndependent(key string) bool { return shapeKeys[key].independent }

// RunRecord is RunRecordFile's content.
type RunRecord struct {
	Format  string       `json:"format"`
	Train   train.Config `json:"train"`
	Cluster Shape        `json:"cluster"`
}

// RunCheck is what CheckRun may accept besides an unchanged configuration.
type RunCheck struct {
	// Allow names the keys the operator lets change
	// (--allow-config-change): only replay-independent ones may be named.
	Allow []string
	// Ignore names training keys the process does not use (the
	// coordinator's --out, --threads, ...): they are neither compared nor
	// recorded as changed.
	Ignore []string
}

// ConfigChangeError is CheckRun's refusal: the run in Dir was started with
// a configuration that differs from this start's.
type ConfigChangeError struct {
	Dir string
	// Refused are changed keys replay depends on: never accepted.
	Refused []train.KeyDiff
	// NotAllowed are changed replay-independent keys that Allow does not name.
	NotAllowed []train.KeyDiff
}

func (e *ConfigChangeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--dir %s was started with a different training configuration: ", e.Dir)
	if len(e.Refused) > 0 {
		b.WriteString(joinDiffs(e.Refused))
		b.WriteString("; the commit log replays only under the configuration that wrote it, so these keys cannot change on a run: start a new --dir to train with them")
		if len(e.NotAllowed) > 0 {
			fmt.Fprintf(&b, " (also changed: %s, which --allow-config-change=%s would accept)", joinDiffs(e.NotAllowed), joinKeys(e.NotAllowed))
		}
		return b.String()
	}
	b.WriteString(joinDiffs(e.NotAllowed))
	fmt.Fprintf(&b, "; start a new --dir, or pass --allow-config-change=%s to change settings replay does not depend on", joinKeys(e.NotAllowed))
	return b.String()
}

func joinDiffs(ds []train.KeyDiff) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.String()
	}
	return strings.Join(s, ", ")
}

func joinKeys(ds []train.KeyDiff) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Key
	}
	return strings.Join(s, ",")
}

// checkAllow validates --allow-config-change: every entry is a training or
// cluster key (underscores read as dashes) that replay does not depend on.
// It returns the normalized keys. ignore (RunCheck.Ignore) only shortens
// the list of keys an error suggests.
func checkAllow(allow, ignore []string) ([]string, error) {
	var out []string
	for _, k := range allow {
		k = strings.ReplaceAll(strings.TrimSpace(k), "_", "-")
		s, isShape := shapeKeys[k]
		switch {
		case k == "":
			continue
		case !isShape && !train.ConfigKey(k):
			return nil, fmt.Errorf("--allow-config-change: unknown key %q (keys are the training and cluster flags' names, e.g. log-every)", k)
		case isShape && !s.independent:
			return nil, fmt.Errorf("--allow-config-change: %s cannot change on a run: %s; start a new --dir to change it", k, s.why)
		case !isShape && !train.ReplayIndependent(k):
			may := []string{}
			for _, key := range train.ReplayIndependentKeys() {
				if !slices.Contains(ignore, key) {
					may = append(may, key)
				}
			}
			for key, s := range shapeKeys {
				if s.independent {
					may = append(may, key)
				}
			}
			slices.Sort(may)
			return nil, fmt.Errorf("--allow-config-change: %s cannot change on a run: replay depends on it; start a new --dir to change it (keys that may change: %s)",
				k, strings.Join(may, ", "))
		}
		out = append(out, k)
	}
	return out, nil
}

// CheckRun checks this start's configuration (now) against the one dir's
// run was started with (RunRecordFile). A record that differs in keys
// replay depends on, or in others that rc.Allow does not name, is a
// *ConfigChangeError; changes that rc.Allow accepts are logged at INFO. A
// record that cannot be read is an error naming the file. CheckRun writes
// nothing: record writes the record (atomically) when dir has none or its
// configuration changed, and must be called before the first step — after
// everything that can still fail at start, so that a start that fails
// records no configuration that never ran.
func CheckRun(dir string, now RunRecord, rc RunCheck, log *zap.Logger) (record func() error, err error) {
	allow, err := checkAllow(rc.Allow, rc.Ignore)
	if err != nil {
		return nil, err
	}
	now.Format = runRecordFormat
	path := filepath.Join(dir, RunRecordFile)
	write := func() error { return writeRunRecord(path, now) }
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if step, ok, cerr := (checkpoint.FileRecord{Dir: dir}).LastCheckpoint(); cerr == nil && ok {
			log.Warn("the directory holds a run from before run records: its configuration cannot be checked; recording this start's",
				zap.String("dir", dir), zap.Int64("checkpoint", step), zap.String("record", path))
		}
		return write, nil
	}
	if err != nil {
		return nil, err
	}
	logged, err := readRunRecord(path, b)
	if err != nil {
		return nil, err
	}
	var refused, notAllowed, accepted []train.KeyDiff
	for _, d := range append(logged.Train.Diff(now.Train), train.DiffFields(logged.Cluster, now.Cluster, shapeIndependent)...) {
		switch {
		case slices.Contains(rc.Ignore, d.Key):
		case !d.ReplayIndependent:
			refused = append(refused, d)
		case !slices.Contains(allow, d.Key):
			notAllowed = append(notAllowed, d)
		default:
			accepted = append(accepted, d)
		}
	}
	if len(refused)+len(notAllowed) > 0 {
		return nil, &ConfigChangeError{Dir: dir, Refused: refused, NotAllowed: notAllowed}
	}
	if len(accepted) == 0 {
		return func() error { return nil }, nil
	}
	for _, d := range accepted {
		log.Info("configuration changed on restart (--allow-config-change)", zap.String("key", d.Key), zap.String("logged", d.Logged), zap.String("now", d.Now))
	}
	return write, nil
}

// readRunRecord decodes a record over the defaults, so that a key added to
// the configuration after the run started compares as its default.
func readRunRecord(path string, b []byte) (RunRecord, error) {
	r := RunRecord{Train: train.DefaultConfig()}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("%s (the configuration this run was started with) cannot be read: %w; restore it, or start a new --dir", path, err)
	}
	if r.Format != runRecordFormat {
		return r, fmt.Errorf("%s is not a logitpair run record (format %q, want %q)", path, r.Format, runRecordFormat)
	}
	return r, nil
}

func writeRunRecord(path string, r RunRecord) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("recording the run's configuration: %w", err)
	}
	return nil
}

// ReadRunRecord reads the run record a coordinator left in dir; ok is false
// when there is none.
func ReadRunRecord(dir string) (rec RunRecord, ok bool, err error) {
	path := filepath.Join(dir, RunRecordFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return RunRecord{}, false, nil
	}
	if err != nil {
		return RunRecord{}, false, err
	}
	rec, err = readRunRecord(path, b)
	return rec, err == nil, err
}
