package paramserver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
)

// File format of FileLog (all integers little-endian):
//
//	file    = fileMagic record*
//	record  = 'L' 'P' len:uint32 ^len:uint32 crc:uint32 payload[len]
//	payload = step:int64 count:uint32 worker:uint32 * count [lr_scale:float64]
//
// lr_scale (IEEE 754 bits) is written only when the entry's learning-rate
// scale is not 1 (Entry.LRScale), so a run that never changes it writes the
// same bytes as before the field existed, and every older log reads as
// unscaled. A binary from before the field refuses a record that has it
// (its length does not match its worker count) rather than ignore it.
//
// crc is CRC-32C (Castagnoli) of the len field followed by the payload. The
// length is stored twice (the second time bit-inverted) so that a damaged
// length is recognised as damage rather than read as a record that runs past
// the end of the file, which is what a torn write looks like.
const (
	fileMagic  = "lpclog1\n"
	recHeader  = 2 + 4 + 4 + 4
	maxWorkers = 1 << 16
	maxPayload = 8 + 4 + 4*maxWorkers + 8
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// CorruptError reports damage inside a commit-log file that is not a torn
// last record: the log refuses to open rather than drop committed steps.
type CorruptError struct {
	Path   string
	Offset int64 // byte offset of the damaged record (or of the file header)
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("paramserver: commit log %s is corrupt at byte offset %d: %s", e.Path, e.Offset, e.Reason)
}

// FileLogOption configures OpenFileLog.
type FileLogOption func(*FileLog)

// WithLogger sets the logger of the warning written when a torn last record
// is truncated on open (default slog.Default()).
func WithLogger(l *slog.Logger) FileLogOption { return func(f *FileLog) { f.log = l } }

// withSync replaces fsync (tests count and fail it).
func withSync(sync func(*os.File) error) FileLogOption { return func(f *FileLog) { f.sync = sync } }

// FileLog is a CommitLog in one append-only file. Every Append writes one
// checksummed record and fsyncs the file before returning; TruncateAfter
// rewrites the file atomically (temporary file, fsync, rename, fsync of the
// directory). It is safe for concurrent use by one process; two processes
// must not open the same file.
//
// After a failed write or fsync the log is broken (the record may or may not
// be on disk): every later call returns the error, and the coordinator must
// reopen the file to learn what was committed.
type FileLog struct {
	path string
	log  *slog.Logger
	sync func(*os.File) error

	mu      sync.Mutex
	f       *os.File
	size    int64
	entries []Entry
	closed  bool
	broken  error
}

// OpenFileLog opens the commit log at path, creating it (and fsyncing its
// directory) when it does not exist. It reads every record; a torn last
// record (an incomplete header, a record that runs past the end of the file,
// a last record whose checksum fails, or a zero-filled tail: what a crash in
// the middle of an Append leaves) is truncated away and a warning is logged.
// Any other damage is a *CorruptError naming the byte offset, and the file
// is left as it is.
//
// A damaged last record cannot be told apart from a torn one and is dropped
// too. A torn record was never acknowledged, so no shard applied it; a
// damaged committed one may have been applied, and the coordinator re-choosing
// that step's set would then be refused by the shards (ErrSetMismatch on the
// resend of their last step) rather than silently diverge.
func OpenFileLog(path string, opts ...FileLogOption) (*FileLog, error) {
	l := &FileLog{path: path, log: slog.Default(), sync: (*os.File).Sync}
	for _, o := range opts {
		o(l)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("paramserver: commit log: %w", err)
	}
	if err := l.load(f, created); err != nil {
		f.Close()
		return nil, err
	}
	l.f = f
	return l, nil
}

func (l *FileLog) load(f *os.File, created bool) error {
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("paramserver: commit log %s: %w", l.path, err)
	}
	if len(data) < len(fileMagic) {
		if !bytes.HasPrefix([]byte(fileMagic), data) {
			return &CorruptError{Path: l.path, Offset: 0, Reason: "not a commit log (bad file header)"}
		}
		if len(data) > 0 {
			l.warnTorn(0, len(data), "incomplete file header")
		}
		// New (or torn while being created): write the header.
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("paramserver: commit log %s: %w", l.path, err)
		}
		if _, err := f.WriteAt([]byte(fileMagic), 0); err != nil {
			return fmt.Errorf("paramserver: commit log %s: %w", l.path, err)
		}
		if err := l.sync(f); err != nil {
			return fmt.Errorf("paramserver: commit log %s: fsync: %w", l.path, err)
		}
		if created {
			if err := syncDir(filepath.Dir(l.path)); err != nil {
				return fmt.Errorf("paramserver: commit log %s: fsync directory: %w", l.path, err)
			}
		}
		l.size = int64(len(fileMagic))
		return nil
	}
	if string(data[:len(fileMagic)]) != fileMagic {
		return &CorruptError{Path: l.path, Offset: 0, Reason: "not a commit log (bad file header)"}
	}
	entries, end, torn, err := parseRecords(l.path, data)
	if err != nil {
		return err
	}
	if torn != "" {
		l.warnTorn(end, len(data)-int(end), torn)
		if err := f.Truncate(end); err != nil {
			return fmt.Errorf("paramserver: commit log %s: truncating torn record: %w", l.path, err)
		}
		if err := l.sync(f); err != nil {
			return fmt.Errorf("paramserver: commit log %s: fsync: %w", l.path, err)
		}
	}
	l.entries, l.size = entries, end
	return nil
}

