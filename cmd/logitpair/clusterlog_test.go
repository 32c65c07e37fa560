package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/paramserver"
)

// writeCoordDir writes a coordinator directory: a commit log with steps
// from..to-1 (workers {0, 2}), and, when ckpt ≥ 0, cluster-checkpoint.json
// recording ckpt and the model file ckpt-<ckpt>.safetensors.
func writeCoordDir(t *testing.T, from, to, ckpt int64) string {
	t.Helper()
	dir := t.TempDir()
	l, err := paramserver.OpenFileLog(filepath.Join(dir, "commit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for s := from; s < to; s++ {
		if err := l.Append(paramserver.Entry{Step: s, Workers: []int{0, 2}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if ckpt >= 0 {
		if err := (checkpoint.FileRecord{Dir: dir}).SetLastCheckpoint(ckpt); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, checkpoint.ModelFileName(ckpt)), []byte("model"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runBoth runs the CLI and returns standard output and standard error.
func runBoth(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

func TestClusterLogPrintsAndChecks(t *testing.T) {
	dir := writeCoordDir(t, 0, 5, 5)
	out, stderr, err := runBoth(t, "cluster", "log", "--expect-steps", "5", dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || lines[0] != "step 0 workers [0 2]" || lines[4] != "step 4 workers [0 2]" {
		t.Fatalf("unexpected output:\n%s", out)
	}
	if !strings.Contains(stderr, "ok: steps 0..4 each committed exactly once") || !strings.Contains(stderr, checkpoint.ModelFileName(5)) {
		t.Fatalf("unexpected confirmation %q", stderr)
	}

	// The file itself (no checkpoint check) and JSON output.
	out, _, err = runBoth(t, "cluster", "log", "--json", "--expect-steps", "5", filepath.Join(dir, "commit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var got []logEntryJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(got) != 5 || got[3].Step != 3 || len(got[3].Workers) != 2 || got[3].Workers[1] != 2 {
		t.Fatalf("unexpected entries %+v", got)
	}
}

func TestClusterLogCheckFailures(t *testing.T) {
	for _, tc := range []struct {
		name        string
		from, to    int64
		ckpt        int64
		removeModel bool
		expect      string
		want        string
	}{
		{name: "unfinished", from: 0, to: 4, ckpt: 4, expect: "5", want: "4 steps committed, want 5"},
		{name: "starts late", from: 2, to: 5, ckpt: 5, expect: "5", want: "entry 0 is step 2"},
		{name: "too many", from: 0, to: 6, ckpt: 6, expect: "5", want: "entry 5 is step 5, outside 0..4"},
		{name: "old checkpoint", from: 0, to: 5, ckpt: 4, expect: "5", want: "newest consistent checkpoint is step 4, want the final step 5"},
		{name: "no checkpoint", from: 0, to: 5, ckpt: -1, expect: "5", want: "no consistent checkpoint recorded"},
		{name: "model file missing", from: 0, to: 5, ckpt: 5, removeModel: true, expect: "5", want: "final checkpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeCoordDir(t, tc.from, tc.to, tc.ckpt)
			if tc.removeModel {
				if err := os.Remove(filepath.Join(dir, checkpoint.ModelFileName(tc.ckpt))); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err := runBoth(t, "cluster", "log", "--expect-steps", tc.expect, dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestClusterLogBadPath(t *testing.T) {
	if _, _, err := runBoth(t, "cluster", "log", filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing path: %v", err)
	}
	if _, _, err := runBoth(t, "cluster", "log", t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a coordinator directory") {
		t.Fatalf("empty directory: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "commit.log")
	if err := os.WriteFile(bad, []byte("not a log at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runBoth(t, "cluster", "log", bad); err == nil || !strings.Contains(err.Error(), "bad file header") {
		t.Fatalf("not a log: %v", err)
	}
}

// A torn last record is dropped from what is printed, but the file on disk
// is left exactly as it was (the coordinator may still own it).
func TestClusterLogLeavesTornFileAlone(t *testing.T) {
	dir := writeCoordDir(t, 0, 3, -1)
	path := filepath.Join(dir, "commit.log")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("LP\x10\x00")); err != nil { // half a record header
		t.Fatal(err)
	}
	f.Close()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := runBoth(t, "cluster", "log", "--expect-steps", "3", path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "\n"); n != 3 {
		t.Fatalf("%d entries printed, want 3:\n%s", n, out)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("cluster log modified %s (%d bytes before, %d after)", path, len(before), len(after))
	}
}

func TestCheckStepsOnceDuplicates(t *testing.T) {
	es := []paramserver.Entry{{Step: 0, Workers: []int{1}}, {Step: 1, Workers: []int{1}}, {Step: 1, Workers: []int{2}}}
	if err := checkStepsOnce(es, 3); err == nil || !strings.Contains(err.Error(), "step 1 is committed more than once") {
		t.Fatalf("duplicate: %v", err)
	}
	if err := checkStepsOnce([]paramserver.Entry{{Step: 0}}, 1); err == nil || !strings.Contains(err.Error(), "no workers") {
		t.Fatalf("empty set: %v", err)
	}
}
