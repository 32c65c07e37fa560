// Package netbench measures what the machine's network path allows without
// any protocol on top: the raw-TCP baseline that the cluster's transport is
// compared with (docs/BENCHMARKS.md, issue 13). It imports nothing of the
// project, so benchmarks in any package can use it.
package netbench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// bufBytes is the size of each read and write: large enough that the
// system calls, not the copies, are negligible.
const bufBytes = 1 << 20

// RawTCP moves n bytes from a client to a server and n bytes back over one
// TCP connection on 127.0.0.1, rounds times (after one warm-up round), and
// returns the mean wall time of a round: the time a perfect transport
// needs for a pull and a push of n bytes each on this machine, now.
func RawTCP(n int64, rounds int) (time.Duration, error) {
	if n <= 0 || rounds <= 0 {
		return 0, fmt.Errorf("netbench: %d bytes, %d rounds: both must be positive", n, rounds)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("netbench: listen: %w", err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		buf := make([]byte, bufBytes)
		for r := 0; r <= rounds; r++ {
			if err := recv(c, buf, n); err != nil {
				srvErr <- fmt.Errorf("server round %d receive: %w", r, err)
				return
			}
			if err := send(c, buf, n); err != nil {
				srvErr <- fmt.Errorf("server round %d send: %w", r, err)
				return
			}
		}
		srvErr <- nil
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, fmt.Errorf("netbench: dial: %w", err)
	}
	defer c.Close()
	buf := make([]byte, bufBytes)
	var t0 time.Time
	for r := 0; r <= rounds; r++ {
		if r == 1 {
			t0 = time.Now() // round 0 warms the connection up
		}
		if err := send(c, buf, n); err != nil {
			return 0, fmt.Errorf("netbench: client round %d send: %w", r, err)
		}
		if err := recv(c, buf, n); err != nil {
			return 0, fmt.Errorf("netbench: client round %d receive: %w", r, err)
		}
	}
	d := time.Since(t0) / time.Duration(rounds)
	if err := <-srvErr; err != nil {
		return 0, fmt.Errorf("netbench: %w", err)
	}
	return d, nil
}

// send writes n bytes from buf, repeated.
func send(c net.Conn, buf []byte, n int64) error {
	for n > 0 {
		k := min(int64(len(buf)), n)
		if _, err := c.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// recv reads exactly n bytes.
func recv(c net.Conn, buf []byte, n int64) error {
	for n > 0 {
		k, err := c.Read(buf[:min(int64(len(buf)), n)])
		n -= int64(k)
		if err != nil {
			if errors.Is(err, io.EOF) && n == 0 {
				return nil
			}
			return err
		}
	}
	return nil
}