func (l *FileLog) warnTorn(off int64, n int, reason string) {
	l.log.Warn("commit log: truncating torn last record (crash during append)",
		"path", l.path, "offset", off, "bytes", n, "reason", reason)
}

// parseRecords decodes the records after the file header. It returns the
// entries, the end of the last good record, and, when the bytes after it are
// a torn record, why (empty when the file ends cleanly).
func parseRecords(path string, data []byte) (entries []Entry, end int64, torn string, err error) {
	off := len(fileMagic)
	size := len(data)
	corrupt := func(reason string, a ...any) error {
		return &CorruptError{Path: path, Offset: int64(off), Reason: fmt.Sprintf(reason, a...)}
	}
	for off < size {
		rest := data[off:]
		if len(rest) < recHeader {
			return entries, int64(off), "incomplete record header", nil
		}
		if allZero(rest) {
			return entries, int64(off), "zero-filled tail", nil
		}
		if rest[0] != 'L' || rest[1] != 'P' {
			return nil, 0, "", corrupt("bad record marker %#x %#x", rest[0], rest[1])
		}
		n := binary.LittleEndian.Uint32(rest[2:])
		if ^n != binary.LittleEndian.Uint32(rest[6:]) {
			return nil, 0, "", corrupt("damaged record length")
		}
		if n < 12 || n > maxPayload || (n-12)%4 != 0 {
			return nil, 0, "", corrupt("record length %d out of range", n)
		}
		recEnd := off + recHeader + int(n)
		if recEnd > size {
			return entries, int64(off), fmt.Sprintf("record of %d bytes runs past the end of the file", recHeader+int(n)), nil
		}
		payload := rest[recHeader : recHeader+int(n)]
		crc := crc32.Update(crc32.Checksum(rest[2:6], crcTable), crcTable, payload)
		if crc != binary.LittleEndian.Uint32(rest[10:]) {
			if recEnd == size {
				return entries, int64(off), "checksum mismatch in the last record", nil
			}
			return nil, 0, "", corrupt("checksum mismatch")
		}
		e := Entry{Step: int64(binary.LittleEndian.Uint64(payload))}
		count := binary.LittleEndian.Uint32(payload[8:])
		workersEnd := 12 + 4*int(count)
		switch rest := int(n) - workersEnd; {
		case int(count) > maxWorkers || (rest != 0 && rest != 8):
			return nil, 0, "", corrupt("record of %d bytes holds %d workers", n, count)
		case rest == 8:
			e.LRScale = math.Float64frombits(binary.LittleEndian.Uint64(payload[workersEnd:]))
			if e.LRScale == 0 || e.LRScale == 1 {
				// encodeRecord never writes these.
				return nil, 0, "", corrupt("step %d: learning-rate scale %v stored explicitly", e.Step, e.LRScale)
			}
		}
		for i := range int(count) {
			w := binary.LittleEndian.Uint32(payload[12+4*i:])
			if w > 1<<31-1 {
				// Append refuses these; what it cannot write is damage.
				return nil, 0, "", corrupt("worker %d of step %d is not below 2^31", w, e.Step)
			}
			e.Workers = append(e.Workers, int(w))
		}
		var last int64
		if len(entries) > 0 {
			last = entries[len(entries)-1].Step
		}
		if err := checkEntry(e, last, len(entries) > 0); err != nil {
			return nil, 0, "", corrupt("%v", err)
		}
		entries = append(entries, e)
		off = recEnd
	}
	return entries, int64(off), "", nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// encodeRecord returns e's record.
func encodeRecord(e Entry) []byte {
	n := 12 + 4*len(e.Workers)
	scaled := canonicalScale(e.LRScale) != 0
	if scaled {
		n += 8
	}
	b := make([]byte, recHeader+n)
	b[0], b[1] = 'L', 'P'
	binary.LittleEndian.PutUint32(b[2:], uint32(n))
	binary.LittleEndian.PutUint32(b[6:], ^uint32(n))
	p := b[recHeader:]
	binary.LittleEndian.PutUint64(p, uint64(e.Step))
	binary.LittleEndian.PutUint32(p[8:], uint32(len(e.Workers)))
	for i, w := range e.Workers {
		binary.LittleEndian.PutUint32(p[12+4*i:], uint32(w))
	}
	if scaled {
		binary.LittleEndian.PutUint64(p[12+4*len(e.Workers):], math.Float64bits(e.LRScale))
	}
	crc := crc32.Update(crc32.Checksum(b[2:6], crcTable), crcTable, p)
	binary.LittleEndian.PutUint32(b[10:], crc)
	return b
}

func (l *FileLog) usable() error {
	if l.closed {
		return ErrLogClosed
	}
	if l.broken != nil {
		return fmt.Errorf("paramserver: commit log %s is broken by an earlier failure, reopen it: %w", l.path, l.broken)
	}
	return nil
}

// Append writes e's record and fsyncs the file; when it returns nil the
// entry is durable.
func (l *FileLog) Append(e Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	n := len(l.entries)
	var last int64
	if n > 0 {
		last = l.entries[n-1].Step
	}
	if err := checkEntry(e, last, n > 0); err != nil {
		return err
	}
	if len(e.Workers) > maxWorkers || e.Workers[len(e.Workers)-1] > 1<<31-1 {
		return fmt.Errorf("paramserver: commit log: step %d: at most %d workers numbered below 2^31", e.Step, maxWorkers)
	}
	rec := encodeRecord(e)
	if _, err := l.f.WriteAt(rec, l.size); err != nil {
		l.broken = err
		return fmt.Errorf("paramserver: commit log %s: write: %w", l.path, err)
	}
	if err := l.sync(l.f); err != nil {
		l.broken = err
		return fmt.Errorf("paramserver: commit log %s: fsync: %w", l.path, err)
	}
	l.size += int64(len(rec))
	l.entries = append(l.entries, Entry{Step: e.Step, Workers: append([]int(nil), e.Workers...), LRScale: canonicalScale(e.LRScale)})
	return nil
}

// Entries returns a copy of the entries.
func (l *FileLog) Entries() ([]Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return nil, err
	}
	return cloneEntries(l.entries), nil
}

