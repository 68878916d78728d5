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
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"
)

// Result is the JSON line loadgen prints.
type Result struct {
	Label       string  `json:"label,omitempty"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	Conns       int     `json:"conns"`
	ConnPerSec  float64 `json:"conn_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	Errors      int     `json:"errors"`
	Wrong       int     `json:"wrong"`
	FirstError  string  `json:"first_error,omitempty"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:13063", "loopback `host:port` to connect to")
	conc := flag.Int("c", 8, "concurrent clients")
	dur := flag.Duration("d", 5*time.Second, "how long to run")
	maxConns := flag.Int("n", 2_000_000, "stop after this many connections in all")
	expect := flag.String("expect", "Hello World\n", "the payload every connection must return")
	timeout := flag.Duration("timeout", 5*time.Second, "deadline for each connection")
	label := flag.String("label", "", "label copied into the result")
	flag.Parse()

	if err := checkLoopback(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	r := run(*addr, *conc, *dur, *maxConns, []byte(*expect), *timeout)
	r.Label = *label
	json.NewEncoder(os.Stdout).Encode(r)
}

// checkLoopback refuses any target that is not on this machine.
func checkLoopback(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: want an IP:port", addr)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("-addr %q is not a loopback address", addr)
	}
	return nil
}

type worker struct {
	lat        []time.Duration
	errs       int
	wrong      int
	firstError error
}

func run(addr string, conc int, dur time.Duration, maxConns int, expect []byte, timeout time.Duration) Result {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		issued int
	)
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		issued++
		return issued <= maxConns
	}
	workers := make([]worker, conc)
	start := time.Now()
	end := start.Add(dur)
	for i := range workers {
		w := &workers[i]
		wg.Go(func() {
			buf := make([]byte, len(expect)+1)
			for time.Now().Before(end) && take() {
				t0 := time.Now()
				ok, err := once(addr, buf, expect, timeout)
				switch {
				case err != nil:
					w.errs++
					if w.firstError == nil {
						w.firstError = err
					}
				case !ok:
					w.wrong++
				default:
					w.lat = append(w.lat, time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	r := Result{Concurrency: conc, Seconds: elapsed.Seconds()}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		r.Errors += w.errs
		r.Wrong += w.wrong
		if w.firstError != nil && r.FirstError == "" {
			r.FirstError = w.firstError.Error()
		}
	}
	slices.Sort(all)
	r.Conns = len(all)
	r.ConnPerSec = float64(len(all)) / elapsed.Seconds()
	r.P50ms = pct(all, 0.50)
	r.P90ms = pct(all, 0.90)
	r.P99ms = pct(all, 0.99)
	if len(all) > 0 {
		r.MaxMs = ms(all[len(all)-1])
	}
	return r
}

// once makes one connection and reports whether it returned exactly expect.
func once(addr string, buf, expect []byte, timeout time.Duration) (bool, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	n, err := io.ReadFull(c, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, err
	}
	if n == len(buf) {
		return false, nil // more than expected
	}
	return string(buf[:n]) == string(expect), nil
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return ms(sorted[i])
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
