package rpc

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"

	"google.golang.org/grpc/credentials"
)

// TLS cuts what it sends into records of at most 16 KiB and writes each to
// the connection with a system call of its own, and reads records one at a
// time: a 1 MiB write of gRPC's becomes 64 system calls each way, which on
// a fast link cost more than the encryption. batchedCreds puts a
// connection between TLS and the socket that gathers the records of one
// write of the TLS connection and sends them in one system call, and reads
// the socket through a buffer.
type batchedCreds struct {
	credentials.TransportCredentials
}

// batched wraps TLS credentials in batchedCreds and returns others (the
// plaintext ones) as they are.
func batched(c credentials.TransportCredentials) credentials.TransportCredentials {
	if c == nil || c.Info().SecurityProtocol != "tls" {
		return c
	}
	return batchedCreds{c}
}

// ClientHandshake implements credentials.TransportCredentials.
func (c batchedCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	b := newBatchConn(raw)
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, b)
	if err != nil {
		return nil, nil, err
	}
	return &batchingConn{Conn: conn, b: b}, info, nil
}

// ServerHandshake implements credentials.TransportCredentials.
func (c batchedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	b := newBatchConn(raw)
	conn, info, err := c.TransportCredentials.ServerHandshake(b)
	if err != nil {
		return nil, nil, err
	}
	return &batchingConn{Conn: conn, b: b}, info, nil
}

// Clone implements credentials.TransportCredentials.
func (c batchedCreds) Clone() credentials.TransportCredentials {
	return batchedCreds{c.TransportCredentials.Clone()}
}

// batchPool holds the buffers of batches being written (a connection
// holds one only while a write of it is under way).
var batchPool = sync.Pool{New: func() any { return new([]byte) }}

// batchConn is the socket as TLS sees it: reads come through a buffer;
// writes go straight out, except between begin and flush, when they are
// gathered and leave together at flush.
type batchConn struct {
	net.Conn
	r *bufio.Reader

	mu    sync.Mutex
	batch *[]byte // non-nil between begin and flush
}

func newBatchConn(raw net.Conn) *batchConn {
	return &batchConn{Conn: raw, r: bufio.NewReaderSize(raw, ioBufferBytes)}
}

// SyscallConn gives the socket's, for gRPC's socket options and channelz.
func (c *batchConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, fmt.Errorf("rpc: %T has no system connection", c.Conn)
}

// Read implements net.Conn.
func (c *batchConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write implements net.Conn.
func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batch != nil {
		*c.batch = append(*c.batch, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// begin starts gathering writes.
func (c *batchConn) begin() {
	c.mu.Lock()
	c.batch = batchPool.Get().(*[]byte)
	c.mu.Unlock()
}

// flush sends what was gathered since begin, in one write.
func (c *batchConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.batch
	c.batch = nil
	var err error
	if len(*b) > 0 {
		_, err = c.Conn.Write(*b)
	}
	*b = (*b)[:0]
	batchPool.Put(b)
	return err
}

// batchingConn is the TLS connection as gRPC sees it: each write's records
// leave the socket together.
type batchingConn struct {
	net.Conn
	b *batchConn
}

// Write implements net.Conn.
func (c *batchingConn) Write(p []byte) (int, error) {
	c.b.begin()
	n, err := c.Conn.Write(p)
	if ferr := c.b.flush(); err == nil && ferr != nil {
		return 0, ferr
	}
	return n, err
}
