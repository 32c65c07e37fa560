package paramserver

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func entriesEqual(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool {
		return x.Step == y.Step && slices.Equal(x.Workers, y.Workers) && x.LRScale == y.LRScale
	})
}

func mustEntries(t *testing.T, l CommitLog) []Entry {
	t.Helper()
	es, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func sampleEntries(from, to int64) []Entry {
	var es []Entry
	for s := from; s < to; s++ {
		es = append(es, Entry{Step: s, Workers: [][]int{{0, 1, 2}, {1, 3}, {0, 2, 3}, {2}}[s%4]})
	}
	return es
}

// testLogContract runs the behaviour every CommitLog shares.
func testLogContract(t *testing.T, l CommitLog) {
	if es := mustEntries(t, l); len(es) != 0 {
		t.Fatalf("new log has %v", es)
	}
	want := sampleEntries(5, 10) // any first step
	for _, e := range want {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustEntries(t, l); !entriesEqual(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	for _, bad := range []Entry{
		{Step: 11, Workers: []int{0}}, // gap
		{Step: 9, Workers: []int{0}},  // repeat
		{Step: 4, Workers: []int{0}},  // back
		{Step: 10},                    // no workers
		{Step: 10, Workers: []int{1, 0}},
		{Step: 10, Workers: []int{1, 1}},
		{Step: 10, Workers: []int{-1, 1}},
	} {
		if err := l.Append(bad); err == nil {
			t.Errorf("Append(%v): no error", bad)
		}
	}
	if err := l.Append(Entry{Step: 11, Workers: []int{0}}); !errors.Is(err, ErrNotConsecutive) {
		t.Errorf("gap: %v", err)
	}
	if got := mustEntries(t, l); !entriesEqual(got, want) {
		t.Fatalf("entries after refused appends %v", got)
	}
	// Entries is a copy.
	got := mustEntries(t, l)
	got[0].Workers[0] = 99
	if !entriesEqual(mustEntries(t, l), want) {
		t.Fatal("Entries aliases the log")
	}
	// TruncateAfter, then append from there.
	if err := l.TruncateAfter(7); err != nil {
		t.Fatal(err)
	}
	if got := mustEntries(t, l); !entriesEqual(got, want[:3]) {
		t.Fatalf("after TruncateAfter(7): %v", got)
	}
	if err := l.TruncateAfter(100); err != nil { // nothing after 100
		t.Fatal(err)
	}
	if err := l.Append(Entry{Step: 9, Workers: []int{0}}); !errors.Is(err, ErrNotConsecutive) {
		t.Errorf("append 9 after truncating to 7: %v", err)
	}
	if err := l.Append(Entry{Step: 8, Workers: []int{4}}); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateAfter(-1); err != nil {
		t.Fatal(err)
	}
	if got := mustEntries(t, l); len(got) != 0 {
		t.Fatalf("after TruncateAfter(-1): %v", got)
	}
	if err := l.Append(Entry{Step: 0, Workers: []int{0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(Entry{Step: 1, Workers: []int{0}}); !errors.Is(err, ErrLogClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, err := l.Entries(); !errors.Is(err, ErrLogClosed) {
		t.Errorf("Entries after Close: %v", err)
	}
}

func TestMemLog(t *testing.T) { testLogContract(t, NewMemLog()) }

func TestFileLogContract(t *testing.T) {
	path := filepath.Join(t.TempDir(), "commit.log")
	l, err := OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	testLogContract(t, l)
	l2, err := OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if got := mustEntries(t, l2); !entriesEqual(got, []Entry{{Step: 0, Workers: []int{0, 1}}}) {
		t.Errorf("reopened: %v", got)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

// openLogged opens path with a logger writing into the returned buffer.
func openLogged(t *testing.T, path string, opts ...FileLogOption) (*FileLog, *bytes.Buffer, error) {
	t.Helper()
	var buf bytes.Buffer
	l, err := OpenFileLog(path, append([]FileLogOption{WithLogger(slog.New(slog.NewTextHandler(&buf, nil)))}, opts...)...)
	if err == nil {
		t.Cleanup(func() { l.Close() })
	}
	return l, &buf, err
}

// writeLog writes entries to a new log at path and returns each record's
// offset and the file size.
func writeLog(t *testing.T, path string, es []Entry) (offsets []int64, size int64) {
	t.Helper()
	l, err := OpenFileLog(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		fi, _ := os.Stat(path)
		offsets = append(offsets, fi.Size())
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	fi, _ := os.Stat(path)
	return offsets, fi.Size()
}

func TestFileLogReopenAndAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	want := sampleEntries(0, 20)
	writeLog(t, path, want[:10])
	l, buf, err := openLogged(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("clean open logged %q", buf.String())
	}
	for _, e := range want[10:] {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	l2, _, err := openLogged(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustEntries(t, l2); !entriesEqual(got, want) {
		t.Errorf("reopened %v, want %v", got, want)
	}
}

// TestFileLogTornTail: every prefix of a last record (a crash in the middle
// of Append), a zero-filled tail and a last record with a bad checksum are
// truncated with a warning; the log then accepts the next step.
func TestFileLogTornTail(t *testing.T) {
	es := sampleEntries(0, 4)
	rec := encodeRecord(Entry{Step: 4, Workers: []int{0, 1, 5}})
	tails := map[string][]byte{"zero-filled tail": make([]byte, 40)}
	for k := 1; k < len(rec); k++ {
		tails["prefix "+strings.Repeat("#", k)] = rec[:k]
	}
	flipped := slices.Clone(rec)
	flipped[len(flipped)-1] ^= 0x10
	tails["last record checksum"] = flipped
	half := slices.Clone(rec)
	clear(half[recHeader:])
	tails["header written, payload zero"] = half
	for name, tail := range tails {
		path := filepath.Join(t.TempDir(), "log")
		_, size := writeLog(t, path, es)
		f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		f.Write(tail)
		f.Close()
		l, buf, err := openLogged(t, path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := mustEntries(t, l); !entriesEqual(got, es) {
			t.Fatalf("%s: entries %v", name, got)
		}
		if fi, _ := os.Stat(path); fi.Size() != size {
			t.Errorf("%s: file is %d bytes, want %d (torn tail truncated)", name, fi.Size(), size)
		}
		if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "torn") {
			t.Errorf("%s: no warning logged: %q", name, buf.String())
		}
		if err := l.Append(Entry{Step: 4, Workers: []int{2}}); err != nil {
			t.Fatalf("%s: append after recovery: %v", name, err)
		}
		l.Close()
		l2, _, err := openLogged(t, path)
		if err != nil {
			t.Fatal(err)
		}
		if got := mustEntries(t, l2); len(got) != 5 || got[4].Workers[0] != 2 {
			t.Fatalf("%s: after recovery and append: %v", name, got)
		}
	}
}

// TestFileLogCorruption: damage before the last record is an error naming
// the offset of the damaged record, and the file is left alone.
func TestFileLogCorruption(t *testing.T) {
	es := sampleEntries(0, 6)
	type damage struct {
		name   string
		record int                       // damaged record
		mut    func(b []byte, off int64) // b is the whole file
	}
	for _, d := range []damage{
		{"payload bit flip", 2, func(b []byte, off int64) { b[off+recHeader+3] ^= 1 }},
		{"checksum bit flip", 1, func(b []byte, off int64) { b[off+11] ^= 0x80 }},
		{"length grown", 3, func(b []byte, off int64) { b[off+2] += 4 }},
		{"length and complement grown", 3, func(b []byte, off int64) { b[off+2] += 4; b[off+6] -= 4 }},
		{"marker", 4, func(b []byte, off int64) { b[off] = 'X' }},
		{"first record", 0, func(b []byte, off int64) { b[off+recHeader] ^= 0xff }},
	} {
		path := filepath.Join(t.TempDir(), "log")
		offsets, _ := writeLog(t, path, es)
		b, _ := os.ReadFile(path)
		d.mut(b, offsets[d.record])
		os.WriteFile(path, b, 0o644)
		_, _, err := openLogged(t, path)
		var ce *CorruptError
		if !errors.As(err, &ce) {
			t.Errorf("%s: err = %v, want *CorruptError", d.name, err)
			continue
		}
		if ce.Offset != offsets[d.record] || !strings.Contains(err.Error(), "offset") {
			t.Errorf("%s: offset %d, want %d (%v)", d.name, ce.Offset, offsets[d.record], err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, b) {
			t.Errorf("%s: corrupt file was modified", d.name)
		}
	}
	// Not a commit log.
	path := filepath.Join(t.TempDir(), "log")
	os.WriteFile(path, []byte("hello, world\n"), 0o644)
	var ce *CorruptError
	if _, _, err := openLogged(t, path); !errors.As(err, &ce) || ce.Offset != 0 {
		t.Errorf("foreign file: %v", err)
	}
	// A well-formed record with a step that breaks the sequence.
	path = filepath.Join(t.TempDir(), "log")
	writeLog(t, path, es[:3])
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(encodeRecord(Entry{Step: 7, Workers: []int{0}}))
	f.Write(encodeRecord(Entry{Step: 8, Workers: []int{0}}))
	f.Close()
	fi, _ := os.Stat(path)
	if _, _, err := openLogged(t, path); !errors.As(err, &ce) || ce.Offset != fi.Size()-2*int64(len(encodeRecord(Entry{Step: 7, Workers: []int{0}}))) {
		t.Errorf("non-consecutive record: %v", err)
	}
}

// TestFileLogTornHeader: a file torn while its header was written is
// started afresh.
func TestFileLogTornHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	os.WriteFile(path, []byte(fileMagic[:3]), 0o644)
	l, buf, err := openLogged(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "torn") {
		t.Errorf("no warning: %q", buf.String())
	}
	if err := l.Append(Entry{Step: 3, Workers: []int{1}}); err != nil {
		t.Fatal(err)
	}
}

// TestFileLogSync: every Append and TruncateAfter fsyncs; a failed fsync
// fails the Append and breaks the log until it is reopened.
func TestFileLogSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	syncs, fail := 0, false
	syncErr := errors.New("injected fsync failure")
	hook := withSync(func(f *os.File) error {
		syncs++
		if fail {
			return syncErr
		}
		return f.Sync()
	})
	l, _, err := openLogged(t, path, hook)
	if err != nil {
		t.Fatal(err)
	}
	if syncs != 1 { // the new file's header
		t.Errorf("%d fsyncs creating the log", syncs)
	}
	for i, e := range sampleEntries(0, 5) {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
		if syncs != 2+i {
			t.Fatalf("after %d appends: %d fsyncs", i+1, syncs)
		}
	}
	if err := l.TruncateAfter(2); err != nil {
		t.Fatal(err)
	}
	if syncs != 7 { // the temporary file
		t.Errorf("TruncateAfter: %d fsyncs, want 7", syncs)
	}
	fail = true
	if err := l.TruncateAfter(0); !errors.Is(err, syncErr) {
		t.Errorf("TruncateAfter with failing fsync: %v", err)
	}
	if got := mustEntries(t, l); len(got) != 3 {
		t.Errorf("failed TruncateAfter changed the entries: %v", got)
	}
	if err := l.Append(Entry{Step: 3, Workers: []int{0}}); !errors.Is(err, syncErr) {
		t.Fatalf("Append with failing fsync: %v", err)
	}
	fail = false
	if err := l.Append(Entry{Step: 3, Workers: []int{0}}); err == nil || !strings.Contains(err.Error(), "reopen") {
		t.Errorf("Append on a broken log: %v", err)
	}
	if _, err := l.Entries(); err == nil {
		t.Error("Entries on a broken log: no error")
	}
	l.Close()
	// The record reached the file even though fsync failed: reopening shows
	// what was committed.
	l2, _, err := openLogged(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustEntries(t, l2); len(got) != 4 {
		t.Errorf("reopened after failed fsync: %v", got)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}
