package socketd

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// ResourceLimits are systemd's Limit*= settings for the handler, each
// "VALUE" (soft and hard alike) or "SOFT:HARD", a value being a number or
// "infinity": a count for limit_nofile and limit_nproc, a duration ("30s",
// or seconds) for limit_cpu, bytes with an optional K, M, G or T (powers
// of 1024) for limit_as and limit_core. Empty: socketd's own limit.
type ResourceLimits struct {
	LimitNOFILE string `json:"limit_nofile,omitempty"`
	LimitNPROC  string `json:"limit_nproc,omitempty"`
	LimitCPU    string `json:"limit_cpu,omitempty"`
	LimitAS     string `json:"limit_as,omitempty"`
	LimitCORE   string `json:"limit_core,omitempty"`
	// MemoryMax and TasksMax are systemd's MemoryMax= and TasksMax=: caps
	// on the memory (bytes with an optional K, M, G or T, or a percentage
	// of the host's memory) and on the processes and threads (a count, or
	// a percentage of the host's ceiling) of a handler and everything it
	// starts together, enforced by the kernel through the connection's
	// cgroup. "infinity" or empty: none.
	MemoryMax string `json:"memory_max,omitempty"`
	TasksMax  string `json:"tasks_max,omitempty"`
}

// Caps are the parsed cgroup caps of ResourceLimits; 0 is none.
type Caps struct {
	Memory uint64 // bytes
	Tasks  uint64
}

// Caps parses MemoryMax and TasksMax, turning percentages into amounts
// of this host's.
func (r *ResourceLimits) Caps() (Caps, error) {
	var c Caps
	var err error
	if c.Memory, err = parseCap(r.MemoryMax, true); err != nil {
		return Caps{}, fmt.Errorf("memory_max: %w", err)
	}
	if c.Tasks, err = parseCap(r.TasksMax, false); err != nil {
		return Caps{}, fmt.Errorf("tasks_max: %w", err)
	}
	return c, nil
}

// maxTasks is the kernel's ceiling of pids (PID_MAX_LIMIT), the most
// pids.max takes.
const maxTasks = 4 << 20

// CheckRlimit reports whether value is a limit socketd reads for resource
// ("nofile", "nproc", "cpu", "as" or "core"), as a Limit*= field takes it.
func CheckRlimit(resource, value string) error {
	_, _, err := parseRlimit(resource, value)
	return err
}

// CheckCap reports whether value is a cap socketd reads: a memory_max if
// memory, else a tasks_max.
func CheckCap(memory bool, value string) error {
	_, err := parseCap(value, memory)
	return err
}

// parseCap parses a memory (bytes) or tasks cap; "" and "infinity" are 0.
func parseCap(s string, bytes bool) (uint64, error) {
	if s == "" || s == "infinity" {
		return 0, nil
	}
	var v uint64
	if p, ok := strings.CutSuffix(s, "%"); ok {
		pct, err := strconv.ParseFloat(p, 64)
		if err != nil || !isDigits(strings.Replace(p, ".", "", 1)) || pct <= 0 || pct > 100 {
			return 0, fmt.Errorf("%q is not a percentage above 0 and at most 100", s)
		}
		host := hostTasks()
		if bytes {
			host = hostMemory()
		}
		v = uint64(float64(host) * pct / 100)
	} else if bytes {
		var err error
		if v, err = parseRlimitValue("as", s); err != nil {
			return 0, fmt.Errorf("%q is not bytes (with K, M, G or T), a percentage or infinity", s)
		}
	} else {
		var err error
		if v, err = strconv.ParseUint(s, 10, 64); err != nil || !isDigits(s) {
			return 0, fmt.Errorf("%q is not a number, a percentage or infinity", s)
		}
		if v > maxTasks {
			return 0, fmt.Errorf("%q: the kernel has at most %d tasks; infinity is no cap", s, maxTasks)
		}
	}
	if v == 0 {
		return 0, fmt.Errorf("%q is no room at all: not one handler could start", s)
	}
	return v, nil
}

// hostTasks is the most processes and threads the host can have: the
// lower of kernel.pid_max and kernel.threads-max, as systemd reckons a
// TasksMax= percentage.
func hostTasks() uint64 {
	n := uint64(0)
	for _, f := range []string{"/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && (n == 0 || v < n) {
			n = v
		}
	}
	return n
}

