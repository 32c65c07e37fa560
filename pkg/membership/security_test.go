package membership

import (
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// plainDelegate announces a Meta without any encryption.
type plainDelegate struct{ meta []byte }

func (d plainDelegate) NodeMeta(int) []byte                 { return d.meta }
func (d plainDelegate) NotifyMsg([]byte)                    {}
func (d plainDelegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (d plainDelegate) LocalState(bool) []byte              { return nil }
func (d plainDelegate) MergeRemoteState(buf []byte, _ bool) {}

// startCluster starts a coordinator and a worker that joined it, both with
// key, stopped when the test ends.
func startCluster(t *testing.T) (coord, w *Node) {
	t.Helper()
	coord, err := Start(Config{Name: "coordinator", Meta: Meta{Role: "coordinator", Slot: -1}, BindAddr: "127.0.0.1", Key: key, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { coord.Leave(time.Second) })
	w, err = Start(Config{Name: "worker-0", Meta: Meta{Role: "worker", Slot: 0}, BindAddr: "127.0.0.1", Key: key, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Leave(time.Second) })
	if err := w.Join(coord.Addr()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := coord.Live()["worker-0"]; return ok })
	return coord, w
}

// neverSeen watches the members' views for a window of gossip rounds
// (about 40 of the fast configuration's) and fails if name shows up.
func neverSeen(t *testing.T, name string, nodes ...*Node) {
	t.Helper()
	for i := 0; i < 40; i++ {
		for _, n := range nodes {
			if _, ok := n.Live()[name]; ok {
				t.Fatalf("%s is listed as live", name)
			}
			for _, m := range n.ml.Members() {
				if m.Name == name {
					t.Fatalf("%s is a memberlist member", name)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGossipWrongKeys: nodes with another key of the same or of another
// length cannot join the encrypted cluster, are never listed as members,
// and see none of the cluster's members themselves.
func TestGossipWrongKeys(t *testing.T) {
	coord, w := startCluster(t)
	for i, k := range [][]byte{[]byte("fedcba9876543210fedcba9876543210"), []byte("0123456789abcdef")} {
		name := []string{"intruder-32", "intruder-16"}[i]
		bad, err := Start(Config{Name: name, Meta: Meta{Role: "worker", Slot: 1}, BindAddr: "127.0.0.1", Key: k, Fast: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := bad.Join(coord.Addr()); err == nil {
			t.Errorf("%s joined", name)
		}
		if err := bad.Join(w.Addr()); err == nil {
			t.Errorf("%s joined through a worker", name)
		}
		neverSeen(t, name, coord, w)
		if live := bad.Live(); len(live) > 1 {
			t.Errorf("%s sees members %v", name, live)
		}
		bad.ml.Shutdown()
	}
}

// TestGossipWithoutKey: a memberlist node without encryption (the
// package refuses to start one, so it is built directly) cannot join the
// encrypted cluster and is never listed as a member.
func TestGossipWithoutKey(t *testing.T) {
	coord, w := startCluster(t)
	meta, _ := json.Marshal(Meta{Role: "worker", Slot: 1})
	mc := memberlist.DefaultLocalConfig()
	mc.Name, mc.BindAddr, mc.BindPort = "plaintext", "127.0.0.1", 0
	mc.Delegate = plainDelegate{meta}
	mc.LogOutput = io.Discard
	mc.ProbeInterval, mc.GossipInterval, mc.TCPTimeout = 200*time.Millisecond, 50*time.Millisecond, time.Second
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Shutdown()
	if _, err := ml.Join([]string{coord.Addr()}); err == nil {
		t.Error("a node without the gossip key joined")
	}
	neverSeen(t, "plaintext", coord, w)
	if n := ml.NumMembers(); n != 1 {
		t.Errorf("the plaintext node sees %d members", n)
	}
	// Start itself refuses to run without a key.
	if _, err := Start(Config{Name: "x", BindAddr: "127.0.0.1", Fast: true}); err == nil {
		t.Fatal("started without a gossip key")
	}
}
