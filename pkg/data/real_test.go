package data

import (
	"os"
	"path/filepath"
	"testing"
)

// goMNISTCacheDir returns the data/ folder of the GoMNIST module in the
// module cache, or skips the test.
func goMNISTCacheDir(t *testing.T) string {
	dirs := goMNISTDirs(false)
	if len(dirs) == 0 {
		t.Skip("GoMNIST not in the module cache")
	}
	return dirs[0]
}

func TestRealMNIST(t *testing.T) {
	src := goMNISTCacheDir(t)
	if testing.Short() {
		t.Skip("short")
	}
	for _, f := range MNISTFiles {
		if err := verifyFile(filepath.Join(src, f.Name+".gz"), f); err != nil {
			t.Fatal(err)
		}
	}
	// Fetch copies from the module cache (no network: the mirror is a
	// closed port).
	dir := t.TempDir()
	if err := Fetch("mnist", dir, FetchOptions{BaseURL: "http://127.0.0.1:1/", NoGoCommand: true}); err != nil {
		t.Fatal(err)
	}
	train, err := Load("mnist", dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	test, err := Load("mnist", dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if train.Len() != 60000 || test.Len() != 10000 {
		t.Fatalf("%d train, %d test examples", train.Len(), test.Len())
	}
	if train.Labels[0] != 5 || test.Labels[0] != 7 {
		t.Errorf("first labels %d, %d; want 5, 7", train.Labels[0], test.Labels[0])
	}
}

func TestRealFashionMNIST(t *testing.T) {
	if _, err := os.Stat(filepath.Join(FashionMNISTDebianDir, MNISTTrainImages+".gz")); err != nil {
		t.Skip("Debian's dataset-fashion-mnist is not installed")
	}
	if testing.Short() {
		t.Skip("short")
	}
	dir := t.TempDir()
	if err := Fetch("fashion-mnist", dir, FetchOptions{BaseURL: "http://127.0.0.1:1/"}); err != nil {
		t.Fatal(err)
	}
	train, err := Load("fashion-mnist", dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	if train.Len() != 60000 || train.Labels[0] != 9 {
		t.Fatalf("%d examples, first label %d", train.Len(), train.Labels[0])
	}
}