// Rlimit is a parsed resource limit; Infinity is RLIM_INFINITY.
type Rlimit struct {
	Resource   string // "nofile", "nproc", "cpu", "as", "core"
	Soft, Hard uint64
}

// Infinity is an unlimited resource limit.
const Infinity = math.MaxUint64

// minNOFILE is the lowest soft limit of open files a handler may be given:
// it needs its standard streams and the sockets passed to it.
const minNOFILE = 8

// NROpen returns the kernel's ceiling of open files for one process
// (fs.nr_open), which an RLIMIT_NOFILE cannot exceed.
func NROpen() uint64 {
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return 1 << 20 // the kernel's default
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 1 << 20
	}
	return n
}

// Rlimits returns the limits set, parsed, in a fixed order.
func (r *ResourceLimits) Rlimits() ([]Rlimit, error) {
	var out []Rlimit
	for _, f := range r.fields() {
		if f.value == "" {
			continue
		}
		soft, hard, err := parseRlimit(f.resource, f.value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.pointer[1:], err)
		}
		out = append(out, Rlimit{Resource: f.resource, Soft: soft, Hard: hard})
	}
	return out, nil
}

type rlimitField struct{ pointer, resource, value string }

func (r *ResourceLimits) fields() []rlimitField {
	return []rlimitField{
		{"/limit_nofile", "nofile", r.LimitNOFILE},
		{"/limit_nproc", "nproc", r.LimitNPROC},
		{"/limit_cpu", "cpu", r.LimitCPU},
		{"/limit_as", "as", r.LimitAS},
		{"/limit_core", "core", r.LimitCORE},
	}
}

func (r *ResourceLimits) validate(add func(pointer, format string, args ...any)) {
	if _, err := parseCap(r.MemoryMax, true); err != nil {
		add("/memory_max", "%v", err)
	}
	if _, err := parseCap(r.TasksMax, false); err != nil {
		add("/tasks_max", "%v", err)
	}
	for _, f := range r.fields() {
		if f.value == "" {
			continue
		}
		if _, _, err := parseRlimit(f.resource, f.value); err != nil {
			add(f.pointer, "%v", err)
		}
	}
}

// parseRlimit parses "VALUE" or "SOFT:HARD" for resource.
func parseRlimit(resource, s string) (soft, hard uint64, err error) {
	a, b, pair := strings.Cut(s, ":")
	if soft, err = parseRlimitValue(resource, a); err != nil {
		return 0, 0, err
	}
	hard = soft
	if pair {
		if hard, err = parseRlimitValue(resource, b); err != nil {
			return 0, 0, err
		}
	}
	if soft > hard {
		return 0, 0, fmt.Errorf("%q: the soft limit is above the hard one", s)
	}
	if resource == "nofile" {
		if n := NROpen(); hard != Infinity && hard > n {
			return 0, 0, fmt.Errorf("%q: at most %d open files (fs.nr_open); infinity is that", s, n)
		}
		if soft < minNOFILE {
			return 0, 0, fmt.Errorf("%q: at least %d open files: the handler needs its standard streams and sockets", s, minNOFILE)
		}
	}
	return soft, hard, nil
}

func parseRlimitValue(resource, s string) (uint64, error) {
	if s == "infinity" {
		return Infinity, nil
	}
	switch resource {
	case "cpu":
		if isDigits(s) {
			return strconv.ParseUint(s, 10, 64)
		}
		d, err := ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not seconds, a duration such as 30s, or infinity", s)
		}
		return uint64((d + time.Second - 1) / time.Second), nil
	case "as", "core":
		mult := uint64(1)
		if n := len(s); n > 0 {
			if i := strings.IndexByte("KMGT", s[n-1]); i >= 0 {
				mult, s = 1<<(10*(i+1)), s[:n-1]
			}
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil || !isDigits(s) || v > math.MaxUint64/mult {
			return 0, fmt.Errorf("%q is not bytes (with K, M, G or T) or infinity", s)
		}
		return v * mult, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || !isDigits(s) {
		return 0, fmt.Errorf("%q is not a number or infinity", s)
	}
	return v, nil
}
