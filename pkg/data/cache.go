package data

// The shared cache of decoded 8-bit datasets (OpenOptions.Shared): many
// processes on one machine (a cluster's workers) map one file of decoded
// pixels read-only, so that the page cache holds one copy for all of them
// instead of one decoded copy on each process's heap.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/logitpair/logitpair/pkg/atomicfile"
)

// CacheDir is the folder, inside a dataset's directory, that holds the
// shared cache files of OpenOptions.Shared.
const CacheDir = ".logitpair-cache"

// The cache file: a fixed header, the metadata (JSON), the labels (int32
// little-endian) and the pixels (N·C·H·W bytes, as Dataset.Pixels) to the
// end of the file. All integers are little-endian.
//
//	offset  size  field
//	0       8     magic "LPDSETU8"
//	8       4     version (cacheVersion)
//	12      4×4   C, H, W, Classes
//	28      4     length of the metadata
//	32      8     N, the number of examples
//	40      32    key: SHA-256 of the source files' names, sizes and mtimes
//	72      4     CRC-32C of metadata, labels and pixels
//	76      4     CRC-32C of bytes 0…75
//	80            metadata, labels, pixels
const (
	cacheMagic      = "LPDSETU8"
	cacheVersion    = 1
	cacheHeaderSize = 80
	// maxCacheMeta bounds the metadata a header may announce (the class
	// names of the fixed formats take a few hundred bytes).
	maxCacheMeta = 1 << 20
)

// cacheLockWait bounds how long an opener waits for another process that is
// building the same cache file before it builds one itself (decoding MNIST
// takes a fraction of a second; minutes only on a machine overloaded many
// times over). A variable so that tests can shorten it.
var cacheLockWait = 2 * time.Minute

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// cacheMeta is the part of a Dataset besides its shape, labels and pixels.
type cacheMeta struct {
	Name       string   `json:"name"`
	ClassNames []string `json:"class_names,omitempty"`
}

// CacheError says why a shared cache file was not used (it is then rebuilt).
type CacheError struct {
	File   string
	Reason string
}

func (e *CacheError) Error() string { return fmt.Sprintf("data: cache file %s: %s", e.File, e.Reason) }

// cacheKey identifies the source files of a dataset's split: their paths
// relative to dir, sizes and modification times, with the dataset name,
// split and cache version. A replaced or edited source file changes it.
func cacheKey(name, split, dir string, files []string) ([32]byte, error) {
	h := sha256.New()
	fmt.Fprintf(h, "logitpair dataset cache v%d\n%s\n%s\n", cacheVersion, name, split)
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return [32]byte{}, err
		}
		rel, err := filepath.Rel(dir, f)
		if err != nil {
			rel = f
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", filepath.ToSlash(rel), st.Size(), st.ModTime().UnixNano())
	}
	var k [32]byte
	h.Sum(k[:0])
	return k, nil
}

// cachePath is the cache file of a dataset's split with the given key: the
// key's first 8 bytes in the name, so that a changed source gets a new file.
func cachePath(dir, name, split string, key [32]byte) string {
	return filepath.Join(dir, CacheDir, fmt.Sprintf("%s-%s-%x.u8", name, split, key[:8]))
}

