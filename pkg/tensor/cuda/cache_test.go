package cuda

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeCompiler counts calls and returns a fixed PTX.
type fakeCompiler struct {
	calls int
	ptx   []byte
	err   error
}

func (f *fakeCompiler) compile() ([]byte, error) {
	f.calls++
	return append([]byte(nil), f.ptx...), f.err
}

func TestCacheMissThenHit(t *testing.T) {
	c := Cache{Dir: filepath.Join(t.TempDir(), "a", "b")} // created on first store
	f := &fakeCompiler{ptx: []byte("// PTX\n.version 8.0\n")}
	key := CacheKey("src", "nvrtc 12.4", "--gpu-architecture=compute_86")
	ptx, res, err := c.Load(key, f.compile)
	if err != nil || res.Hit || res.WriteErr != nil || !bytes.Equal(ptx, f.ptx) || f.calls != 1 {
		t.Fatalf("first load: ptx %q, %+v, %v, %d compiles", ptx, res, err, f.calls)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, key+".ptx")); err != nil {
		t.Fatalf("entry not stored: %v", err)
	}
	ptx, res, err = c.Load(key, f.compile)
	if err != nil || !res.Hit || !bytes.Equal(ptx, f.ptx) || f.calls != 1 {
		t.Fatalf("second load: ptx %q, %+v, %v, %d compiles", ptx, res, err, f.calls)
	}
	leftovers, _ := filepath.Glob(filepath.Join(c.Dir, "*.tmp"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// Every kind of damage is detected, the entry rebuilt, and the rebuilt
// entry then read back.
func TestCacheCorruptEntryRebuilt(t *testing.T) {
	good := encodeEntry([]byte("// PTX body\n"))
	for _, c := range []struct {
		name string
		data []byte
		why  string
	}{
		{"truncated", good[:len(good)-2], "length"},
		{"flipped byte", append(append([]byte(nil), good[:len(good)-3]...), 'X', good[len(good)-2], good[len(good)-1]), "checksum mismatch"},
		{"no header", []byte("garbage without a newline"), "no header line"},
		{"foreign header", []byte("something else\nbody"), "bad header"},
		{"bad length", []byte(cacheMagic + " sha256=00 len=x\nbody"), "bad length"},
		{"empty", nil, "no header line"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cache := Cache{Dir: t.TempDir()}
			key := CacheKey(c.name)
			if err := os.WriteFile(cache.Path(key), c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			f := &fakeCompiler{ptx: []byte("// PTX body\n")}
			ptx, res, err := cache.Load(key, f.compile)
			if err != nil || res.Hit || !strings.Contains(res.Corrupt, c.why) || f.calls != 1 || !bytes.Equal(ptx, f.ptx) {
				t.Fatalf("load of a %s entry: ptx %q, %+v, %v, %d compiles (want corruption %q)", c.name, ptx, res, err, f.calls, c.why)
			}
			if _, res, _ = cache.Load(key, f.compile); !res.Hit || f.calls != 1 {
				t.Fatalf("rebuilt entry not used: %+v, %d compiles", res, f.calls)
			}
		})
	}
}

func TestCacheKeyDependsOnEveryPart(t *testing.T) {
	base := CacheKey("src", "nvrtc 12.4", "compute_86")
	for _, other := range [][]string{
		{"src2", "nvrtc 12.4", "compute_86"},
		{"src", "nvrtc 12.5", "compute_86"},
		{"src", "nvrtc 12.4", "compute_90"},
		{"src", "nvrtc 12.4compute_86"}, // no ambiguity from concatenation
		{"src", "nvrtc 12.4", "compute_86", ""},
	} {
		if CacheKey(other...) == base {
			t.Errorf("CacheKey(%q) collides with the base key", other)
		}
	}
	if CacheKey("src", "nvrtc 12.4", "compute_86") != base {
		t.Error("CacheKey is not deterministic")
	}
	if len(base) != 64 {
		t.Errorf("key %q is not a hex SHA-256", base)
	}
}

func TestCacheDisabledAndUnwritable(t *testing.T) {
	f := &fakeCompiler{ptx: []byte("ptx")}
	for i := 0; i < 2; i++ {
		if _, res, err := (Cache{}).Load("k", f.compile); err != nil || res.Hit {
			t.Fatalf("no-cache load: %+v %v", res, err)
		}
	}
	if f.calls != 2 {
		t.Errorf("without a cache folder every load compiles: %d compiles", f.calls)
	}
	// A cache "folder" that is a file: the PTX still comes back, with the
	// write error reported.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ptx, res, err := (Cache{Dir: file}).Load("k", f.compile)
	if err != nil || string(ptx) != "ptx" || res.WriteErr == nil {
		t.Fatalf("unwritable cache: ptx %q, %+v, %v", ptx, res, err)
	}
}

func TestCacheCompileErrorIsReturned(t *testing.T) {
	cache := Cache{Dir: t.TempDir()}
	boom := errors.New("nvrtc: compilation failed")
	f := &fakeCompiler{err: boom}
	if _, _, err := cache.Load("k", f.compile); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the compiler's", err)
	}
	if entries, _ := os.ReadDir(cache.Dir); len(entries) != 0 {
		t.Errorf("a failed compile left %d cache files", len(entries))
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("LOGITPAIR_CUDA_CACHE_DIR", "/somewhere/else")
	if d := DefaultCacheDir(); d != "/somewhere/else" {
		t.Errorf("with the override: %q", d)
	}
	t.Setenv("LOGITPAIR_CUDA_CACHE_DIR", "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if d := DefaultCacheDir(); d != filepath.Join("/xdg", "logitpair", "cuda") {
		t.Errorf("from XDG_CACHE_HOME: %q", d)
	}
}
