package cuda

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Cache keeps compiled kernels (PTX) on disk, one file per content hash:
// <Dir>/<sha256>.ptx, where the hash covers everything the compiled code
// depends on (the kernel source, the NVRTC version, the target architecture
// and the compiler options). Each file starts with a header line holding the
// SHA-256 and length of the PTX that follows, so a truncated or otherwise
// corrupt entry is detected, removed and rebuilt. Writes go through a
// temporary file and a rename, so concurrent processes never see half a file.
// An empty Dir disables the cache.
type Cache struct {
	Dir string
}

// CacheResult says where Load's PTX came from.
type CacheResult struct {
	// Hit: the PTX was read from a valid cache entry.
	Hit bool
	// Corrupt, when not empty, says why an existing entry was rejected (it
	// was then rebuilt).
	Corrupt string
	// WriteErr is the error storing a freshly compiled entry, if any; the
	// PTX is still returned (the cache is an optimization).
	WriteErr error
}

const cacheMagic = "logitpair-ptx v1"

// DefaultCacheDir is LOGITPAIR_CUDA_CACHE_DIR when set, else
// os.UserCacheDir()/logitpair/cuda, or "" (no cache) when there is no user
// cache folder.
func DefaultCacheDir() string {
	if d := os.Getenv("LOGITPAIR_CUDA_CACHE_DIR"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "logitpair", "cuda")
}

// CacheKey is the hex SHA-256 of the parts, each length-prefixed so that no
// two different lists of parts collide.
func CacheKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Path is the file of key's entry.
func (c Cache) Path(key string) string { return filepath.Join(c.Dir, key+".ptx") }

// Load returns the PTX for key: the cached entry when a valid one exists,
// otherwise compile's output, which it then stores. A compile error is
// returned as is.
func (c Cache) Load(key string, compile func() ([]byte, error)) ([]byte, CacheResult, error) {
	var res CacheResult
	if c.Dir != "" {
		b, err := os.ReadFile(c.Path(key))
		switch {
		case err == nil:
			ptx, why := decodeEntry(b)
			if why == "" {
				res.Hit = true
				return ptx, res, nil
			}
			res.Corrupt = why
			_ = os.Remove(c.Path(key))
		case !os.IsNotExist(err):
			res.Corrupt = err.Error()
		}
	}
	ptx, err := compile()
	if err != nil {
		return nil, res, err
	}
	if c.Dir != "" {
		res.WriteErr = c.store(key, ptx)
	}
	return ptx, res, nil
}

// Remove deletes key's entry (used when the driver rejects cached PTX).
func (c Cache) Remove(key string) error {
	if c.Dir == "" {
		return nil
	}
	if err := os.Remove(c.Path(key)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func (c Cache) store(key string, ptx []byte) error {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	f, err := os.CreateTemp(c.Dir, key+".*.tmp")
	if err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(encodeEntry(ptx))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.Path(key))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("kernel cache: %w", err)
	}
	return nil
}

func encodeEntry(ptx []byte) []byte {
	sum := sha256.Sum256(ptx)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s sha256=%s len=%d\n", cacheMagic, hex.EncodeToString(sum[:]), len(ptx))
	b.Write(ptx)
	return b.Bytes()
}

// decodeEntry returns an entry's PTX, or why the entry is not valid.
func decodeEntry(b []byte) (ptx []byte, why string) {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return nil, "no header line"
	}
	var sumHex, lenStr string
	head := string(b[:nl])
	rest, ok := strings.CutPrefix(head, cacheMagic+" sha256=")
	if !ok {
		return nil, "bad header"
	}
	sumHex, lenStr, ok = strings.Cut(rest, " len=")
	if !ok {
		return nil, "bad header"
	}
	n, err := strconv.Atoi(lenStr)
	if err != nil || n < 0 {
		return nil, "bad length in header"
	}
	body := b[nl+1:]
	if len(body) != n {
		return nil, fmt.Sprintf("length %d, header says %d", len(body), n)
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != sumHex {
		return nil, "checksum mismatch"
	}
	return body, ""
}
