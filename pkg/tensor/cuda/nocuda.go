//go:build !cgo || !linux || static || purego

package cuda

import "github.com/logitpair/logitpair/pkg/tensor"

// Available reports why CUDA cannot be used: in this build, never.
func Available() error { return ErrNotBuilt }

// Open returns ErrNotBuilt: this binary was built without the CUDA backend.
func Open(Options) (tensor.Backend, error) { return nil, ErrNotBuilt }
