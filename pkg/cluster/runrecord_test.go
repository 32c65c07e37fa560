package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/logitpair/logitpair/pkg/train"
)

// TestEveryShapeKeyIsClassified: every Shape field has a JSON key with a
// decision and a reason in shapeKeys, and shapeKeys names no other key.
func TestEveryShapeKeyIsClassified(t *testing.T) {
	typ := reflect.TypeOf(Shape{})
	keys := map[string]bool{}
	for i := 0; i < typ.NumField(); i++ {
		key := train.JSONKey(typ.Field(i))
		keys[key] = true
		if s, ok := shapeKeys[key]; !ok || s.why == "" {
			t.Errorf("Shape key %s is not classified", key)
		}
		if train.ConfigKey(key) {
			t.Errorf("Shape key %s is also a training key", key)
		}
	}
	for k := range shapeKeys {
		if !keys[k] {
			t.Errorf("classified key %s is not a Shape key", k)
		}
	}
}

func testRun() RunRecord {
	c := train.DefaultConfig()
	c.Steps, c.LR, c.Out = 20, 0.001, "runs/x"
	return RunRecord{Train: c, Cluster: Shape{Workers: 4, Backups: 1, PS: 2}}
}

// checkRun is CheckRun with an observed logger; on success it records.
func checkRun(t *testing.T, dir string, now RunRecord, rc RunCheck) (*observer.ObservedLogs, error) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	record, err := CheckRun(dir, now, rc, zap.New(core))
	if err != nil {
		if record != nil {
			t.Fatal("CheckRun returned a record function with an error")
		}
		return logs, err
	}
	return logs, record()
}

