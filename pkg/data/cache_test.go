package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// notes collects the lines OpenOptions.Note hears (safe for concurrent
// openers).
type notes struct {
	mu    sync.Mutex
	lines []string
}

func (n *notes) add(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lines = append(n.lines, s)
}

// count is the number of lines containing substr.
func (n *notes) count(substr string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for _, l := range n.lines {
		if strings.Contains(l, substr) {
			k++
		}
	}
	return k
}

func (n *notes) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.lines, "\n")
}

// writeMNISTFiles writes n mnistLike examples as the train split's IDX files
// (images gzipped) into dir.
func writeMNISTFiles(t *testing.T, dir string, n int) {
	t.Helper()
	im, lb := mnistLike(n)
	writeFile(t, dir, MNISTTrainImages+".gz", gzipBytes(t, im))
	writeFile(t, dir, MNISTTrainLabels, lb)
}

// openShared opens a split with Shared and fails the test on an error.
func mustOpenShared(t *testing.T, name, dir, split string, n *notes) *Dataset {
	t.Helper()
	src, err := Open(name, dir, split, OpenOptions{}.WithShared(n.add))
	if err != nil {
		t.Fatal(err)
	}
	d := src.(*Dataset)
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// sameBatches fails unless got holds exactly want's examples, shape, name
// and class names, and yields bit-identical batches and examples.
func sameBatches(t *testing.T, got, want *Dataset) {
	t.Helper()
	if got.Info() != want.Info() || !slices.Equal(got.ClassNames, want.ClassNames) {
		t.Fatalf("info %+v classes %v, want %+v classes %v", got.Info(), got.ClassNames, want.Info(), want.ClassNames)
	}
	if !slices.Equal(got.Labels, want.Labels) || string(got.Pixels) != string(want.Pixels) {
		t.Fatal("labels or pixels differ from the in-memory dataset")
	}
	size := want.C * want.H * want.W
	for _, opts := range []LoaderOptions{{Seed: 3}, {Seed: 4, NoAugment: true}, {Seed: 5, Parallel: 3}} {
		lg, lw := NewLoader(got, opts), NewLoader(want, opts)
		const batch = 5
		for step := int64(0); step < 3; step++ {
			for worker := 0; worker < 2; worker++ {
				xg, xw := make([]float32, batch*size), make([]float32, batch*size)
				yg, yw := make([]int32, batch), make([]int32, batch)
				ig, err := lg.Batch(step, worker, 2, batch, xg, yg)
				if err != nil {
					t.Fatal(err)
				}
				iw, err := lw.Batch(step, worker, 2, batch, xw, yw)
				if err != nil {
					t.Fatal(err)
				}
				if !sameBits(xg, xw) || !equalInts(ig, iw) || !equalInt32s(yg, yw) {
					t.Fatalf("%+v: step %d worker %d: the mapped dataset's batch differs from the in-memory one", opts, step, worker)
				}
			}
		}
	}
	if !sameBits(got.Image(got.Len()-1), want.Image(want.Len()-1)) {
		t.Fatal("Image differs")
	}
}

func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, CacheDir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".lock") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestSharedBatchesBitIdentical(t *testing.T) {
	t.Run("mnist", func(t *testing.T) {
		dir := t.TempDir()
		writeMNISTFiles(t, dir, 30)
		want, err := Load("mnist", dir, "train")
		if err != nil {
			t.Fatal(err)
		}
		var n notes
		built := mustOpenShared(t, "mnist", dir, "train", &n)
		path, ok := built.Shared()
		if !ok || n.count("(just built)") != 1 {
			t.Fatalf("shared %v; notes:\n%s", ok, &n)
		}
		sameBatches(t, built, want)
		// A second open maps the file built by the first.
		again := mustOpenShared(t, "mnist", dir, "train", &n)
		if p, ok := again.Shared(); !ok || p != path || n.count("(just built)") != 1 {
			t.Fatalf("second open: shared %v at %s (first at %s); notes:\n%s", ok, p, path, &n)
		}
		sameBatches(t, again, want)
		if files := cacheFiles(t, dir); len(files) != 1 || !strings.HasPrefix(files[0], "mnist-train-") {
			t.Fatalf("cache folder holds %v, want one mnist-train-*.u8", files)
		}
	})
	t.Run("cifar10", func(t *testing.T) {
		// CIFAR-10 has augmentation and class names.
		dir := t.TempDir()
		for k, name := range CIFAR10Files("test") {
			writeFile(t, dir, name, cifarRecords(12, k))
		}
		want, err := Load("cifar10", dir, "test")
		if err != nil {
			t.Fatal(err)
		}
		var n notes
		d := mustOpenShared(t, "cifar10", dir, "test", &n)
		if _, ok := d.Shared(); !ok {
			t.Fatalf("not shared; notes:\n%s", &n)
		}
		sameBatches(t, d, want)
		sameBatches(t, mustOpenShared(t, "cifar10", dir, "test", &n), want)
	})
}

