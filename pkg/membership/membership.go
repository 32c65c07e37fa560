// Package membership tells the coordinator which workers and parameter
// servers are alive, through hashicorp/memberlist's gossip (SWIM failure
// detection; its LAN defaults notice a dead node in a few seconds), with the
// gossip encrypted by memberlist's keyring. Every node carries its role and
// slot as metadata. The coordinator sees only Events; tests use Fake.
package membership

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node announces about itself.
type Meta struct {
	Role string `json:"role"` // "coordinator", "worker" or "paramserver"
	Slot int    `json:"slot"` // worker slot or shard index; −1 for the coordinator
	Addr string `json:"addr"` // its gRPC address
}

// Event is a membership change.
type Event struct {
	Node  string
	Meta  Meta
	Alive bool
}

// Config configures a Node.
type Config struct {
	// Name must be unique in the cluster.
	Name string
	Meta Meta
	// BindAddr and BindPort (0: OS-chosen) of the gossip listener.
	BindAddr string
	BindPort int
	// Key is the gossip encryption key (16, 24 or 32 bytes; AES). Required:
	// an unencrypted cluster is refused.
	Key []byte
	// Fast uses short probe and gossip intervals (tests on loopback); the
	// default is memberlist's LAN configuration.
	Fast bool
	// OnEvent receives joins and deaths (from memberlist's goroutines).
	OnEvent func(Event)
	// Logger receives memberlist's log lines (nil: discarded).
	Logger *log.Logger
}

// ParseKey decodes a base64 gossip key and checks its length.
func ParseKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("gossip key: not base64: %w", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("gossip key: %d bytes, want 16, 24 or 32", len(k))
}

// ParseBind splits a gossip listen address (--gossip-bind, host:port; an
// empty host listens on every interface, port 0 is chosen by the OS).
func ParseBind(s string) (host string, port int, err error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: want a number from 0 to 65535", ps)
	}
	return host, int(p), nil
}

// decodeMeta decodes a member's metadata; anything that is not a Meta with
// a role and a slot ≥ −1 is not one of ours.
func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, err
	}
	if m.Role == "" || m.Slot < -1 {
		return Meta{}, fmt.Errorf("metadata %q: want a role and a slot ≥ -1", b)
	}
	return m, nil
}

// Node is this process's membership.
type Node struct {
	ml   *memberlist.Memberlist
	meta []byte
	mu   sync.Mutex
	live map[string]Meta
	cfg  Config
}

type delegate struct{ n *Node }

func (d delegate) NodeMeta(limit int) []byte                  { return d.n.meta }
func (d delegate) NotifyMsg([]byte)                           {}
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d delegate) LocalState(join bool) []byte                { return nil }
func (d delegate) MergeRemoteState(buf []byte, join bool)     {}

type events struct{ n *Node }

func (e events) NotifyJoin(nd *memberlist.Node)   { e.n.event(nd, true) }
func (e events) NotifyLeave(nd *memberlist.Node)  { e.n.event(nd, false) }
func (e events) NotifyUpdate(nd *memberlist.Node) { e.n.event(nd, true) }

func (n *Node) event(nd *memberlist.Node, alive bool) {
	m, err := decodeMeta(nd.Meta)
	if err != nil {
		return // not one of ours
	}
	n.mu.Lock()
	if alive {
		n.live[nd.Name] = m
	} else {
		delete(n.live, nd.Name)
	}
	n.mu.Unlock()
	if n.cfg.OnEvent != nil {
		n.cfg.OnEvent(Event{Node: nd.Name, Meta: m, Alive: alive})
	}
}

// Start creates the node and its gossip listener.
func Start(cfg Config) (*Node, error) {
	if len(cfg.Key) == 0 {
		return nil, fmt.Errorf("membership: a gossip encryption key is required (--gossip-key)")
	}
	meta, err := json.Marshal(cfg.Meta)
	if err != nil {
		return nil, err
	}
	n := &Node{meta: meta, live: map[string]Meta{}, cfg: cfg}
	mc := memberlist.DefaultLANConfig()
	if cfg.Fast {
		mc = memberlist.DefaultLocalConfig()
		// A dead member is still noticed within seconds, but a member of a
		// loopback cluster whose process is busy computing (dozens of
		// members on two loaded cores, as in the 53-worker test) answers
		// a probe late without being declared dead: a probe may take
		// 400 ms, and a suspicion lasts at least 3 probe intervals.
		mc.ProbeInterval = 500 * time.Millisecond
		mc.ProbeTimeout = 400 * time.Millisecond
		mc.GossipInterval = 200 * time.Millisecond
		mc.SuspicionMult = 3
		mc.TCPTimeout = 2 * time.Second
	}
	// Gossip messages are a few hundred bytes of member state on a LAN:
	// compressing each with a fresh LZW writer cost more CPU than anything
	// else gossip does (16% of a 71-member cluster's CPU in one profile),
	// for no gain in bandwidth worth having.
	mc.EnableCompression = false
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort, mc.AdvertisePort = cfg.BindAddr, cfg.BindPort, 0
	if mc.BindAddr == "" {
		mc.BindAddr = "0.0.0.0"
	}
	mc.SecretKey = cfg.Key
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Delegate = delegate{n}
	mc.Events = events{n}
	if cfg.Logger != nil {
		mc.Logger = cfg.Logger
	} else {
		mc.LogOutput = io.Discard
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	n.ml = ml
	return n, nil
}

// Addr is the gossip address others join.
func (n *Node) Addr() string {
	ln := n.ml.LocalNode()
	return net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
}

// Join contacts existing members.
func (n *Node) Join(addrs ...string) error {
	_, err := n.ml.Join(addrs)
	return err
}

// Live returns the live members' metadata by node name.
func (n *Node) Live() map[string]Meta {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]Meta, len(n.live))
	for k, v := range n.live {
		out[k] = v
	}
	return out
}

// Leave announces a graceful departure (bounded by timeout) and shuts the
// node down.
func (n *Node) Leave(timeout time.Duration) error {
	err := n.ml.Leave(timeout)
	if serr := n.ml.Shutdown(); err == nil {
		err = serr
	}
	return err
}
