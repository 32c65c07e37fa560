//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package data

import (
	"errors"
	"os"
	"runtime"
)

// mmapSupported: without the syscall package's mmap the shared dataset cache
// is off and OpenOptions.Shared holds datasets in memory.
const mmapSupported = false

var errNoMmap = errors.New("data: no memory mapping on " + runtime.GOOS)

func mapFile(*os.File, int) ([]byte, error) { return nil, errNoMmap }

func unmapFile([]byte) error { return errNoMmap }

func tryLockFile(*os.File) (bool, error) { return false, errNoMmap }
