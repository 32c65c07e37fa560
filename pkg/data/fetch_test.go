package data

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeMNIST returns gzip files for the four MNIST names and the SHA-256
// sums of their contents.
func fakeMNIST(t *testing.T) (map[string][]byte, map[string]string) {
	im, lb := mnistLike(4)
	imt, lbt := mnistLike(2)
	files := map[string][]byte{}
	sums := map[string]string{}
	for name, content := range map[string][]byte{MNISTTrainImages: im, MNISTTrainLabels: lb, MNISTTestImages: imt, MNISTTestLabels: lbt} {
		files[name+".gz"] = gzipBytes(t, content)
		s := sha256.Sum256(content)
		sums[name] = hex.EncodeToString(s[:])
	}
	return files, sums
}

type fakeMirror struct {
	*httptest.Server
	hits   atomic.Int64
	files  map[string][]byte
	status map[string]int // forced status per file
}

func newMirror(t *testing.T, files map[string][]byte) *fakeMirror {
	m := &fakeMirror{files: files, status: map[string]int{}}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.hits.Add(1)
		name := strings.TrimPrefix(r.URL.Path, "/mirror/")
		if st := m.status[name]; st != 0 {
			http.Error(w, "forced", st)
			return
		}
		b, ok := m.files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(m.Close)
	return m
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return n
}

func TestFetchDownload(t *testing.T) {
	files, sums := fakeMNIST(t)
	m := newMirror(t, files)
	dir := filepath.Join(t.TempDir(), "mnist")
	opts := FetchOptions{BaseURL: m.URL + "/mirror", NoLocal: true, Checksums: sums}
	if err := Fetch("mnist", dir, opts); err != nil {
		t.Fatal(err)
	}
	if m.hits.Load() != 4 {
		t.Errorf("%d requests, want 4", m.hits.Load())
	}
	if got := dirNames(t, dir); len(got) != 4 {
		t.Fatalf("files %v", got)
	}
	d, err := Load("mnist", dir, "train")
	if err != nil || d.Len() != 4 {
		t.Fatalf("load after fetch: %v %v", d, err)
	}
	// Present and valid: nothing is fetched again.
	if err := Fetch("mnist", dir, opts); err != nil {
		t.Fatal(err)
	}
	if m.hits.Load() != 4 {
		t.Errorf("refetched: %d requests", m.hits.Load())
	}
	// A corrupted present file is replaced.
	p := filepath.Join(dir, MNISTTestLabels+".gz")
	os.WriteFile(p, []byte("garbage"), 0o644)
	if err := Fetch("mnist", dir, opts); err != nil {
		t.Fatal(err)
	}
	if m.hits.Load() != 5 {
		t.Errorf("%d requests, want 5", m.hits.Load())
	}
	if _, err := Load("mnist", dir, "test"); err != nil {
		t.Fatal(err)
	}
}

func TestFetchChecksumMismatch(t *testing.T) {
	files, sums := fakeMNIST(t)
	m := newMirror(t, files)
	dir := t.TempDir()
	sums[MNISTTrainImages] = strings.Repeat("0", 64)
	err := Fetch("mnist", dir, FetchOptions{BaseURL: m.URL + "/mirror/", NoLocal: true, Checksums: sums})
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a ChecksumError", err)
	}
	if !strings.Contains(err.Error(), MNISTTrainImages) || !strings.Contains(err.Error(), "SHA-256") {
		t.Errorf("unclear error %q", err)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("mismatching download left files: %v", got)
	}
	// The built-in constants reject the fake files too.
	err = Fetch("mnist", dir, FetchOptions{BaseURL: m.URL + "/mirror/", NoLocal: true})
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a ChecksumError", err)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("files left: %v", got)
	}
}

func TestFetchHTTPError(t *testing.T) {
	files, sums := fakeMNIST(t)
	m := newMirror(t, files)
	m.status[MNISTTestImages+".gz"] = http.StatusNotFound
	dir := t.TempDir()
	err := Fetch("mnist", dir, FetchOptions{BaseURL: m.URL + "/mirror/", NoLocal: true, Checksums: sums})
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), m.URL+"/mirror/"+MNISTTestImages+".gz") {
		t.Fatalf("error %v", err)
	}
	for _, n := range dirNames(t, dir) {
		if strings.HasPrefix(n, MNISTTestImages) || strings.HasPrefix(n, ".") {
			t.Errorf("left %s behind", n)
		}
	}
	// A server that is not there.
	m.Close()
	if err := Fetch("mnist", t.TempDir(), FetchOptions{BaseURL: m.URL, NoLocal: true, Checksums: sums}); err == nil {
		t.Error("fetch from a closed server succeeded")
	}
	if err := Fetch("cifar10", t.TempDir(), FetchOptions{}); err == nil {
		t.Error("unknown dataset accepted")
	}
}

func TestFetchLocalCopy(t *testing.T) {
	files, sums := fakeMNIST(t)
	m := newMirror(t, nil) // any request fails
	local := t.TempDir()
	for name, b := range files {
		writeFile(t, local, name, b)
	}
	// An invalid copy in an earlier folder is skipped.
	bad := t.TempDir()
	writeFile(t, bad, MNISTTrainImages+".gz", []byte("bad"))
	dir := t.TempDir()
	var logged []string
	opts := FetchOptions{BaseURL: m.URL, NoLocal: true, LocalDirs: []string{bad, local}, Checksums: sums,
		Logf: func(f string, a ...any) { logged = append(logged, f) }}
	if err := Fetch("fashion-mnist", dir, opts); err != nil {
		t.Fatal(err)
	}
	if m.hits.Load() != 0 {
		t.Errorf("%d downloads despite local copies", m.hits.Load())
	}
	d, err := Load("fashion-mnist", dir, "test")
	if err != nil || d.Len() != 2 {
		t.Fatalf("%v %v", d, err)
	}
	if len(logged) == 0 {
		t.Error("nothing logged")
	}
	// A present plain file that is invalid is an error, not overwritten.
	d2 := t.TempDir()
	writeFile(t, d2, MNISTTrainLabels, []byte("plain but wrong"))
	if err := Fetch("mnist", d2, opts); err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("invalid plain file: %v", err)
	}
}
