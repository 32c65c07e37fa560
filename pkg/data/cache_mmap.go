//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package data

import (
	"errors"
	"os"
	"syscall"
)

// mmapSupported: the shared dataset cache maps files with the syscall
// package (no cgo needed).
const mmapSupported = true

// mapFile maps the first size bytes of f read-only and shared, so that every
// process mapping the file reads the same page-cache pages.
func mapFile(f *os.File, size int) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
}

func unmapFile(b []byte) error { return syscall.Munmap(b) }

// tryLockFile takes an exclusive flock on f without blocking and reports
// whether it got it.
func tryLockFile(f *os.File) (bool, error) {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EINTR):
			continue // interrupted by a signal before it could try
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		}
		return false, err
	}
}
