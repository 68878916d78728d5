// Command runner runs the benchmark: socketd and its peers side by side on
// loopback, with the same handlers, interleaved over several rounds, and
// prints a Markdown table of connections per second, latency and server CPU
// time per connection, with the ratios of socketd to each peer and the
// issue's targets checked.
//
// bench/run builds and installs what it needs and then runs it; see
// bench/README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/api"
	"github.com/socketd/socketd/bench/load"
)

// payload is what both handlers write (c/hello.c and the script bench/run
// makes): loadgen checks every connection's answer against it, and the
// history check every row's bytes out.
const payload = "Hello World\n"

// result is one loadgen run, as loadgen prints it, plus what the runner
// measures around it.
type result struct {
	load.Result

	Handler   string  `json:"handler"`
	Server    string  `json:"server"`
	Round     int     `json:"round"`
	CPUPerCon float64 `json:"cpu_us_per_conn"`
	History   string  `json:"history,omitempty"` // socketd only: the check of its rows
	HistoryOK bool    `json:"history_ok"`
}

// running is a server started for one handler.
type running struct {
	name   string
	port   int
	cmd    *exec.Cmd
	client *api.Client // socketd only
}

func main() {
	var t tools
	flag.StringVar(&t.work, "work", "", "scratch `dir` (required)")
	flag.StringVar(&t.socketd, "socketd", "", "socketd binary")
	flag.StringVar(&t.baseline, "baseline", "", "another socketd `binary` to run beside it as socketd-baseline (an A/B of a change)")
	flag.StringVar(&t.loadgen, "loadgen", "", "loadgen binary")
	flag.StringVar(&t.ceiling, "ceiling", "", "C ceiling server binary")
	flag.StringVar(&t.spawnrate, "spawnrate", "", "raw spawn-rate binary")
	flag.StringVar(&t.inetd, "inetd", "", "openbsd-inetd binary")
	static := flag.String("static", "", "static handler binary")
	script := flag.String("script", "", "shell script handler")
	rounds := flag.Int("rounds", 3, "rounds of interleaved runs")
	dur := flag.Duration("d", 3*time.Second, "length of one run")
	concs := flag.String("c", "1,8,32", "concurrencies")
	only := flag.String("servers", "", "comma-separated servers to run (default all)")
	out := flag.String("out", "", "also write the Markdown report to this `file`")
	flag.Parse()
	if t.work == "" || t.socketd == "" || t.loadgen == "" || *static == "" || *script == "" {
		fatal(errors.New("-work, -socketd, -loadgen, -static and -script are required; use bench/run"))
	}
	var cs []int
	for _, f := range strings.Split(*concs, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 || c > 256 {
			fatal(fmt.Errorf("-c: %q is not a concurrency from 1 to 256", f))
		}
		cs = append(cs, c)
	}
	if t.baseline != "" {
		peers = slices.Insert(peers, 1, peer{name: "socketd-baseline"})
	}
	selected := peers
	if *only != "" {
		selected = nil
		for _, p := range peers {
			if slices.Contains(strings.Split(*only, ","), p.name) {
				selected = append(selected, p)
			}
		}
	}

	handlers := []struct{ name, path string }{{"static", *static}, {"script", *script}}
	var results []result
	for hi, h := range handlers {
		servers, err := startAll(&t, selected, 21000+hi*100, h.path)
		if err != nil {
			stopAll(servers)
			fatal(err)
		}
		for _, s := range servers { // warm up: caches, first-time allocations
			loadgen(&t, s.port, 4, 500*time.Millisecond)
		}
		for round := range *rounds {
			for _, c := range cs {
				// Rotate the order each round, so no server always runs
				// right after the same neighbour.
				for i := range servers {
					s := servers[(i+round)%len(servers)]
					r := measure(&t, s, c, *dur)
					r.Handler, r.Round = h.name, round
					results = append(results, r)
					fmt.Fprintf(os.Stderr, "%-7s %-24s c=%-3d %8.0f conn/s  p50 %6.2f ms  p99 %6.2f ms  cpu %5.0f µs/conn  errors %d wrong %d %s\n",
						h.name, s.name, c, r.ConnPerSec, r.P50ms, r.P99ms, r.CPUPerCon, r.Errors, r.Wrong, r.History)
				}
			}
		}
		stopAll(servers)
	}

	var rep report
	rep.results = results
	rep.concs = cs
	for _, h := range handlers {
		for _, w := range []int{1, 2} {
			rate, err := spawnRate(&t, h.path, w)
			if err != nil {
				fmt.Fprintln(os.Stderr, "spawnrate:", err)
			}
			rep.spawn = append(rep.spawn, spawnResult{h.name, w, rate})
		}
	}
	mem, err := measureMemory(&t, *static)
	if err != nil {
		fmt.Fprintln(os.Stderr, "memory:", err)
	}
	rep.mem = mem
	md := rep.markdown(*rounds, *dur)
	fmt.Print(md)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			fatal(err)
		}
	}
	raw, _ := json.MarshalIndent(results, "", " ")
	os.WriteFile(filepath.Join(t.work, "results.json"), raw, 0o644)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "runner:", err)
	os.Exit(1)
}