// rewriteHeader applies edit to the header of the cache file at path and
// recomputes the header checksum, so that only edit's field is wrong.
func rewriteHeader(t *testing.T, path string, edit func(h []byte)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edit(b[:cacheHeaderSize])
	binary.LittleEndian.PutUint32(b[76:], crc32.Checksum(b[:76], castagnoli))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSharedCacheCorruptionIsDetectedAndRebuilt(t *testing.T) {
	flip := func(off func(size int) int) func(t *testing.T, p string) {
		return func(t *testing.T, p string) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[off(len(b))] ^= 0x10
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	resize := func(delta int) func(t *testing.T, p string) {
		return func(t *testing.T, p string) {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, st.Size()+int64(delta)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, p string)
		reason string
	}{
		{"flipped pixel", flip(func(size int) int { return size - 100 }), "data checksum"},
		{"flipped label", flip(func(int) int { return cacheHeaderSize + 60 }), "data checksum"},
		{"flipped header byte", flip(func(int) int { return 33 }), "header checksum"},
		{"flipped data checksum", flip(func(int) int { return 72 }), "header checksum"},
		{"truncated by one byte", resize(-1), "truncated or extended"},
		{"truncated to a part of the header", func(t *testing.T, p string) { os.Truncate(p, 50) }, "truncated: 50 bytes"},
		{"empty", func(t *testing.T, p string) { os.Truncate(p, 0) }, "truncated: 0 bytes"},
		{"extended", resize(+3), "truncated or extended"},
		{"wrong magic", func(t *testing.T, p string) { rewriteHeader(t, p, func(h []byte) { copy(h, "NOTMAGIC") }) }, "not a dataset cache file"},
		{"other version", func(t *testing.T, p string) {
			rewriteHeader(t, p, func(h []byte) { binary.LittleEndian.PutUint32(h[8:], cacheVersion+1) })
		}, "format version 2"},
		{"other key", func(t *testing.T, p string) { rewriteHeader(t, p, func(h []byte) { h[50] ^= 1 }) }, "stale"},
		{"more examples announced", func(t *testing.T, p string) {
			rewriteHeader(t, p, func(h []byte) { binary.LittleEndian.PutUint64(h[32:], 31) })
		}, "announces 31 examples"},
		{"zero width", func(t *testing.T, p string) {
			rewriteHeader(t, p, func(h []byte) { binary.LittleEndian.PutUint32(h[20:], 0) })
		}, "bad shape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeMNISTFiles(t, dir, 30)
			want, err := Load("mnist", dir, "train")
			if err != nil {
				t.Fatal(err)
			}
			var n notes
			path, _ := mustOpenShared(t, "mnist", dir, "train", &n).Shared()
			tc.damage(t, path)
			key, err := cacheKey("mnist", "train", dir, []string{filepath.Join(dir, MNISTTrainImages+".gz"), filepath.Join(dir, MNISTTrainLabels)})
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var ce *CacheError
			if _, err := parseCache(path, b, key); !errors.As(err, &ce) || !strings.Contains(ce.Reason, tc.reason) || ce.File != path {
				t.Fatalf("parseCache of the damaged file: %v, want a *CacheError naming %s with %q", err, path, tc.reason)
			}
			d := mustOpenShared(t, "mnist", dir, "train", &n)
			if n.count(tc.reason) != 1 || n.count("rebuilding it") != 1 || n.count("(just built)") != 2 {
				t.Fatalf("notes:\n%s\nwant one line with %q and rebuilding it, and a second build", &n, tc.reason)
			}
			if p, ok := d.Shared(); !ok || p != path {
				t.Fatalf("after the rebuild: shared %v at %s, want %s", ok, p, path)
			}
			sameBatches(t, d, want)
			b, err = os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parseCache(path, b, key); err != nil {
				t.Fatalf("rebuilt file: %v", err)
			}
		})
	}
}

func TestSharedCacheStaleSourceIsRebuilt(t *testing.T) {
	dir := t.TempDir()
	writeMNISTFiles(t, dir, 30)
	var n notes
	old := mustOpenShared(t, "mnist", dir, "train", &n)
	oldPath, _ := old.Shared()
	// New labels of the same size; the modification time is set apart
	// explicitly, as a file system may keep coarse times.
	_, lb := mnistLike(30)
	lb[8], lb[9] = 9, 9
	p := writeFile(t, dir, MNISTTrainLabels, lb)
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	mt := st.ModTime().Add(3 * time.Second)
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
	want, err := Load("mnist", dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	if want.Labels[0] != 9 || want.Labels[1] != 9 {
		t.Fatalf("new labels %v", want.Labels[:2])
	}
	d := mustOpenShared(t, "mnist", dir, "train", &n)
	newPath, ok := d.Shared()
	if !ok || newPath == oldPath || n.count("(just built)") != 2 || n.count("removed the stale shared cache "+oldPath) != 1 {
		t.Fatalf("shared %v at %s (old %s); notes:\n%s", ok, newPath, oldPath, &n)
	}
	sameBatches(t, d, want)
	if files := cacheFiles(t, dir); len(files) != 1 || files[0] != filepath.Base(newPath) {
		t.Fatalf("cache folder holds %v, want only %s", files, filepath.Base(newPath))
	}
	// The process still mapping the removed file reads its old data intact.
	if old.Labels[0] != 0 || old.Pixels[len(old.Pixels)-1] != want.Pixels[len(want.Pixels)-1] {
		t.Fatal("the old mapping changed")
	}
}

func TestSharedFallsBackToMemoryWhenTheCacheCannotBeWritten(t *testing.T) {
	t.Run("cache folder blocked", func(t *testing.T) {
		// A file where the cache folder should be: cannot be created, as in a
		// read-only data directory (and whatever the test's user may write).
		dir := t.TempDir()
		writeMNISTFiles(t, dir, 20)
		writeFile(t, dir, CacheDir, []byte("not a folder"))
		want, err := Load("mnist", dir, "train")
		if err != nil {
			t.Fatal(err)
		}
		var n notes
		d := mustOpenShared(t, "mnist", dir, "train", &n)
		if _, ok := d.Shared(); ok || n.count("cannot create the shared cache folder") != 1 || n.count("held in this process's memory") != 1 {
			t.Fatalf("shared %v; notes:\n%s", ok, &n)
		}
		sameBatches(t, d, want)
	})
	t.Run("read-only directory", func(t *testing.T) {
		dir := t.TempDir()
		writeMNISTFiles(t, dir, 20)
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		if f, err := os.Create(filepath.Join(dir, "probe")); err == nil {
			f.Close()
			t.Skip("this user writes into read-only folders (root); the blocked-folder case covers the fallback")
		}
		want, err := Load("mnist", dir, "train")
		if err != nil {
			t.Fatal(err)
		}
		var n notes
		d := mustOpenShared(t, "mnist", dir, "train", &n)
		if _, ok := d.Shared(); ok || n.count("held in this process's memory") != 1 {
			t.Fatalf("shared %v; notes:\n%s", ok, &n)
		}
		sameBatches(t, d, want)
	})
	t.Run("not 8-bit", func(t *testing.T) {
		// SVHN stored as doubles is float32 in memory: nothing to share.
		dir := t.TempDir()
		x, y := svhnVars(3, []float64{1, 2, 10}, miUINT8, binary.LittleEndian)
		xd := matVar{name: "X", class: mxDOUBLE, dims: x.dims, dataType: miDOUBLE, data: make([]byte, 8*len(x.data))}
		b, _ := matFile(t, binary.LittleEndian, false, xd, y)
		writeFile(t, dir, "train_32x32.mat", b)
		var n notes
		d := mustOpenShared(t, "svhn", dir, "train", &n)
		if _, ok := d.Shared(); ok || d.Images == nil || n.count("is not 8-bit") != 1 {
			t.Fatalf("shared %v, float32 %v; notes:\n%s", ok, d.Images != nil, &n)
		}
	})
}

func TestSharedConcurrentOpenersBuildOnce(t *testing.T) {
	dir := t.TempDir()
	writeMNISTFiles(t, dir, 40)
	want, err := Load("mnist", dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	var n notes
	const openers = 6
	ds := make([]*Dataset, openers)
	errs := make([]error, openers)
	var wg sync.WaitGroup
	for i := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src, err := Open("mnist", dir, "train", OpenOptions{}.WithShared(n.add))
			if err == nil {
				ds[i] = src.(*Dataset)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, d := range ds {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		t.Cleanup(func() { d.Close() })
		if _, ok := d.Shared(); !ok {
			t.Fatalf("opener %d not shared; notes:\n%s", i, &n)
		}
		sameBatches(t, d, want)
	}
	// The lock lets one opener build; the others map its file.
	if n.count("(just built)") != 1 || n.count("mapped read-only") != openers {
		t.Fatalf("notes:\n%s\nwant one build and %d mappings", &n, openers)
	}
	if files := cacheFiles(t, dir); len(files) != 1 {
		t.Fatalf("cache folder holds %v (temporary files left?)", files)
	}
}

func TestSharedBuildsAnywayWhenTheLockIsHeld(t *testing.T) {
	dir := t.TempDir()
	writeMNISTFiles(t, dir, 20)
	files, err := sourceFiles("mnist", dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	key, err := cacheKey("mnist", "train", dir, files)
	if err != nil {
		t.Fatal(err)
	}
	path := cachePath(dir, "mnist", "train", key)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// A builder that never finishes holds the lock.
	unlock, err := lockCache(path+".lock", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	defer func(w time.Duration) { cacheLockWait = w }(cacheLockWait)
	cacheLockWait = 30 * time.Millisecond
	var n notes
	d := mustOpenShared(t, "mnist", dir, "train", &n)
	if p, ok := d.Shared(); !ok || p != path || n.count("building it here too") != 1 || n.count("(just built)") != 1 {
		t.Fatalf("shared %v at %s; notes:\n%s", ok, p, &n)
	}
	want, err := Load("mnist", dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	sameBatches(t, d, want)
}

// TestSharedAcrossProcesses: a second process maps the file the first one
// built (the page cache then holds one copy for both) and rebuilds nothing.
func TestSharedAcrossProcesses(t *testing.T) {
	if dir := os.Getenv("LOGITPAIR_TEST_SHARED_CHILD"); dir != "" {
		src, err := Open("mnist", dir, "train", OpenOptions{}.WithShared(func(s string) { fmt.Println("note:", s) }))
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		d := src.(*Dataset)
		p, ok := d.Shared()
		fmt.Printf("shared=%v path=%s labels=%v\n", ok, p, d.Labels[:3])
		return
	}
	dir := t.TempDir()
	writeMNISTFiles(t, dir, 20)
	var n notes
	path, _ := mustOpenShared(t, "mnist", dir, "train", &n).Shared()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSharedAcrossProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LOGITPAIR_TEST_SHARED_CHILD="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if s := string(out); !strings.Contains(s, "shared=true path="+path+" labels=[0 1 2]") || strings.Contains(s, "just built") {
		t.Fatalf("child output:\n%s\nwant it to map %s without building", s, path)
	}
	if st2, err := os.Stat(path); err != nil || !os.SameFile(st, st2) {
		t.Fatalf("the cache file was replaced (%v)", err)
	}
}

func TestDatasetClose(t *testing.T) {
	dir := t.TempDir()
	writeMNISTFiles(t, dir, 10)
	src, err := Open("mnist", dir, "train", OpenOptions{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	d := src.(*Dataset)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Shared(); ok || d.Len() != 0 || d.Pixels != nil {
		t.Fatalf("after Close: %d examples, %d pixel bytes", d.Len(), len(d.Pixels))
	}
	if _, err := d.Example(0, make([]float32, 784)); err == nil {
		t.Fatal("Example after Close succeeded")
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	mem, err := Load("mnist", dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	if err := mem.Close(); err != nil || mem.Len() != 10 {
		t.Fatalf("Close of an in-memory dataset: %v, %d examples left", err, mem.Len())
	}
}

// FuzzParseCache: no cache file, however damaged, panics the parser or
// yields a dataset that breaks Dataset's invariants.
func FuzzParseCache(f *testing.F) {
	d := &Dataset{Name: "mnist", C: 1, H: 2, W: 3, Classes: 4, ClassNames: []string{"a", "b", "c", "d"},
		Pixels: []byte{0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255}, Labels: []int32{3, 0}}
	key := [32]byte{1, 2, 3}
	p := filepath.Join(f.TempDir(), "seed.u8")
	if err := writeCache(p, key, d); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(good[:cacheHeaderSize])
	f.Add([]byte(cacheMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseCache("fuzz.u8", b, key)
		if err != nil {
			var ce *CacheError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *CacheError", err, err)
			}
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatal(err)
		}
		if string(b) == string(good) && (!slices.Equal(got.Labels, d.Labels) || string(got.Pixels) != string(d.Pixels) ||
			got.Info() != d.Info() || !slices.Equal(got.ClassNames, d.ClassNames)) {
			t.Fatalf("round trip: %+v, want %+v", got, d)
		}
	})
}
