package paramserver

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/logitpair/logitpair/pkg/internal/fuzzcheck"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/safetensors"
)

// noSync skips fsync: the fuzzers test decoding, not durability.
var noSync = withSync(func(*os.File) error { return nil })

var quiet = WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// logBytes is the file FileLog writes for es.
func logBytes(es []Entry) []byte {
	b := []byte(fileMagic)
	for _, e := range es {
		b = append(b, encodeRecord(e)...)
	}
	return b
}

// FuzzFileLog opens a commit log holding arbitrary bytes. OpenFileLog must
// either refuse it with a *CorruptError and leave the file as it was, or
// return entries that form a valid log (consecutive steps, sorted distinct
// workers below 2^31) and leave on disk exactly their encoding, which is a
// prefix of the input (only a torn tail is cut). The log must then reopen
// to the same entries and accept the next step. Allocation stays within a
// small multiple of the input: a record length cannot make it allocate.
func FuzzFileLog(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(fileMagic))
	f.Add(logBytes(sampleEntries(0, 4)))
	f.Add(logBytes([]Entry{{Step: 41, Workers: []int{0, 52, 1<<31 - 1}}}))
	torn := logBytes(sampleEntries(3, 6))
	f.Add(torn[:len(torn)-5])
	// One file per process, rewritten by each input: the fuzz function
	// runs one input at a time, and a directory per input would cost more
	// than the decoding under test.
	path := filepath.Join(f.TempDir(), "commit.log")
	f.Fuzz(func(t *testing.T, b []byte) {
		var l *FileLog
		var err error
		limit := uint64(64*len(b) + 1<<20)
		n := fuzzcheck.Allocated(limit, func() {
			if l != nil {
				l.Close()
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			l, err = OpenFileLog(path, noSync, quiet)
		})
		if n > limit {
			t.Fatalf("opening a %d-byte log allocated %d bytes (limit %d)", len(b), n, limit)
		}
		disk, rerr := os.ReadFile(path)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *CorruptError", err, err)
			}
			if ce.Offset < 0 || ce.Offset > int64(len(b)) {
				t.Fatalf("corrupt at offset %d of a %d-byte file", ce.Offset, len(b))
			}
			if !bytes.Equal(disk, b) {
				t.Fatalf("a refused log was changed on disk")
			}
			return
		}
		defer l.Close()
		es, err := l.Entries()
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range es {
			var last int64
			if i > 0 {
				last = es[i-1].Step
			}
			if err := checkEntry(e, last, i > 0); err != nil {
				t.Fatalf("entry %d: %v", i, err)
			}
			if len(e.Workers) > maxWorkers || e.Workers[len(e.Workers)-1] > 1<<31-1 {
				t.Fatalf("entry %d has workers Append refuses: %v", i, e.Workers)
			}
		}
		want := logBytes(es)
		if !bytes.Equal(disk, want) {
			t.Fatalf("file holds %d bytes, its %d entries encode to %d", len(disk), len(es), len(want))
		}
		if len(b) >= len(fileMagic) && !bytes.HasPrefix(b, want) {
			t.Fatalf("opening rewrote the log instead of cutting a torn tail")
		}
		if len(b) < len(fileMagic) && len(es) != 0 {
			t.Fatalf("a log without a full header has entries %v", es)
		}
		next := Entry{Step: 0, Workers: []int{0, 3}}
		if len(es) > 0 {
			next.Step = es[len(es)-1].Step + 1
		}
		if next.Step < 0 { // the last step is the largest int64
			return
		}
		if err := l.Append(next); err != nil {
			t.Fatalf("Append(%v) after open: %v", next, err)
		}
		l.Close()
		again, err := OpenFileLog(path, noSync, quiet)
		if err != nil {
			t.Fatalf("reopening: %v", err)
		}
		defer again.Close()
		got, err := again.Entries()
		if err != nil {
			t.Fatal(err)
		}
		if !entriesEqual(got, append(es, next)) {
			t.Fatalf("reopened to %d entries, want %d plus %v", len(got), len(es), next)
		}
	})
}

// stateFileSeeds returns valid shard state files (shard 0 at version 5)
// written by FileStore.Save.
func stateFileSeeds(f *testing.F) [][]byte {
	dir := f.TempDir()
	fs, err := NewFileStore(dir, 2)
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, st := range []ShardState{
		{Index: 0, Lo: 4, Hi: 7, BufLo: 0, BufHi: 2, Version: 5, Params: []float32{1, 2, 3}, Buffers: []float32{0.5, -1},
			OptimKind: optim.KindAdam, Optim: []optim.NamedState{{Name: "m", Data: []float32{0, 1, 0}}, {Name: "v", Data: []float32{1, 1, 1}}},
			EMA: []float32{1, 2, 2}},
		{Index: 0, Lo: 0, Hi: 1, Version: 5, Params: []float32{-3}, Buffers: []float32{}, OptimKind: optim.KindSGD,
			Optim: []optim.NamedState{{Name: "mom", Data: []float32{0.25}}}},
	} {
		if err := fs.Save(st); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(fs.path(st.Index, st.Version))
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzFileStoreLoad reads arbitrary bytes as shard 0's state file of
// version 5. LoadStep must either fail or return the state of shard 0 at
// version 5 whose lengths match its ranges (params Hi−Lo, buffers
// BufHi−BufLo, EMA and every optimizer slot one value per parameter), and
// that state must survive Save → LoadStep bit for bit.
func FuzzFileStoreLoad(f *testing.F) {
	for _, b := range stateFileSeeds(f) {
		f.Add(b)
	}
	fs := &FileStore{Dir: f.TempDir(), Keep: 2}
	other := &FileStore{Dir: f.TempDir(), Keep: 2}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(fs.path(0, 5), b, 0o644); err != nil {
			t.Fatal(err)
		}
		var st ShardState
		var ok bool
		var err error
		limit := uint64(64*len(b) + 1<<20)
		if n := fuzzcheck.Allocated(limit, func() { st, ok, err = fs.LoadStep(0, 5) }); n > limit {
			t.Fatalf("loading a %d-byte state allocated %d bytes (limit %d)", len(b), n, limit)
		}
		if err != nil {
			return
		}
		if !ok {
			t.Fatalf("LoadStep of an existing file: not found, no error")
		}
		if err := checkStored(st, 0, 5, true); err != nil {
			t.Fatalf("LoadStep returned an inconsistent state: %v", err)
		}
		if err := other.Save(st); err != nil {
			t.Fatalf("Save of a loaded state: %v", err)
		}
		again, ok, err := other.LoadStep(0, 5)
		if err != nil || !ok {
			t.Fatalf("LoadStep after Save: %v %v", ok, err)
		}
		sameState(t, "round trip", again, st)
		if again.Lo != st.Lo || again.Hi != st.Hi || again.BufLo != st.BufLo || again.BufHi != st.BufHi {
			t.Fatalf("ranges changed in the round trip")
		}
		// The file also decodes as a safetensors file (LoadStep reads
		// nothing else).
		if _, err := safetensors.Read(bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatalf("LoadStep accepted what safetensors.Read refuses: %v", err)
		}
	})
}
