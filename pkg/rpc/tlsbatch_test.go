package rpc

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/credentials/insecure"
)

// countingConn counts the writes that reach a connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestBatchedTLS: through batchedCreds a 1 MiB write of the TLS connection
// (64 TLS records) reaches the socket as one write, and arrives intact,
// both ways; plaintext credentials are left as they are.
func TestBatchedTLS(t *testing.T) {
	if c := insecure.NewCredentials(); batched(c) != c {
		t.Fatal("plaintext credentials were wrapped")
	}
	id := loopbackIdentity(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	msg := make([]byte, 1<<20)
	for i := range msg {
		msg[i] = byte(i * 7)
	}

	type side struct {
		conn net.Conn
		raw  *countingConn
		err  error
	}
	srv := make(chan side, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- side{err: err}
			return
		}
		raw := &countingConn{Conn: c}
		conn, _, err := batched(id.ServerCredentials()).ServerHandshake(raw)
		srv <- side{conn, raw, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw := &countingConn{Conn: c}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, _, err := batched(id.ClientCredentials("")).ClientHandshake(ctx, "127.0.0.1", raw)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s := <-srv
	if s.err != nil {
		t.Fatal(s.err)
	}
	defer s.conn.Close()

	for _, dir := range []struct {
		name     string
		from, to net.Conn
		raw      *countingConn
	}{{"client to server", client, s.conn, raw}, {"server to client", s.conn, client, s.raw}} {
		before := dir.raw.writes.Load()
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, len(msg))
			_, err := io.ReadFull(dir.to, b)
			if err != nil {
				b = nil
			}
			got <- b
		}()
		if n, err := dir.from.Write(msg); err != nil || n != len(msg) {
			t.Fatalf("%s: wrote %d bytes: %v", dir.name, n, err)
		}
		if w := dir.raw.writes.Load() - before; w != 1 {
			t.Errorf("%s: a 1 MiB write reached the socket in %d writes, want 1", dir.name, w)
		}
		if b := <-got; !bytes.Equal(b, msg) {
			t.Errorf("%s: the bytes arrived changed or short", dir.name)
		}
	}
}
