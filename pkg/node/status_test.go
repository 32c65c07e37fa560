package node

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	"github.com/logitpair/logitpair/pkg/cluster"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/statuspage"
	"github.com/logitpair/logitpair/pkg/train"
)

// statusTestShard is an in-memory shard that applies every step.
type statusTestShard struct {
	mu      sync.Mutex
	version int64
}

func (s *statusTestShard) Apply(_ context.Context, step int64, _ []int, _ float64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if step == s.version {
		s.version++
	}
	return nil
}

func (s *statusTestShard) Version(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, nil
}

func (s *statusTestShard) Checkpoint(context.Context, int64, []int64) error { return nil }

func (s *statusTestShard) Held(context.Context) ([]int64, error) { return []int64{0}, nil }

func (s *statusTestShard) Restore(_ context.Context, step int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version = step
	return nil
}

// TestStatusPageOverTheCoordinator wires the status page as RunCoordinator
// does — the CoordServer's report hook and the coordinator's Committed hook
// feed the history, the membership table gives the members — and checks the
// snapshot, /status.json and the page through the mounted handlers.
// statusParts builds what the coordinator's status endpoints read: the
// membership table of workers slots (backups of them) over layout's shards,
// the Late the coordinator will be bound to, and the status feed over it.
func statusParts(t *testing.T, layout *cluster.Layout, workers, backups int) (*coordinator.Membership, *coordinator.Late, *statusFeed) {
	t.Helper()
	mc, err := rpc.NewMembershipConfig(train.DefaultConfig(), layout.Ranges(), workers, backups)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := coordinator.NewMembership(mc)
	if err != nil {
		t.Fatal(err)
	}
	late := new(coordinator.Late)
	feed, err := newStatusFeed(late)
	if err != nil {
		t.Fatal(err)
	}
	return reg, late, feed
}