// TruncateAfter removes the entries after step by writing the kept ones to
// path+".tmp", fsyncing it, renaming it over the log and fsyncing the
// directory: a crash leaves either the old file or the new one.
func (l *FileLog) TruncateAfter(step int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	keep := keepUpTo(l.entries, step)
	if keep == len(l.entries) {
		return nil
	}
	buf := []byte(fileMagic)
	for _, e := range l.entries[:keep] {
		buf = append(buf, encodeRecord(e)...)
	}
	tmp := l.path + ".tmp"
	if err := l.writeSynced(tmp, buf); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("paramserver: commit log %s: truncate: %w", l.path, err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("paramserver: commit log %s: truncate: %w", l.path, err)
	}
	// From here the file on disk is the new one: any failure breaks the log.
	if err := syncDir(filepath.Dir(l.path)); err != nil {
		l.broken = err
		return fmt.Errorf("paramserver: commit log %s: truncate: fsync directory: %w", l.path, err)
	}
	l.f.Close()
	f, err := os.OpenFile(l.path, os.O_RDWR, 0)
	if err != nil {
		l.broken = err
		return fmt.Errorf("paramserver: commit log %s: reopen after truncate: %w", l.path, err)
	}
	l.f, l.size = f, int64(len(buf))
	l.entries = l.entries[:keep]
	return nil
}

func (l *FileLog) writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := l.sync(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Close closes the file.
func (l *FileLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.f.Close()
}

// Path returns the file's path.
func (l *FileLog) Path() string { return l.path }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

var (
	_ CommitLog = (*FileLog)(nil)
	_ CommitLog = (*MemLog)(nil)
)
