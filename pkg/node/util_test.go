package node

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
)

func TestAdvertiseAddr(t *testing.T) {
	host, _ := os.Hostname()
	for _, c := range []struct{ adv, ln, want string }{
		{"", "127.0.0.1:7071", "127.0.0.1:7071"},
		{"", "0.0.0.0:7071", net.JoinHostPort(host, "7071")},
		{"", "[::]:7071", net.JoinHostPort(host, "7071")},
		{"ps-1.ps.default.svc:7071", "0.0.0.0:7071", "ps-1.ps.default.svc:7071"},
	} {
		ln, _ := net.ResolveTCPAddr("tcp", c.ln)
		got, err := advertiseAddr(c.adv, ln)
		if err != nil || got != c.want {
			t.Errorf("advertiseAddr(%q, %s) = %q, %v; want %q", c.adv, c.ln, got, err, c.want)
		}
	}
	if _, err := advertiseAddr("no-port", &net.TCPAddr{}); err == nil {
		t.Error("an --advertise without a port was accepted")
	}
}

func TestMemberNamesAreUniquePerIncarnation(t *testing.T) {
	a, b := memberName("worker-1"), memberName("worker-1")
	if a == b {
		t.Fatalf("two incarnations of worker-1 in one process got the same name %q", a)
	}
	if want := fmt.Sprintf("worker-1-%d-", os.Getpid()); !strings.HasPrefix(a, want) || len(a) != len(want)+8 {
		t.Fatalf("name %q, want %s + 8 hex digits", a, want)
	}
}
