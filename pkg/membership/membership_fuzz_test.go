package membership

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"testing"

	"github.com/hashicorp/memberlist"
)

// FuzzDecodeMeta decodes a gossip member's metadata. decodeMeta must fail
// or return a Meta with a role and a slot ≥ −1 that encodes (as Start does)
// and decodes to itself; a node's event must record exactly the members
// whose metadata decodes.
func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{
		{Role: "coordinator", Slot: -1, Addr: "10.0.0.1:7000"},
		{Role: "worker", Slot: 52},
		{Role: "paramserver", Slot: 16, Addr: "ps-16.ps.default.svc:7001"},
	} {
		b, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("null"))
	f.Add([]byte(`{"role":"worker","slot":-2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := &Node{live: map[string]Meta{}}
		n.event(&memberlist.Node{Name: "n", Meta: b}, true)
		m, err := decodeMeta(b)
		if err != nil {
			if len(n.Live()) != 0 {
				t.Fatalf("metadata refused (%v) but the member is live", err)
			}
			return
		}
		if m.Role == "" || m.Slot < -1 {
			t.Fatalf("decoded %+v", m)
		}
		if got, ok := n.Live()["n"]; !ok || got != m {
			t.Fatalf("live members %v, want n: %+v", n.Live(), m)
		}
		enc, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeMeta(enc)
		if err != nil || again != m {
			t.Fatalf("%+v encoded to %s decodes to %+v (%v)", m, enc, again, err)
		}
		n.event(&memberlist.Node{Name: "n", Meta: b}, false)
		if len(n.Live()) != 0 {
			t.Fatalf("a member that left is still live")
		}
	})
}

// FuzzParseBind parses --gossip-bind. ParseBind must fail or return a port
// in [0, 65535] and a host that, joined with the port, parses back to both.
func FuzzParseBind(f *testing.F) {
	for _, s := range []string{"0.0.0.0:7946", ":0", "[::1]:7000", "localhost:65535", "host:65536", "host:abc", "host", ":-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, err := ParseBind(s)
		if err != nil {
			return
		}
		if port < 0 || port > 65535 {
			t.Fatalf("port %d", port)
		}
		h, p, err := ParseBind(net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil || h != host || p != port {
			t.Fatalf("%q → (%q, %d) → (%q, %d, %v)", s, host, port, h, p, err)
		}
	})
}

// FuzzParseKey parses a base64 gossip key. ParseKey must fail or return an
// AES key (16, 24 or 32 bytes) that, encoded again, parses to itself.
func FuzzParseKey(f *testing.F) {
	for _, n := range []int{16, 24, 32, 8} {
		f.Add(base64.StdEncoding.EncodeToString(make([]byte, n)))
	}
	f.Add("not base64!")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			return
		}
		if !slices.Contains([]int{16, 24, 32}, len(k)) {
			t.Fatalf("a %d-byte key", len(k))
		}
		again, err := ParseKey(base64.StdEncoding.EncodeToString(k))
		if err != nil || !slices.Equal(again, k) {
			t.Fatalf("key %x does not round-trip: %x %v", k, again, err)
		}
	})
}