// writeCache writes d (which holds Pixels) as a cache file at path,
// atomically: a reader sees the old file or the whole new one.
func writeCache(path string, key [32]byte, d *Dataset) error {
	meta, err := json.Marshal(cacheMeta{Name: d.Name, ClassNames: d.ClassNames})
	if err != nil {
		return err
	}
	labels := make([]byte, 4*len(d.Labels))
	for i, l := range d.Labels {
		binary.LittleEndian.PutUint32(labels[4*i:], uint32(l))
	}
	hdr := make([]byte, cacheHeaderSize)
	copy(hdr, cacheMagic)
	le := binary.LittleEndian
	le.PutUint32(hdr[8:], cacheVersion)
	le.PutUint32(hdr[12:], uint32(d.C))
	le.PutUint32(hdr[16:], uint32(d.H))
	le.PutUint32(hdr[20:], uint32(d.W))
	le.PutUint32(hdr[24:], uint32(d.Classes))
	le.PutUint32(hdr[28:], uint32(len(meta)))
	le.PutUint64(hdr[32:], uint64(len(d.Labels)))
	copy(hdr[40:72], key[:])
	crc := crc32.Update(0, castagnoli, meta)
	crc = crc32.Update(crc, castagnoli, labels)
	crc = crc32.Update(crc, castagnoli, d.Pixels)
	le.PutUint32(hdr[72:], crc)
	le.PutUint32(hdr[76:], crc32.Checksum(hdr[:76], castagnoli))
	return atomicfile.WriteFunc(path, 0o644, func(w io.Writer) error {
		for _, b := range [][]byte{hdr, meta, labels, d.Pixels} {
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// parseCache checks a whole cache file b against key and returns its
// dataset, whose Pixels is a subslice of b (labels are copied). Any
// mismatch (truncated, extended, wrong magic, version or key, a checksum, an
// out-of-range label) is a *CacheError; nothing of a bad file is returned.
func parseCache(file string, b []byte, key [32]byte) (*Dataset, error) {
	bad := func(format string, args ...any) error {
		return &CacheError{File: file, Reason: fmt.Sprintf(format, args...)}
	}
	if len(b) < cacheHeaderSize {
		return nil, bad("truncated: %d bytes, the header alone takes %d", len(b), cacheHeaderSize)
	}
	if string(b[:8]) != cacheMagic {
		return nil, bad("not a dataset cache file (magic %q, want %q)", b[:8], cacheMagic)
	}
	le := binary.LittleEndian
	if got, want := le.Uint32(b[76:]), crc32.Checksum(b[:76], castagnoli); got != want {
		return nil, bad("header checksum %08x, computed %08x (corrupt header)", got, want)
	}
	if v := le.Uint32(b[8:]); v != cacheVersion {
		return nil, bad("format version %d, this build reads %d", v, cacheVersion)
	}
	if !bytes.Equal(b[40:72], key[:]) {
		return nil, bad("made from other source files (stale: a dataset file was replaced or changed since)")
	}
	c, h, w, classes := le.Uint32(b[12:]), le.Uint32(b[16:]), le.Uint32(b[20:]), le.Uint32(b[24:])
	metaLen, n := uint64(le.Uint32(b[28:])), le.Uint64(b[32:])
	const maxDim = 1 << 16
	if c == 0 || h == 0 || w == 0 || classes == 0 || c > maxDim || h > maxDim || w > maxDim || classes > 1<<31-1 {
		return nil, bad("bad shape %d×%d×%d or classes %d in the header", c, h, w, classes)
	}
	if metaLen > maxCacheMeta {
		return nil, bad("metadata of %d bytes announced (at most %d)", metaLen, maxCacheMeta)
	}
	size := uint64(c) * uint64(h) * uint64(w) // < 2^48
	sizeErr := bad("%d bytes, but the header announces %d examples of %d×%d×%d and %d bytes of metadata (truncated or extended)",
		len(b), n, c, h, w, metaLen)
	if uint64(len(b)) < cacheHeaderSize+metaLen {
		return nil, sizeErr
	}
	if rest := uint64(len(b)) - cacheHeaderSize - metaLen; n > rest/(4+size) || rest != n*(4+size) {
		return nil, sizeErr
	}
	if got, want := le.Uint32(b[72:]), crc32.Checksum(b[cacheHeaderSize:], castagnoli); got != want {
		return nil, bad("data checksum %08x, computed %08x (corrupt labels or pixels)", got, want)
	}
	var meta cacheMeta
	off := uint64(cacheHeaderSize)
	if err := json.Unmarshal(b[off:off+metaLen], &meta); err != nil {
		return nil, bad("metadata: %v", err)
	}
	off += metaLen
	d := &Dataset{Name: meta.Name, C: int(c), H: int(h), W: int(w), Classes: int(classes), ClassNames: meta.ClassNames,
		Labels: make([]int32, n)}
	for i := range d.Labels {
		d.Labels[i] = int32(le.Uint32(b[off+4*uint64(i):]))
	}
	off += 4 * n
	d.Pixels = b[off:len(b):len(b)]
	if err := d.Validate(); err != nil {
		return nil, bad("%v", err)
	}
	return d, nil
}

// mapCache maps the cache file at path read-only and returns its dataset,
// or an error: fs.ErrNotExist when there is none, a *CacheError when it is
// bad, another error when it cannot be read or mapped.
func mapCache(path string, key [32]byte) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the mapping outlives the descriptor
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() < cacheHeaderSize {
		return nil, &CacheError{File: path, Reason: fmt.Sprintf("truncated: %d bytes, the header alone takes %d", st.Size(), cacheHeaderSize)}
	}
	if st.Size() != int64(int(st.Size())) {
		return nil, &CacheError{File: path, Reason: fmt.Sprintf("%d bytes do not fit this platform's address space", st.Size())}
	}
	b, err := mapFile(f, int(st.Size()))
	if err != nil {
		return nil, fmt.Errorf("data: mapping %s: %w", path, err)
	}
	d, err := parseCache(path, b, key)
	if err != nil {
		_ = unmapFile(b)
		return nil, err
	}
	d.mapped = &mapping{b: b, path: path}
	return d, nil
}

// mapping is a read-only file mapping a Dataset's Pixels point into.
type mapping struct {
	b    []byte
	path string
}

// Close releases the memory mapping of a dataset opened with
// OpenOptions.Shared and empties d (no examples, Pixels nil); for a dataset
// held in Go memory it does nothing. Call it only when nothing reads d or a
// slice of its Pixels any more (no Loader, no goroutine): reading unmapped
// memory crashes the process. A cluster worker never calls it: its training
// set lives as long as the process, which releases the mapping when it exits.
func (d *Dataset) Close() error {
	if d.mapped == nil {
		return nil
	}
	err := unmapFile(d.mapped.b)
	d.mapped, d.Pixels, d.Labels = nil, nil, nil
	if err != nil {
		return fmt.Errorf("data: unmapping %s: %w", d.Name, err)
	}
	return nil
}

// Shared reports whether d's pixels are a read-only mapping of a shared
// cache file (OpenOptions.Shared), and the file's path.
func (d *Dataset) Shared() (path string, ok bool) {
	if d.mapped == nil {
		return "", false
	}
	return d.mapped.path, true
}

// openShared is Open of a fixed-format dataset with OpenOptions.Shared: the
// split's decoded pixels from its cache file under dir/CacheDir, mapped
// read-only, building the file first when there is none or it is bad or
// stale. One process builds it while the others wait (bounded by
// cacheLockWait) and then map it; concurrent builders are safe anyway, the
// file being replaced atomically by identical content. When the cache cannot
// be written (a read-only data directory) or mapped, or the platform has no
// mmap, the dataset is held in memory as Load returns it; note hears why.
func openShared(name, dir, split string, note func(string)) (*Dataset, error) {
	say := func(format string, args ...any) {
		if note != nil {
			note(fmt.Sprintf(format, args...))
		}
	}
	files, err := sourceFiles(name, dir, split)
	if err != nil {
		return nil, err
	}
	key, err := cacheKey(name, split, dir, files)
	if err != nil {
		return Load(name, dir, split) // its error names the file it cannot read
	}
	path := cachePath(dir, name, split, key)
	if !mmapSupported {
		say("data: %s %s: no shared dataset cache on this platform (no mmap); held in this process's memory", name, split)
		return Load(name, dir, split)
	}
	mapped := func(d *Dataset, how string) *Dataset {
		say("data: %s %s: %d examples (%.1f MB of pixels) mapped read-only from the shared cache %s%s",
			name, split, d.Len(), float64(len(d.Pixels))/1e6, path, how)
		return d
	}
	d, err := mapCache(path, key)
	if err == nil {
		return mapped(d, ""), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		say("%v; rebuilding it", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		say("data: %s %s: cannot create the shared cache folder (%v); held in this process's memory", name, split, err)
		return Load(name, dir, split)
	}
	unlock, lerr := lockCache(path+".lock", cacheLockWait)
	if lerr != nil {
		// Build without the lock: an atomic rename makes that safe.
		if errors.Is(lerr, errLockTimeout) {
			say("data: %s %s: another process has been building %s for %v; building it here too", name, split, path, cacheLockWait)
		}
		unlock = func() {}
	}
	defer unlock()
	// Another process may have built it while this one waited.
	if d, err := mapCache(path, key); err == nil {
		return mapped(d, ""), nil
	}
	d, err = Load(name, dir, split)
	if err != nil {
		return nil, err
	}
	if d.Pixels == nil {
		say("data: %s %s is not 8-bit (float32 pixels); held in this process's memory, not shared", name, split)
		return d, nil
	}
	if again, err := cacheKey(name, split, dir, files); err != nil || again != key {
		say("data: %s %s: the source files changed while they were read; not cached, held in this process's memory", name, split)
		return d, nil
	}
	if err := writeCache(path, key, d); err != nil {
		say("data: %s %s: cannot write the shared cache (%v); held in this process's memory", name, split, err)
		return d, nil
	}
	removeStaleCaches(path, name, split, say)
	m, err := mapCache(path, key)
	if err != nil {
		say("data: %s %s: cannot map the shared cache just written (%v); held in this process's memory", name, split, err)
		return d, nil
	}
	return mapped(m, " (just built)"), nil
}

// removeStaleCaches deletes the other cache files of a dataset's split (made
// from source files since replaced) beside keep, the current one. A process
// still mapping one keeps its pages until it exits.
func removeStaleCaches(keep, name, split string, say func(string, ...any)) {
	old, _ := filepath.Glob(filepath.Join(filepath.Dir(keep), name+"-"+split+"-*.u8"))
	for _, p := range old {
		if p == keep {
			continue
		}
		if err := os.Remove(p); err == nil {
			say("data: removed the stale shared cache %s (its source files changed)", p)
		}
	}
}

var errLockTimeout = errors.New("timed out waiting for the lock")

// lockCache takes an exclusive lock on the file at path (created if
// missing), polling with capped, jittered backoff for at most wait, and
// returns its release.
func lockCache(path string, wait time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	backoff := 5 * time.Millisecond
	for {
		ok, err := tryLockFile(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		if ok {
			return func() { f.Close() }, nil // closing the descriptor releases the lock
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, errLockTimeout
		}
		time.Sleep(backoff/2 + rand.N(backoff/2+1))
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}
