// Package load is the benchmark's load generator: a closed loop of clients
// that each connect, read to EOF, check the payload and close, against a
// loopback address only, with a deadline on every dial and read.
package load

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Result is what a run measured; loadgen prints it as one JSON line.
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

// CheckLoopback refuses any target that is not on this machine.
func CheckLoopback(addr string) error {
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

// Run runs conc clients against addr for dur, or until maxConns
// connections in all, each expecting exactly expect and giving up on a
// connection after timeout.
func Run(addr string, conc int, dur time.Duration, maxConns int, expect []byte, timeout time.Duration) Result {
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
