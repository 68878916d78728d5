package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/api"
)

// memResult is socketd's footprint: idle, and with many sockets defined.
type memResult struct {
	IdleRSSMB  float64
	Sockets    int
	StartWithN time.Duration // exec to API ready, the first reconcile of every socket included
	ListeningN int
	RSSWithNMB float64
	DefineN    time.Duration // PUT of every definition, one reconcile each
}

// spawnResult is the raw spawn rate of a handler with no network at all.
type spawnResult struct {
	Handler string
	Workers int
	PerSec  float64
}

func spawnRate(t *tools, handler string, workers int) (float64, error) {
	out, err := exec.Command(t.spawnrate, handler, strconv.Itoa(workers), "3").Output()
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
}

// measureMemory measures an idle daemon, then one with n sockets on port 0.
func measureMemory(t *tools, handler string) (memResult, error) {
	const n = 1000
	m := memResult{Sockets: n}
	data := filepath.Join(t.work, "socketd-mem")
	os.RemoveAll(data)
	const apiAddr = "127.0.0.1:21999"

	cmd, c, _, err := startDaemon(t.socketd, data, apiAddr)
	if err != nil {
		return m, err
	}
	time.Sleep(time.Second) // let the runtime settle after start-up
	m.IdleRSSMB = rssMB(cmd.Process.Pid)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	for i := range n {
		def := socketd.NewSocket()
		def.Name = fmt.Sprintf("s%04d", i)
		def.Listen = []string{"127.0.0.1:0"}
		def.Command = []string{handler}
		if _, _, err := c.PutSocket(ctx, def); err != nil {
			stopDaemon(cmd)
			return m, err
		}
	}
	m.DefineN = time.Since(start)
	stopDaemon(cmd)

	cmd, c, m.StartWithN, err = startDaemon(t.socketd, data, apiAddr)
	if err != nil {
		return m, err
	}
	defer stopDaemon(cmd)
	list, err := c.ListSockets(ctx)
	if err != nil {
		return m, err
	}
	for _, s := range list {
		if s.Status != nil && s.Status.State == socketd.SocketListening {
			m.ListeningN++
		}
	}
	time.Sleep(time.Second)
	m.RSSWithNMB = rssMB(cmd.Process.Pid)
	return m, nil
}

// startDaemon starts socketd binary bin and returns once its API answers, with the
// time that took.
func startDaemon(bin, data, apiAddr string) (*exec.Cmd, *api.Client, time.Duration, error) {
	cmd := exec.Command(bin, "--api-addr", apiAddr, "--data-dir", data, "--log-level", "warn")
	cmd.Env = []string{"PATH=" + socketd.DefaultPath}
	start := time.Now()
	if err := startProcess(cmd); err != nil {
		return nil, nil, 0, err
	}
	for {
		resp, err := http.Get("http://" + apiAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Since(start) > 30*time.Second {
			stopDaemon(cmd)
			return nil, nil, 0, fmt.Errorf("socketd did not start: %w", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	took := time.Since(start)
	token, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		stopDaemon(cmd)
		return nil, nil, 0, err
	}
	return cmd, api.NewClient("http://"+apiAddr, strings.TrimSpace(string(token))), took, nil
}

func stopDaemon(cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	cmd.Wait()
}

// rssMB returns a process's resident set size in megabytes.
func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