func TestStatusPageOverTheCoordinator(t *testing.T) {
	const workers, backups, steps = 3, 1, 10
	layout := &cluster.Layout{Shards: []paramserver.ShardRange{{Index: 0, Lo: 0, Hi: 10}, {Index: 1, Lo: 10, Hi: 20}}}
	reg, late, feed := statusParts(t, layout, workers, backups)
	handlers, err := statusHandlers(feed, reg, steps)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metrics") })
	for p, h := range handlers {
		mux.Handle(p, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	src := &statusSource{feed: feed, reg: reg, steps: steps, now: time.Now}

	// Before the coordinator exists (the shards have not joined).
	s := src.Snapshot()
	if s.Run.Phase != statuspage.PhaseStarting || !strings.Contains(s.Run.Reason, "shard") || s.Run.Required != 2 || s.Run.Steps != steps {
		t.Fatalf("before the coordinator: %+v", s.Run)
	}
	if len(s.Members) != workers+2 || s.Members[0].Alive || s.Members[3].Role != statuspage.RoleShard || s.Members[3].Alive {
		t.Fatalf("members before anyone joined: %+v", s.Members)
	}

	cs := rpc.NewCoordServer(late, reg, rpc.WithOnReport(feed.report))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	join := func(req *coordinatorv1.JoinRequest) int32 {
		t.Helper()
		resp, err := cs.Join(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetSlot()
	}
	join(&coordinatorv1.JoinRequest{Role: rpc.RoleParamServer, PreferredSlot: 0, Address: "127.0.0.1:41000", NodeName: "ps-0"})
	join(&coordinatorv1.JoinRequest{Role: rpc.RoleParamServer, PreferredSlot: 1, Address: "127.0.0.1:41001", NodeName: "ps-1"})
	cs.Leave(ctx, &coordinatorv1.LeaveRequest{Role: rpc.RoleParamServer, Slot: 1})
	join(&coordinatorv1.JoinRequest{Role: rpc.RoleWorker, PreferredSlot: 0, NodeName: "worker-a"})
	join(&coordinatorv1.JoinRequest{Role: rpc.RoleWorker, PreferredSlot: 1, NodeName: `<script>alert("w")</script>`})

	cc := coordinator.DefaultConfig()
	cc.Workers, cc.Backups, cc.Steps, cc.CheckpointEvery, cc.RetryEvery = workers, backups, steps, 0, 10*time.Millisecond
	cc.InitialGeneration = coordinator.IncarnationGeneration(3) + 2 // the third start, after 2 rollbacks
	c, err := coordinator.New(ctx, cc, paramserver.NewMemLog(), nil,
		[]coordinator.ShardClient{&statusTestShard{}, &statusTestShard{}}, coordinator.Hooks{Committed: feed.committed}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Bound as RunCoordinator binds it: the two workers that joined before
	// the coordinator existed count as live, the never-joined slot 2 not.
	late.Bind(c, reg)
	if s = src.Snapshot(); s.Run.LiveWorkers != 2 || s.Run.Paused || aliveWorkers(s.Members) != 2 {
		t.Fatalf("after binding the coordinator: run %+v, members %+v, want 2 live", s.Run, s.Members)
	}
	if s.Run.Generation != 3<<32+2 || s.Run.Restarts != 2 || s.Run.Rollbacks != 2 {
		t.Errorf("generation %d read as %d restarts, %d rollbacks; want 2 and 2", s.Run.Generation, s.Run.Restarts, s.Run.Rollbacks)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-runDone
	})
	<-c.Ready()

	// Three steps: slots 0 and 1 make each (N = 2); slot 2 never joined.
	nan := math.NaN()
	for step := range int64(3) {
		for slot, loss := range []float64{1, 3} {
			_, err := cs.ReportStep(ctx, &coordinatorv1.StepReport{Step: step, Slot: int32(slot), Loss: loss + float64(step),
				CleanCe: loss, AdvCe: nan, Pair: nan, CleanAcc: 0.5, AdvAcc: nan})
			if err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.WaitStep(ctx, step, c.Status().Generation); err != nil {
			t.Fatal(err)
		}
	}
	// The Committed hook runs after WaitStep sees the step: wait for it.
	for feed.hist.Len() < 3 {
		select {
		case <-ctx.Done():
			t.Fatalf("history has %d points, want 3", feed.hist.Len())
		case <-time.After(5 * time.Millisecond):
		}
	}
	// A late, repeated report of slot 0 for step 2: dropped as a backup's,
	// and not averaged into step 2 a second time.
	if _, err := cs.ReportStep(ctx, &coordinatorv1.StepReport{Step: 2, Slot: 0, Loss: 100}); err != nil {
		t.Fatal(err)
	}

	s = src.Snapshot()
	r := s.Run
	if r.Phase != statuspage.PhaseRunning || r.Step != 3 || r.Steps != steps || r.Required != 2 || r.LiveWorkers != 2 ||
		r.Workers != workers || r.Backups != backups || r.Paused || r.DroppedBackup != 1 {
		t.Fatalf("run %+v", r)
	}
	if len(s.History) != 3 {
		t.Fatalf("%d history points", len(s.History))
	}
	for i, p := range s.History {
		if p.Step != int64(i) || p.Reports != 2 || p.Loss != 2+float64(i) || p.CleanCE != 2 || p.CleanAcc != 0.5 || !math.IsNaN(p.AdvCE) {
			t.Errorf("point %d: %+v", i, p)
		}
	}
	if s.History[2].DroppedBackup != 0 {
		t.Errorf("dropped count at step 2's commit: %d, want 0 (the backup came later)", s.History[2].DroppedBackup)
	}
	m := s.Members
	if len(m) != 5 {
		t.Fatalf("members %+v", m)
	}
	if m[0].Name != "worker-a" || !m[0].Alive || m[0].LastStep != 2 || m[0].LastSeen.IsZero() {
		t.Errorf("worker 0: %+v", m[0])
	}
	if m[2].Alive || m[2].Name != "" || m[2].LastStep != -1 {
		t.Errorf("worker 2 (free): %+v", m[2])
	}
	if m[3].Role != statuspage.RoleShard || m[3].Slot != 0 || !m[3].Alive || m[3].Address != "127.0.0.1:41000" || m[3].Name != "ps-0" {
		t.Errorf("shard 0: %+v", m[3])
	}
	if m[4].Alive || m[4].Address != "127.0.0.1:41001" {
		t.Errorf("shard 1 (left): %+v", m[4])
	}

	// Through the mounted handlers.
	res, err := http.Get(srv.URL + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Run struct {
			Phase string
			Step  int64
		}
		History []map[string]any
	}
	err = json.NewDecoder(res.Body).Decode(&got)
	res.Body.Close()
	if err != nil || got.Run.Phase != statuspage.PhaseRunning || got.Run.Step != 3 || len(got.History) != 3 || got.History[0]["adv_ce"] != nil {
		t.Fatalf("status.json: %v %+v", err, got)
	}
	page := httpBody(t, srv.URL+"/")
	for _, want := range []string{`id="step">3 / 10<`, "&lt;script&gt;alert(&#34;w&#34;)&lt;/script&gt;", "127.0.0.1:41001", `<td class="st-down">down</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, `<script>alert`) {
		t.Error("page has the member name unescaped")
	}
	if body := httpBody(t, srv.URL+"/metrics"); body != "metrics" {
		t.Errorf("/metrics shadowed by the status page: %q", body)
	}

	// Two workers gone: fewer live than N pauses the run.
	c.SetLive(1, false)
	c.SetLive(2, false)
	if s = src.Snapshot(); s.Run.Phase != statuspage.PhasePaused || !strings.Contains(s.Run.Reason, "1 live workers, 2 needed") || s.Run.LiveWorkers != 1 {
		t.Errorf("paused run: %+v", s.Run)
	}
}

// TestStatusBeforeAnyWorkerJoined: a bound coordinator no worker has joined
// shows 0 live workers, every worker slot not alive, and a paused run whose
// reason says that none has joined, in the snapshot and in /status.json.
func TestStatusBeforeAnyWorkerJoined(t *testing.T) {
	const workers, backups, steps = 3, 0, 10
	layout := &cluster.Layout{Shards: []paramserver.ShardRange{{Index: 0, Lo: 0, Hi: 10}}}
	reg, late, feed := statusParts(t, layout, workers, backups)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cc := coordinator.DefaultConfig()
	cc.Workers, cc.Backups, cc.Steps, cc.CheckpointEvery = workers, backups, steps, 0
	c, err := coordinator.New(ctx, cc, paramserver.NewMemLog(), nil, []coordinator.ShardClient{&statusTestShard{}}, coordinator.Hooks{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	late.Bind(c, reg)
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-runDone
	})
	<-c.Ready()
	handlers, err := statusHandlers(feed, reg, steps)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for p, h := range handlers {
		mux.Handle(p, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if page := httpBody(t, srv.URL+"/"); !strings.Contains(page, `id="workers">0 live / 3 required<`) || !strings.Contains(page, "no worker has joined yet") {
		t.Errorf("the page does not show 0 live workers and why it waits")
	}
	res, err := http.Get(srv.URL + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var got statuspage.Snapshot
	err = json.NewDecoder(res.Body).Decode(&got)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	const reason = "0 live workers, 3 needed per step (no worker has joined yet: start the workers)"
	if r := got.Run; r.LiveWorkers != 0 || r.Required != 3 || !r.Paused || r.Phase != statuspage.PhasePaused || r.Reason != reason {
		t.Fatalf("/status.json run %+v, want 0 live, paused with %q", r, reason)
	}
	if n := aliveWorkers(got.Members); n != 0 || len(got.Members) != workers+1 {
		t.Fatalf("/status.json members %+v, want %d worker slots none alive", got.Members, workers)
	}
}

// aliveWorkers counts the worker members shown alive.
func aliveWorkers(ms []statuspage.Member) int {
	n := 0
	for _, m := range ms {
		if m.Role == statuspage.RoleWorker && m.Alive {
			n++
		}
	}
	return n
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, b)
	}
	return string(b)
}
