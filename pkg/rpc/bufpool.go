package rpc

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// bufferPool is the buffer pool of the cluster's connections (experimental
// BufferPool options in TransportDialOptions and TransportServerOptions)
// and of the chunk codec's copies. gRPC's default pool clears every buffer
// it hands out, which on the streams of whole parameter vectors is a
// memory clear of every byte received (each HTTP/2 frame is read into a
// pooled buffer); every user of these buffers writes the length it asked
// for before reading it (a frame is read whole into its buffer, a message
// is marshaled whole into its own), so this pool hands them out as they
// come back.
var bufferPool mem.BufferPool = &sizedPool{}

// sizedPool pools buffers by power-of-two capacity, up to maxPooled bytes.
type sizedPool struct {
	classes [maxPooledClass + 1]sync.Pool
}

// maxPooledClass: buffers of up to 1<<maxPooledClass bytes (4 MiB, gRPC's
// largest message by default) are pooled, larger ones allocated each time.
const maxPooledClass = 22

// class is the smallest power of two not below n.
func class(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

// Get implements mem.BufferPool: a buffer of length size whose contents are
// whatever its last user left.
func (p *sizedPool) Get(size int) *[]byte {
	c := class(size)
	if c > maxPooledClass {
		b := make([]byte, size)
		return &b
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:size]
		return b
	}
	b := make([]byte, size, 1<<c)
	return &b
}

// Put implements mem.BufferPool.
func (p *sizedPool) Put(b *[]byte) {
	if c := class(cap(*b)); c <= maxPooledClass && cap(*b) == 1<<c {
		p.classes[c].Put(b)
	}
}
