// Command loadgen is the benchmark's load generator: a closed loop of C
// clients that, for D seconds, each connect, read to EOF, check the payload
// and close. It prints one JSON line: connections per second, latency
// percentiles (connect to EOF), errors and wrong payloads.
//
// It dials loopback addresses only, and every dial and read has a deadline,
// so a stuck server fails the run instead of hanging it.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/socketd/socketd/bench/load"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:13063", "loopback `host:port` to connect to")
	conc := flag.Int("c", 8, "concurrent clients")
	dur := flag.Duration("d", 5*time.Second, "how long to run")
	maxConns := flag.Int("n", 2_000_000, "stop after this many connections in all")
	expect := flag.String("expect", "Hello World\n", "the payload every connection must return")
	timeout := flag.Duration("timeout", 5*time.Second, "deadline for each connection")
	label := flag.String("label", "", "label copied into the result")
	flag.Parse()

	if err := load.CheckLoopback(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	r := load.Run(*addr, *conc, *dur, *maxConns, []byte(*expect), *timeout)
	r.Label = *label
	json.NewEncoder(os.Stdout).Encode(r)
}
