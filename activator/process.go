package activator

// #include "process.h"
import "C"

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// process is a handler started by startProcess. It owns memory the child
// may still be using: free it only once the child has been reaped.
//
// Why not syscall.StartProcess: Go's spawn clones with CLONE_VFORK, so the
// calling thread sleeps in the kernel until the child has executed, and
// the runtime, seeing a thread stuck in a system call, hands its processor
// to another thread and wakes its monitor every 20 µs; with an error pipe,
// a fork lock and a read on the pipe besides, that was a third of the
// daemon's CPU per connection. Here the child gets CLONE_VM and a stack of
// its own (as the C library's posix_spawn does it) but no CLONE_VFORK: the
// parent returns as soon as the child exists. Nothing reports the exec; a
// child that fails before it writes the error where the parent finds it
// after the exit (see execErr). posix_spawn itself cannot set the
// parent-death signal.
//
// Every descriptor socketd opens is close-on-exec from the start (Go and
// socketd open them so; Main marks the inherited ones), so unlike Go's
// spawn this needs no fork lock.
type process struct {
	p     *C.sd_proc
	pid   int
	pidfd int // non-blocking; -1 if the kernel gave none
}

// procAttr is what a handler is started with.
type procAttr struct {
	path string
	argv []string
	env  []string
	dir  string // "" for socketd's own
	fds  []int  // fds[i] becomes the child's fd i
	// creds, if not nil, are the user and groups it runs as.
	creds *socketd.Credentials
	umask uint32
	nice  *int // nil: socketd's
	// privateTmp gives it a mount namespace with /tmp and /var/tmp of its
	// own; noNewPrivs sets no_new_privs.
	privateTmp, noNewPrivs bool
	rlimits                []rlimit // set before the privileges are dropped
	// killAll makes the process, once it has creds, kill every process
	// they may signal and exit, instead of executing path.
	killAll bool
	// killRUID, with killAll, is the killer's real and saved uid (see
	// process.h); creds.UID is its effective one.
	killRUID uint32
	// cgroup, if not nil, is the cgroup the process starts in; joins
	// are the cgroup.procs of v1 cgroups it joins first.
	cgroup *cgroup
	joins  []int
	// listenPID says that the last entry of env is LISTEN_PID with room
	// for the digits, which the new process fills in with its own pid, as
	// sd_listen_fds(3) checks it: no one knows the pid before.
	listenPID bool
}

// startProcess starts a handler in its own process group, without
// socketd's controlling terminal, with the parent death signal SIGKILL. It returns as soon as the child exists:
// whether the exec succeeded is known once it has exited (execErr).
func startProcess(a *procAttr) (*process, error) {
	n := len(a.path) + 1 + len(a.dir) + 1
	for _, s := range a.argv {
		n += len(s) + 1
	}
	for _, s := range a.env {
		n += len(s) + 1
	}
	blob := make([]byte, 0, n)
	blob = append(append(blob, a.path...), 0)
	for _, s := range a.argv {
		blob = append(append(blob, s...), 0)
	}
	for _, s := range a.env {
		blob = append(append(blob, s...), 0)
	}
	hasDir := 0
	if a.dir != "" {
		blob = append(append(blob, a.dir...), 0)
		hasDir = 1
	}
	fds := make([]C.int, len(a.fds))
	for i, fd := range a.fds {
		fds[i] = C.int(fd)
	}
	var fdp *C.int
	if len(fds) > 0 {
		fdp = &fds[0]
	}
	attrs := C.sd_attrs{umask: C.int(a.umask)}
	if a.privateTmp {
		attrs.private_tmp = 1
	}
	if a.killAll {
		attrs.kill_all, attrs.kill_ruid = 1, C.uint(a.killRUID)
	}
	for i, r := range a.rlimits[:min(len(a.rlimits), C.SD_MAX_RLIMITS)] {
		attrs.rlimits[i] = C.sd_rlimit{resource: C.int(r.resource), soft: C.ulonglong(r.soft), hard: C.ulonglong(r.hard)}
		attrs.nrlimits = C.int(i + 1)
	}
	if a.noNewPrivs {
		attrs.no_new_privs = 1
	}
	if len(a.joins) > C.SD_MAX_JOINS {
		return nil, fmt.Errorf("%d cgroups to join, at most %d", len(a.joins), C.SD_MAX_JOINS)
	}
	for i, fd := range a.joins {
		attrs.joins[i] = C.int(fd)
	}
	attrs.njoins = C.int(len(a.joins))
	if n := a.nice; n != nil {
		attrs.set_nice, attrs.nice = 1, C.int(*n)
	}
	var groups []C.uint
	if c := a.creds; c != nil {
		attrs.set_groups, attrs.ngroups = 1, C.int(len(c.Groups))
		for _, g := range c.Groups {
			groups = append(groups, C.uint(g))
		}
		if c.SetGID {
			attrs.set_gid, attrs.gid = 1, C.uint(c.GID)
		}
		if c.SetUID {
			attrs.set_uid, attrs.uid = 1, C.uint(c.UID)
		}
	}
	var gp *C.uint
	if len(groups) > 0 {
		gp = &groups[0]
	}
	if a.listenPID {
		attrs.listen_pid_env = C.int(len(a.env) - 1)
	} else {
		attrs.listen_pid_env = -1
	}
	p := C.sd_proc_new((*C.char)(unsafe.Pointer(&blob[0])), C.size_t(len(blob)),
		C.int(len(a.argv)), C.int(len(a.env)), C.int(hasDir), fdp, C.int(len(fds)), C.int(syscall.SIGKILL),
		&attrs, gp)
	if p == nil {
		return nil, syscall.ENOMEM
	}
	if a.cgroup != nil {
		p.cgroup_fd, p.cgroup_procs_fd = C.int(a.cgroup.fd), C.int(a.cgroup.procs)
	}
	if errno := C.sd_proc_start(p); errno != 0 {
		C.sd_proc_free(p)
		return nil, syscall.Errno(errno)
	}
	return &process{p: p, pid: int(p.pid), pidfd: int(p.pidfd)}, nil
}

