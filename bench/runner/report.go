package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report turns the runs into Markdown: one table per handler and
// concurrency, the ceilings, socketd's footprint, and the targets.
type report struct {
	results []result
	concs   []int
	spawn   []spawnResult
	mem     memResult
}

// stat is the medians of one server's runs at one handler and concurrency.
type stat struct {
	connPerSec, p50, p99, cpu float64
	errors, wrong             int
}

func (r *report) stat(handler, server string, c int) (stat, bool) {
	var s stat
	var rates, p50s, p99s, cpus []float64
	for _, x := range r.results {
		if x.Handler != handler || x.Server != server || x.Concurrency != c {
			continue
		}
		rates = append(rates, x.ConnPerSec)
		p50s = append(p50s, x.P50ms)
		p99s = append(p99s, x.P99ms)
		cpus = append(cpus, x.CPUPerCon)
		s.errors += x.Errors
		s.wrong += x.Wrong
	}
	if len(rates) == 0 {
		return s, false
	}
	s.connPerSec, s.p50, s.p99, s.cpu = median(rates), median(p50s), median(p99s), median(cpus)
	return s, true
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (r *report) markdown(rounds int, d time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Run of %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Machine: %s, %d cores, Linux %s, %s. %d rounds of %v per server and concurrency, interleaved; medians.\n\n",
		cpuModel(), runtime.NumCPU(), kernel(), runtime.Version(), rounds, d)

	var servers []string
	for _, p := range peers {
		for _, x := range r.results {
			if x.Server == p.name {
				servers = append(servers, p.name)
				break
			}
		}
	}
	for _, h := range []string{"static", "script"} {
		for _, c := range r.concs {
			sd, ok := r.stat(h, "socketd", c)
			fmt.Fprintf(&b, "### %s handler, c=%d\n\n", h, c)
			b.WriteString("| server | conn/s | p50 ms | p99 ms | server CPU µs/conn | socketd conn/s ÷ server | errors |\n")
			b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
			for _, name := range servers {
				s, found := r.stat(h, name, c)
				if !found {
					continue
				}
				ratio := "–"
				if ok && s.connPerSec > 0 && name != "socketd" {
					ratio = fmt.Sprintf("%.2f", sd.connPerSec/s.connPerSec)
				}
				fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.2f | %.0f | %s | %d |\n",
					name, s.connPerSec, s.p50, s.p99, s.cpu, ratio, s.errors+s.wrong)
			}
			b.WriteString("\n")
		}
	}

	b.WriteString("### Ceilings and footprint\n\n")
	for _, s := range r.spawn {
		fmt.Fprintf(&b, "- Raw spawn rate, %s handler, %d worker(s), no network: %.0f/s\n", s.Handler, s.Workers, s.PerSec)
	}
	m := r.mem
	fmt.Fprintf(&b, "- socketd idle RSS: %.1f MB\n", m.IdleRSSMB)
	fmt.Fprintf(&b, "- %d sockets on port 0: defined one PUT at a time in %v; start-up including their reconcile %v; %d listening; RSS %.1f MB\n\n",
		m.Sockets, m.DefineN.Round(time.Millisecond), m.StartWithN.Round(time.Millisecond), m.ListeningN, m.RSSWithNMB)

	b.WriteString("### Targets\n\n| target | measured | met |\n|---|---|---|\n")
	check := func(name, measured string, met bool) {
		mark := "yes"
		if !met {
			mark = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, measured, mark)
	}
	for _, h := range []string{"static", "script"} {
		for _, c := range []int{8, 32} {
			sd, ok1 := r.stat(h, "socketd", c)
			ts, ok2 := r.stat(h, "tcpserver", c)
			ce, ok3 := r.stat(h, "c-ceiling", c)
			if ok1 && ok2 {
				check(fmt.Sprintf("%s c=%d: conn/s ≥ 1.0 × tcpserver", h, c),
					fmt.Sprintf("%.0f vs %.0f (%.2f×)", sd.connPerSec, ts.connPerSec, sd.connPerSec/ts.connPerSec),
					sd.connPerSec >= ts.connPerSec)
				check(fmt.Sprintf("%s c=%d: p99 ≤ 1.2 × tcpserver", h, c),
					fmt.Sprintf("%.2f vs %.2f ms", sd.p99, ts.p99), sd.p99 <= 1.2*ts.p99)
			}
			if ok1 && ok3 {
				check(fmt.Sprintf("%s c=%d: conn/s ≥ 0.85 × C ceiling", h, c),
					fmt.Sprintf("%.0f vs %.0f (%.2f×)", sd.connPerSec, ce.connPerSec, sd.connPerSec/ce.connPerSec),
					sd.connPerSec >= 0.85*ce.connPerSec)
			}
		}
		sd, ok1 := r.stat(h, "socketd", 1)
		ts, ok2 := r.stat(h, "tcpserver", 1)
		if ok1 && ok2 {
			check(fmt.Sprintf("%s c=1: p50 within 0.1 ms of tcpserver", h),
				fmt.Sprintf("%.2f vs %.2f ms", sd.p50, ts.p50), sd.p50-ts.p50 <= 0.1)
		}
	}
	check("idle RSS ≤ 40 MB", fmt.Sprintf("%.1f MB", m.IdleRSSMB), m.IdleRSSMB > 0 && m.IdleRSSMB <= 40)
	check(fmt.Sprintf("%d sockets: reconcile ≤ 1 s", m.Sockets), fmt.Sprintf("start-up %v, %d listening", m.StartWithN.Round(time.Millisecond), m.ListeningN),
		m.ListeningN == m.Sockets && m.StartWithN <= time.Second)
	check(fmt.Sprintf("%d sockets: RSS ≤ 80 MB", m.Sockets), fmt.Sprintf("%.1f MB", m.RSSWithNMB), m.RSSWithNMB > 0 && m.RSSWithNMB <= 80)
	var runs, okRuns int
	for _, x := range r.results {
		if x.Server == "socketd" {
			runs++
			if x.HistoryOK {
				okRuns++
			}
		}
	}
	check("one finished history row per connection served", fmt.Sprintf("%d of %d socketd runs exact", okRuns, runs), runs > 0 && okRuns == runs)
	b.WriteString("\n")
	return b.String()
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func kernel() string {
	out, _ := exec.Command("uname", "-r").Output()
	return strings.TrimSpace(string(out))
}
