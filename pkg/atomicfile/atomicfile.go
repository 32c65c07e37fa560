// Package atomicfile writes files so that a reader (or a crash) sees either
// the old content or the whole new content, never a part: the data goes to a
// temporary file in the same directory, is fsynced, renamed over the target,
// and the directory is fsynced.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
)

// Write replaces path's content with b atomically (perm for a new file).
func Write(path string, b []byte, perm os.FileMode) error {
	return WriteFunc(path, perm, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// WriteFunc replaces path's content atomically with what write writes (perm
// for a new file), for content too large to assemble in one slice first.
// When write fails, path is left as it was and write's error returned.
func WriteFunc(path string, perm os.FileMode, write func(w io.Writer) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: not every file system syncs directories
		d.Close()
	}
	return nil
}