// useCloneFallback makes handlers start with the C library's clone, as
// where clone3 is not to be had, or with clone3 again.
func useCloneFallback(on bool) {
	v := C.int(0)
	if on {
		v = 1
	}
	C.sd_set_no_clone3(v)
}

// cloneFallbacks counts the handlers started with the C library's clone.
func cloneFallbacks() int64 { return int64(C.sd_clone_fallback_count()) }

// execErr reports why the child failed before it became the handler, or
// nil if it did not. Call it only after the child has exited.
func (p *process) execErr() error {
	what := childSteps[p.p.err_step]
	switch p.p.err_step {
	case C.SD_STEP_NONE:
		return nil
	case C.SD_STEP_CHDIR:
		what += " " + C.GoString(p.p.dir)
	case C.SD_STEP_EXEC:
		what += " " + C.GoString(p.p.path)
	}
	return fmt.Errorf("%s: %w", what, syscall.Errno(p.p.err_errno))
}

// childSteps names the steps of the child before execve (process.h).
var childSteps = map[C.int]string{
	C.SD_STEP_SETPGID:      "setpgid",
	C.SD_STEP_PDEATHSIG:    "set parent death signal",
	C.SD_STEP_DUP:          "pass file descriptors",
	C.SD_STEP_CHDIR:        "chdir",
	C.SD_STEP_EXEC:         "exec",
	C.SD_STEP_NICE:         "set nice",
	C.SD_STEP_SETGROUPS:    "set supplementary groups",
	C.SD_STEP_SETGID:       "set group",
	C.SD_STEP_SETUID:       "set user",
	C.SD_STEP_NAMESPACE:    "make a mount namespace",
	C.SD_STEP_PRIVATE_TMP:  "mount a private /tmp",
	C.SD_STEP_NO_NEW_PRIVS: "set no_new_privs",
	C.SD_STEP_RLIMIT:       "set resource limits",
	C.SD_STEP_CGROUP:       "join cgroup",
}

// free releases the memory the child used. Call it only after the child has
// been reaped.
func (p *process) free() {
	C.sd_proc_free(p.p)
	p.p = nil
}

// rlimit is a resource limit for setrlimit(2).
type rlimit struct {
	resource   int
	soft, hard uint64
}

// rlimitResources maps the definition's resources to setrlimit's.
var rlimitResources = map[string]int{
	"nofile": unix.RLIMIT_NOFILE, "nproc": unix.RLIMIT_NPROC, "cpu": unix.RLIMIT_CPU,
	"as": unix.RLIMIT_AS, "core": unix.RLIMIT_CORE,
}