// startAll starts every selected server on its own port.
func startAll(t *tools, selected []peer, base int, handler string) ([]*running, error) {
	var servers []*running
	for i, p := range selected {
		port := base + i
		var s *running
		var err error
		switch p.name {
		case "socketd":
			s, err = startSocketd(t, t.socketd, p.name, port, handler)
		case "socketd-baseline":
			s, err = startSocketd(t, t.baseline, p.name, port, handler)
		default:
			var cmd *exec.Cmd
			if cmd, err = p.start(t, port, handler); err == nil {
				s = &running{name: p.name, port: port, cmd: cmd}
				err = startProcess(cmd)
			}
		}
		if err != nil {
			return servers, fmt.Errorf("%s: %w", p.name, err)
		}
		servers = append(servers, s)
		if err := waitPort(port); err != nil {
			return servers, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return servers, nil
}

func startProcess(cmd *exec.Cmd) error {
	cmd.Stdout, cmd.Stderr = nil, nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd.Start()
}

func stopAll(servers []*running) {
	for _, s := range servers {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

// waitPort waits until something accepts connections on the port.
func waitPort(port int) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on port %d", port)
}

// startSocketd starts daemon binary bin as server name with its own data
// dir, and defines the benchmark socket through the API, with the
// definition's defaults (stderr captured, every connection recorded).
func startSocketd(t *tools, bin, name string, port int, handler string) (*running, error) {
	data := filepath.Join(t.work, fmt.Sprintf("socketd-%d", port))
	os.RemoveAll(data)
	cmd, client, _, err := startDaemon(bin, data, fmt.Sprintf("127.0.0.1:%d", port+50))
	if err != nil {
		return nil, err
	}
	s := &running{name: name, port: port, cmd: cmd, client: client}
	def := socketd.NewSocket()
	def.Name = "bench"
	def.Listen = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	def.Command = []string{handler}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = s.client.PutSocket(ctx, def)
	return s, err
}

// measure runs loadgen against one server and takes the server's CPU time
// around it.
func measure(t *tools, s *running, c int, d time.Duration) result {
	since := time.Now().UTC()
	cpu0 := cpuTime(s.cmd.Process.Pid)
	r := loadgen(t, s.port, c, d)
	cpu1 := cpuTime(s.cmd.Process.Pid)
	r.Server, r.Concurrency = s.name, c // also when loadgen failed
	if r.Conns > 0 {
		r.CPUPerCon = float64((cpu1 - cpu0).Microseconds()) / float64(r.Conns)
	}
	if s.client != nil {
		r.History, r.HistoryOK = checkHistory(s.client, since, r)
	}
	return r
}

func loadgen(t *tools, port, c int, d time.Duration) result {
	out, err := exec.Command(t.loadgen, "-addr", fmt.Sprintf("127.0.0.1:%d", port),
		"-c", strconv.Itoa(c), "-d", d.String(), "-expect", payload).Output()
	var r result
	if err == nil {
		err = json.Unmarshal(out, &r)
	}
	if err != nil {
		r.Errors++
		r.FirstError = "loadgen: " + err.Error()
	}
	return r
}

// cpuTime returns the user and system time a process has used so far, all
// its threads included and its children excluded: the server's own cost.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are fields 14 and 15 of the line.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clockTicks
}

// checkHistory verifies that socketd recorded exactly one finished row per
// connection served since the run began: nothing lost, nothing duplicated.
func checkHistory(c *api.Client, since time.Time, r result) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Rows finish right after their connection closes; wait for the last.
	for {
		running, _, err := c.ListConnections(ctx, socketd.ConnectionFilter{Socket: "bench", State: socketd.ConnRunning, Since: since, Limit: 1})
		if err != nil {
			return "history: " + err.Error(), false
		}
		if len(running) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var rows, bad int
	seen := map[int64]bool{}
	f := socketd.ConnectionFilter{Socket: "bench", Since: since, Limit: socketd.MaxListLimit}
	for {
		items, next, err := c.ListConnections(ctx, f)
		if err != nil {
			return "history: " + err.Error(), false
		}
		for _, it := range items {
			if seen[it.ID] {
				bad++
			}
			seen[it.ID] = true
			rows++
			if it.State != socketd.ConnExited || it.ExitCode == nil || *it.ExitCode != 0 || it.BytesOut != int64(len(payload)) {
				bad++
			}
		}
		if next == "" {
			break
		}
		f.Cursor = next
	}
	ok := bad == 0 && (rows == r.Conns || (r.Errors > 0 && rows >= r.Conns && rows <= r.Conns+r.Errors))
	verdict := "ok"
	if !ok {
		verdict = "MISMATCH"
	}
	return fmt.Sprintf("history %s: %d rows for %d served, %d bad", verdict, rows, r.Conns, bad), ok
}