// TestCheckRun: the first start records the configuration (only when told
// to, before the first step); a restart with the same configuration passes;
// a changed key replay depends on is refused, flag or not, naming the key
// and both values; a changed replay-independent key is refused without
// --allow-config-change naming it and accepted (logged at INFO, recorded)
// with it; keys the process ignores are not compared; nothing is written
// by a refused start.
func TestCheckRun(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, RunRecordFile)
	first := testRun()
	core, _ := observer.New(zapcore.InfoLevel)
	record, err := CheckRun(dir, first, RunCheck{}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("CheckRun wrote the record before it was told to: %v", err)
	}
	if err := record(); err != nil {
		t.Fatal(err)
	}
	if _, err := checkRun(t, dir, first, RunCheck{}); err != nil {
		t.Fatalf("same configuration: %v", err)
	}
	recorded, _ := os.ReadFile(path)

	refused := func(name string, now RunRecord, rc RunCheck, wantRefused, wantNotAllowed []string, wantText ...string) {
		t.Helper()
		_, err := checkRun(t, dir, now, rc)
		var ce *ConfigChangeError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: got %v, want a ConfigChangeError", name, err)
		}
		var gotR, gotN []string
		for _, d := range ce.Refused {
			gotR = append(gotR, d.Key)
		}
		for _, d := range ce.NotAllowed {
			gotN = append(gotN, d.Key)
		}
		if !reflect.DeepEqual(gotR, wantRefused) || !reflect.DeepEqual(gotN, wantNotAllowed) {
			t.Errorf("%s: refused %v, not allowed %v; want %v, %v", name, gotR, gotN, wantRefused, wantNotAllowed)
		}
		for _, w := range append(wantText, "--dir "+dir+" was started with a different training configuration") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", name, err, w)
			}
		}
		if b, _ := os.ReadFile(path); string(b) != string(recorded) {
			t.Errorf("%s: the refused start changed the record", name)
		}
	}

	other := first
	other.Train.LR, other.Train.Seed = 0.01, 2
	refused("lr and seed", other, RunCheck{}, []string{"lr", "seed"}, nil,
		"lr 0.001 (logged) vs 0.01 (now), seed 1 (logged) vs 2 (now)", "start a new --dir")
	other.Train.LogEvery = 10
	refused("lr, seed and log-every, log-every allowed", other, RunCheck{Allow: []string{"log-every"}}, []string{"lr", "seed"}, nil)
	refused("lr, seed and log-every", other, RunCheck{}, []string{"lr", "seed"}, []string{"log-every"}, "--allow-config-change=log-every would accept")

	cadence := first
	cadence.Train.LogEvery, cadence.Train.CheckpointEvery = 10, 7
	refused("cadence", cadence, RunCheck{}, nil, []string{"log-every", "checkpoint-every"},
		"log-every 100 (logged) vs 10 (now), checkpoint-every 1000 (logged) vs 7 (now)",
		"start a new --dir, or pass --allow-config-change=log-every,checkpoint-every to change settings replay does not depend on")
	refused("cadence, one allowed", cadence, RunCheck{Allow: []string{"log-every"}}, nil, []string{"checkpoint-every"})

	shape := first
	shape.Cluster.Workers = 5
	refused("workers", shape, RunCheck{Allow: []string{"elastic"}}, []string{"workers"}, nil, "workers 4 (logged) vs 5 (now)")

	// Flags that name a key replay depends on, or no key, are errors of
	// their own, changed or not.
	for _, allow := range []string{"lr", "workers", "log-evry"} {
		if _, err := checkRun(t, dir, first, RunCheck{Allow: []string{allow}}); err == nil || !strings.Contains(err.Error(), "--allow-config-change") || !strings.Contains(err.Error(), allow) {
			t.Errorf("--allow-config-change=%s: got %v", allow, err)
		}
	}

	// Ignored keys are not compared.
	ignored := first
	ignored.Train.Out, ignored.Train.Threads = "elsewhere", 3
	if _, err := checkRun(t, dir, ignored, RunCheck{Ignore: []string{"out", "threads"}}); err != nil {
		t.Fatalf("ignored keys: %v", err)
	}

	// Allowed: logged at INFO and recorded; the next start compares with it.
	cadence.Cluster.Elastic = true
	logs, err := checkRun(t, dir, cadence, RunCheck{Allow: []string{"log_every", "checkpoint-every", "elastic"}})
	if err != nil {
		t.Fatalf("allowed changes: %v", err)
	}
	var changed []string
	for _, e := range logs.FilterMessage("configuration changed on restart (--allow-config-change)").All() {
		if e.Level != zapcore.InfoLevel {
			t.Errorf("logged at %v", e.Level)
		}
		f := e.ContextMap()
		changed = append(changed, f["key"].(string)+":"+f["logged"].(string)+"→"+f["now"].(string))
	}
	if want := []string{"log-every:100→10", "checkpoint-every:1000→7", "elastic:false→true"}; !reflect.DeepEqual(changed, want) {
		t.Fatalf("logged changes %v, want %v", changed, want)
	}
	if _, err := checkRun(t, dir, cadence, RunCheck{}); err != nil {
		t.Fatalf("after the recorded change: %v", err)
	}
	recorded, _ = os.ReadFile(path)
	refused("back to the first cadence", first, RunCheck{}, nil, []string{"log-every", "checkpoint-every", "elastic"})
}

// TestCheckRunUnreadableRecord: a damaged record is an error naming the
// file, and is not replaced.
func TestCheckRunUnreadableRecord(t *testing.T) {
	for name, content := range map[string]string{"truncated": `{"format": "logitpair-run-v1", "train": {"lr"`, "other format": `{"format": "x"}`} {
		dir := t.TempDir()
		path := filepath.Join(dir, RunRecordFile)
		os.WriteFile(path, []byte(content), 0o644)
		if _, err := checkRun(t, dir, testRun(), RunCheck{}); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: got %v, want an error naming %s", name, err, path)
		}
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Errorf("%s: the record was replaced", name)
		}
	}
}

// TestCheckRunOlderRecord: a key the record lacks (added to the
// configuration after the run started) compares as its default.
func TestCheckRunOlderRecord(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, RunRecordFile), []byte(`{"format": "logitpair-run-v1", "train": {"lr": 0.001, "steps": 20, "out": "runs/x"},
		"cluster": {"workers": 4, "backups": 1, "ps": 2}}`), 0o644)
	if _, err := checkRun(t, dir, testRun(), RunCheck{}); err != nil {
		t.Fatal(err)
	}
}
