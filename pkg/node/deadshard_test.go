package node

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// deadShardIsVisibleAndCheap checks, while shard k of c is dead, what an
// operator and the machine see (issue 12, item 2): the cluster pauses with
// the shard named in /status.json and logitpair_paused, the shard is not
// listed live, and each waiting worker spends at most 5% of a core and
// writes at most about one log line per second.
func deadShardIsVisibleAndCheap(t *testing.T, c *Cluster, k int) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	base := "http://" + c.Coord.Addr.HTTP
	var st struct {
		Run struct {
			Paused bool
			Reason string
		}
		Members []struct {
			Role  string
			Slot  int
			Alive bool
		}
	}
	deadline := time.Now().Add(time.Minute) // a hang guard: the probe runs every 2 s
	for {
		resp, err := client.Get(base + "/status.json")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err == nil && st.Run.Paused && strings.Contains(st.Run.Reason, fmt.Sprintf("shard %d unreachable", k)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pause naming shard %d in /status.json (last: %+v, %v)\n%s", k, st.Run, err, c.LogTail("coordinator", 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range st.Members {
		if m.Role == "paramserver" && m.Slot == k && m.Alive {
			t.Errorf("/status.json lists the dead shard %d as alive", k)
		}
	}
	resp, err := client.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "Paused:") || !strings.Contains(string(page), fmt.Sprintf("shard %d unreachable", k)) {
		t.Errorf("the status page does not show the pause and its reason (shard %d unreachable)", k)
	}
	if v := scrape(t, client, "http://"+c.Coord.Addr.HTTP+"/metrics", "logitpair_paused"); v != 1 {
		t.Errorf("logitpair_paused = %v while shard %d is dead, want 1", v, k)
	}
	if runtime.GOOS != "linux" {
		return
	}
	// The workers finish the step they were computing, fail to push or
	// pull, and back off. Measure after they have started failing.
	for w := range c.Workers {
		waitLogLine(t, c, fmt.Sprintf("worker-%d", w), "failed; retrying after a pause")
	}
	const window = 6 * time.Second
	cpu0 := make([]time.Duration, len(c.Workers))
	lines0 := make([]int, len(c.Workers))
	for w, p := range c.Workers {
		cpu0[w], lines0[w] = procCPU(t, p.Cmd.Process.Pid), logLines(t, c, fmt.Sprintf("worker-%d", w))
	}
	t0 := time.Now()
	time.Sleep(window)
	elapsed := time.Since(t0)
	for w, p := range c.Workers {
		cpu := procCPU(t, p.Cmd.Process.Pid) - cpu0[w]
		lines := logLines(t, c, fmt.Sprintf("worker-%d", w)) - lines0[w]
		t.Logf("worker %d while shard %d is dead: %v CPU in %v (%.1f%% of a core), %d log lines", w, k, cpu, elapsed.Round(time.Millisecond), 100*cpu.Seconds()/elapsed.Seconds(), lines)
		if cpu.Seconds() > 0.05*elapsed.Seconds() {
			t.Errorf("worker %d used %v of CPU in %v while waiting for a dead shard: more than 5%% of a core", w, cpu, elapsed)
		}
		if float64(lines) > elapsed.Seconds()+1 {
			t.Errorf("worker %d wrote %d log lines in %v while waiting for a dead shard: more than one a second", w, lines, elapsed)
		}
	}
}

// procCPU is the user + system CPU time process pid has used (Linux).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start after ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of proc(5)
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	const hz = 100                              // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / hz
}

// logLines counts the lines of process name's log.
func logLines(t *testing.T, c *Cluster, name string) int {
	t.Helper()
	f, err := os.Open(filepath.Join(c.L.Dir, "logs", name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
	}
	return n
}

// waitLogLine waits (bounded) until process name's log has a line holding
// msg.
func waitLogLine(t *testing.T, c *Cluster, name, msg string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(c.L.Dir, "logs", name+".log"))
		if strings.Contains(string(b), msg) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never logged %q\n%s", name, msg, c.LogTail(name, 20))
}

// scrape reads one unlabelled series from a Prometheus text endpoint.
func scrape(t *testing.T, client *http.Client, url, series string) float64 {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == series {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("%s: no series %s", url, series)
	return 0
}
