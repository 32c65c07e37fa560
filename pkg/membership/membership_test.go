package membership

import (
	"sync"
	"testing"
	"time"
)

var key = []byte("0123456789abcdef0123456789abcdef")

// TestJoinAndDeath: two nodes see each other with their metadata; when one
// stops without leaving (a crash), the other is told it died; a node with
// another key cannot join.
func TestJoinAndDeath(t *testing.T) {
	var mu sync.Mutex
	var seen []Event
	coord, err := Start(Config{Name: "coordinator", Meta: Meta{Role: "coordinator", Slot: -1}, BindAddr: "127.0.0.1", Key: key, Fast: true,
		OnEvent: func(e Event) { mu.Lock(); seen = append(seen, e); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Leave(time.Second)
	w, err := Start(Config{Name: "worker-3", Meta: Meta{Role: "worker", Slot: 3, Addr: "127.0.0.1:1"}, BindAddr: "127.0.0.1", Key: key, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Join(coord.Addr()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { m, ok := coord.Live()["worker-3"]; return ok && m.Slot == 3 && m.Role == "worker" })

	bad, err := Start(Config{Name: "intruder", Meta: Meta{Role: "worker", Slot: 0}, BindAddr: "127.0.0.1", Key: []byte("fedcba9876543210fedcba9876543210"), Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Join(coord.Addr()); err == nil {
		t.Error("a node with the wrong gossip key joined")
	}
	bad.ml.Shutdown()
	if _, ok := coord.Live()["intruder"]; ok {
		t.Fatal("intruder listed as live")
	}

	w.ml.Shutdown() // crash: no leave message
	waitFor(t, func() bool { _, ok := coord.Live()["worker-3"]; return !ok })
	mu.Lock()
	defer mu.Unlock()
	last := seen[len(seen)-1]
	if last.Node != "worker-3" || last.Alive || last.Meta.Slot != 3 {
		t.Fatalf("last event %+v", last)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := Start(Config{Name: "x"}); err == nil {
		t.Fatal("started without a gossip key")
	}
	if _, err := ParseKey("c2hvcnQ="); err == nil {
		t.Fatal("accepted a 5-byte key")
	}
	if k, err := ParseKey("MDEyMzQ1Njc4OWFiY2RlZg=="); err != nil || len(k) != 16 {
		t.Fatalf("16-byte key: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
