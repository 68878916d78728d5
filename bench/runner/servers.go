package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// tools holds the paths of everything the runner starts.
type tools struct {
	work      string // scratch directory for configs and data
	socketd   string
	baseline  string // another socketd binary to compare with, or ""
	loadgen   string
	ceiling   string
	spawnrate string
	inetd     string // openbsd-inetd, unpacked privately (it conflicts with xinetd)
}

// peer is one server under test: how to start it on a loopback port with a
// handler program. Each runs in the foreground with a private config and its
// throttles raised, so that no default limit holds it back.
type peer struct {
	name  string
	start func(t *tools, port int, handler string) (*exec.Cmd, error)
}

var peers = []peer{
	{"socketd", nil}, // started by startSocketd, which also defines the socket over the API
	// socketd-baseline (started the same way, from -baseline) joins these
	// when asked for.
	{"c-ceiling", func(t *tools, port int, h string) (*exec.Cmd, error) {
		return exec.Command(t.ceiling, strconv.Itoa(port), h), nil
	}},
	{"tcpserver", func(t *tools, port int, h string) (*exec.Cmd, error) {
		// -c raises the default limit of 40 concurrent children; -H -R -l 0
		// skip the DNS and ident lookups.
		return exec.Command("tcpserver", "-c", "1000", "-b", "1024", "-H", "-R", "-l", "0",
			"127.0.0.1", strconv.Itoa(port), h), nil
	}},
	{"tcpsvd", func(t *tools, port int, h string) (*exec.Cmd, error) {
		return exec.Command("tcpsvd", "-c", "1000", "-b", "1024", "-l", "0",
			"127.0.0.1", strconv.Itoa(port), h), nil
	}},
	{"xinetd", func(t *tools, port int, h string) (*exec.Cmd, error) {
		conf := filepath.Join(t.work, fmt.Sprintf("xinetd-%d.conf", port))
		// cps and instances are raised from their defaults (50 10, and a
		// per-service cap); logging goes nowhere.
		text := fmt.Sprintf(`defaults
{
	instances = UNLIMITED
	per_source = UNLIMITED
	cps = 1000000 1
}
service bench
{
	type        = UNLISTED
	socket_type = stream
	protocol    = tcp
	wait        = no
	user        = root
	bind        = 127.0.0.1
	port        = %d
	server      = %s
	instances   = UNLIMITED
	per_source  = UNLIMITED
	cps         = 1000000 1
}
`, port, h)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return nil, err
		}
		return exec.Command("xinetd", "-dontfork", "-f", conf,
			"-pidfile", filepath.Join(t.work, fmt.Sprintf("xinetd-%d.pid", port))), nil
	}},
	{"openbsd-inetd", func(t *tools, port int, h string) (*exec.Cmd, error) {
		conf := filepath.Join(t.work, fmt.Sprintf("inetd-%d.conf", port))
		line := fmt.Sprintf("127.0.0.1:%d stream tcp nowait root %s %s\n", port, h, filepath.Base(h))
		if err := os.WriteFile(conf, []byte(line), 0o644); err != nil {
			return nil, err
		}
		// -i stays in the foreground; -R raises the per-minute rate limit
		// (default 256); -q the backlog.
		return exec.Command(t.inetd, "-i", "-R", "100000000", "-q", "1024", conf), nil
	}},
	{"systemd-socket-activate", func(t *tools, port int, h string) (*exec.Cmd, error) {
		return exec.Command("systemd-socket-activate", "--accept", "--inetd",
			"-l", fmt.Sprintf("127.0.0.1:%d", port), h), nil
	}},
	{"socat", func(t *tools, port int, h string) (*exec.Cmd, error) {
		return exec.Command("socat",
			fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr,backlog=1024", port), "EXEC:"+h), nil
	}},
}
