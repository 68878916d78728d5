// See process.go for why handlers are started this way, and process.h.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "process.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

// The kernel's struct clone_args (linux/sched.h, version 2).
struct sd_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
		set_tid, set_tid_size, cgroup;
};

// The child's stack. It runs a few system calls and no library code.
#define SD_STACK (16 << 10)

// sd_syscall makes a system call without the C library: the child shares
// the parent's memory, thread-local storage included, so it must not write
// errno. It returns -errno on failure.
static long sd_syscall(long n, long a1, long a2, long a3, long a4, long a5) {
#if defined(__x86_64__)
	long ret;
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a1;
	register long x1 __asm__("x1") = a2;
	register long x2 __asm__("x2") = a3;
	register long x3 __asm__("x3") = a4;
	register long x4 __asm__("x4") = a5;
	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4)
			 : "memory");
	return x0;
#else
#error "socketd's process start supports amd64 and arm64"
#endif
}

// sd_clone3 makes a child with clone3(2) that runs fn(arg) on the stack the
// arguments give and exits with its result; it returns the child's pid, or
// -errno. Unlike the C library's clone, clone3 can place the child in a
// cgroup as it is made (CLONE_INTO_CGROUP). The child shares the parent's
// memory and starts on its new stack with the parent's registers: it must
// never return into the parent's frames, so the call and the exit are in
// the assembly.
static long sd_clone3(struct sd_clone_args *args, int (*fn)(void *), void *arg) {
#if defined(__x86_64__)
	long ret;
	register long r8 __asm__("r8") = (long)fn;
	register long r9 __asm__("r9") = (long)arg;
	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 // The child: the kernel keeps every register but rax,
			 // rcx and r11, and set rsp to the top of the new stack.
			 "xor %%ebp, %%ebp\n\t"
			 "and $-16, %%rsp\n\t"
			 "mov %%r9, %%rdi\n\t"
			 "call *%%r8\n\t"
			 "mov %%eax, %%edi\n\t"
			 "mov %[exit], %%eax\n\t"
			 "syscall\n\t"
			 "hlt\n"
			 "1:"
			 : "=a"(ret)
			 : "a"((long)SYS_clone3), "D"(args), "S"(sizeof(*args)), "r"(r8), "r"(r9),
			   [exit] "i"(SYS_exit)
			 : "rcx", "r11", "memory");
	return ret;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = SYS_clone3;
	register long x0 __asm__("x0") = (long)args;
	register long x1 __asm__("x1") = sizeof(*args);
	register long x2 __asm__("x2") = (long)fn;
	register long x3 __asm__("x3") = (long)arg;
	__asm__ volatile("svc 0\n\t"
			 "cbnz x0, 1f\n\t"
			 // The child: sp is the top of the new stack.
			 "mov x29, xzr\n\t"
			 "mov x30, xzr\n\t"
			 "mov x0, x3\n\t"
			 "blr x2\n\t"
			 "mov x8, %[exit]\n\t"
			 "svc 0\n\t"
			 "brk 0\n"
			 "1:"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), [exit] "i"(SYS_exit)
			 : "memory");
	return x0;
#endif
}

// The kernel's struct sigaction (not the C library's), for SIG_DFL.
struct sd_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

// sd_has_tty says whether socketd has a controlling terminal, which a
// handler must let go of (see sd_child). Read once at start (sd_init_pid):
// a daemon does not gain one.
static int sd_has_tty;

// sd_ignored holds the signals socketd was started with ignored (bit
// sig-1), read once at start, before Go's runtime installs its handlers.
static uint64_t sd_ignored;

static int sd_child_fail(sd_proc *p, int step, long ret) {
	p->err_errno = (int)-ret;
	p->err_step = step;
	sd_syscall(SYS_exit, 127, 0, 0, 0, 0);
	return 127;
}

// sd_child runs in the new process, on its own stack in the parent's
// memory, with every signal blocked, until execve.
static int sd_child(void *arg) {
	sd_proc *p = arg;
	long r;

	// The signal handlers are the parent's (Go's), which must never run
	// here: reset them all before any signal is unblocked. execve keeps
	// a signal ignored, so this also gives the handler systemd's default
	// of no ignored signals. clone3's CLONE_CLEAR_SIGHAND has reset the
	// handled ones already, which leaves those ignored since socketd
	// started (no handler of Go's replaced them).
	struct sd_sigaction dfl = {0};
	for (int sig = 1; sig < 65; sig++) {
		if (sig != SIGKILL && sig != SIGSTOP && (!p->sighand_cleared || (sd_ignored & (1ULL << (sig - 1))))) {
			sd_syscall(SYS_rt_sigaction, sig, (long)&dfl, 0, sizeof(dfl.mask), 0);
		}
	}

	// The parent makes the group too (see sd_proc_start); either may come
	// first, and once the handler has executed only its own call counts.
	// Not a session of its own: the scheduler's autogroups would then give
	// every handler as much CPU as socketd and all its other handlers.
	if ((r = sd_syscall(SYS_setpgid, 0, 0, 0, 0, 0)) < 0) {
		return sd_child_fail(p, SD_STEP_SETPGID, r);
	}
	// Without a session of its own it would share socketd's controlling
	// terminal, if socketd has one (started from a root shell, say), which
	// a process may open whatever its user: let go of it.
	if (sd_has_tty) {
		long fd = sd_syscall(SYS_openat, AT_FDCWD, (long)"/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC, 0, 0);
		if (fd >= 0) {
			sd_syscall(SYS_ioctl, fd, TIOCNOTTY, 0, 0, 0);
			sd_syscall(SYS_close, fd, 0, 0, 0, 0);
		}
	}

	sd_attrs *a = &p->attrs;

	// Into its cgroup, where clone3 could not place it, and those of its
	// caps, before it can start anything.
	if (p->join_procs >= 0 && (r = sd_syscall(SYS_write, p->join_procs, (long)"0", 1, 0, 0)) < 0) {
		return sd_child_fail(p, SD_STEP_CGROUP, r);
	}
	for (int i = 0; i < a->njoins; i++) {
		if ((r = sd_syscall(SYS_write, a->joins[i], (long)"0", 1, 0, 0)) < 0) {
			return sd_child_fail(p, SD_STEP_CGROUP, r);
		}
	}

	// The fds first: they need no privilege, and a low limit_nofile set
	// below must not keep them from being placed. Every source fd moves
	// out of the way of the targets 0..nfds-1 first, so that no dup3
	// overwrites a source still to be used.
	int *fds = p->fds;
	for (int i = 0; i < p->nfds; i++) {
		if (fds[i] >= 0 && fds[i] < p->nfds) {
			if ((r = sd_syscall(SYS_fcntl, fds[i], F_DUPFD_CLOEXEC, p->nfds, 0, 0)) < 0) {
				return sd_child_fail(p, SD_STEP_DUP, r);
			}
			fds[i] = (int)r;
		}
	}
	for (int i = 0; i < p->nfds; i++) {
		r = sd_syscall(SYS_dup3, fds[i], i, 0, 0, 0); // dup3 clears close-on-exec
		if (r < 0) {
			return sd_child_fail(p, SD_STEP_DUP, r);
		}
	}

	// A private /tmp needs CAP_SYS_ADMIN, dropped next. The new namespace
	// is this process's alone: it has no CLONE_FS, so no other shares its
	// root and working directory.
	if (a->private_tmp) {
		if ((r = sd_syscall(SYS_unshare, CLONE_NEWNS, 0, 0, 0, 0)) < 0) {
			return sd_child_fail(p, SD_STEP_NAMESPACE, r);
		}
		// Nothing mounted here may reach the host's namespace.
		if ((r = sd_syscall(SYS_mount, (long)"none", (long)"/", 0, MS_REC | MS_SLAVE, 0)) < 0) {
			return sd_child_fail(p, SD_STEP_NAMESPACE, r);
		}
		static const char *const tmps[] = {"/tmp", "/var/tmp"};
		for (int i = 0; i < 2; i++) {
			// Bounded: its pages are charged to socketd's memory.
			r = sd_syscall(SYS_mount, (long)"tmpfs", (long)tmps[i], (long)"tmpfs",
					MS_NOSUID | MS_NODEV, (long)"mode=1777,size=10%");
			// /var/tmp may not exist; /tmp must.
			if (r < 0 && (i == 0 || r != -ENOENT)) {
				return sd_child_fail(p, SD_STEP_PRIVATE_TMP, r);
			}
		}
	}

	// Limits before the privileges go: raising a hard limit needs them.
	for (int i = 0; i < a->nrlimits; i++) {
		struct {
			unsigned long long cur, max;
		} lim = {a->rlimits[i].soft, a->rlimits[i].hard};
		if ((r = sd_syscall(SYS_prlimit64, 0, a->rlimits[i].resource, (long)&lim, 0, 0)) < 0) {
			return sd_child_fail(p, SD_STEP_RLIMIT, r);
		}
	}

	// Nice first: raising priority needs the privileges dropped next.
	// Then groups before the uid, which takes the right to change them.
	// The kernel's calls change this thread only, which is the whole
	// process here; the C library's would signal every thread.
	if (a->set_nice && (r = sd_syscall(SYS_setpriority, PRIO_PROCESS, 0, a->nice, 0, 0)) < 0) {
		return sd_child_fail(p, SD_STEP_NICE, r);
	}
	if (a->umask >= 0) {
		sd_syscall(SYS_umask, a->umask, 0, 0, 0, 0);
	}
	if (a->set_groups && (r = sd_syscall(SYS_setgroups, a->ngroups, (long)a->groups, 0, 0, 0)) < 0) {
		return sd_child_fail(p, SD_STEP_SETGROUPS, r);
	}
	if (a->set_gid && (r = sd_syscall(SYS_setresgid, a->gid, a->gid, a->gid, 0, 0)) < 0) {
		return sd_child_fail(p, SD_STEP_SETGID, r);
	}
	if (a->set_uid) {
		// A setresuid from one unprivileged user to another keeps the
		// ambient capabilities socketd may have been given.
		sd_syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	}
	// Changing ids makes the memory this child shares with socketd
	// non-dumpable, and so socketd itself from then on (no core dumps, no
	// ptrace by others). That is what keeps a process of the handler's user
	// from attaching to this child, and through it to socketd's memory,
	// before the execve: leave it so.
	unsigned int ruid = a->kill_all ? a->kill_ruid : a->uid;
	if (a->set_uid && (r = sd_syscall(SYS_setresuid, ruid, a->uid, ruid, 0, 0)) < 0) {
		return sd_child_fail(p, SD_STEP_SETUID, r);
	}
	if (a->set_uid && a->uid != 0 && ruid != 0) {
		// The kernel clears the capabilities of a process whose uids all
		// leave 0, unless socketd runs with SECBIT_NO_SETUID_FIXUP: clear
		// them whatever its securebits say.
		struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
		struct __user_cap_data_struct none[2] = {{0}};
		if ((r = sd_syscall(SYS_capset, (long)&hdr, (long)none, 0, 0, 0)) < 0) {
			return sd_child_fail(p, SD_STEP_SETUID, r);
		}
	}
	if (a->kill_all) {
		// kill(2) with pid -1: every process these credentials may
		// signal, but this one, at once.
		r = sd_syscall(SYS_kill, -1, SIGKILL, 0, 0, 0);
		sd_syscall(SYS_exit, r < 0 && r != -ESRCH ? 1 : 0, 0, 0, 0, 0);
	}

	if (p->listen_pid) {
		// sd_listen_fds(3) checks that LISTEN_PID is its own pid.
		long pid = sd_syscall(SYS_getpid, 0, 0, 0, 0, 0);
		char digits[20];
		int n = 0;
		do {
			digits[n++] = '0' + pid % 10;
			pid /= 10;
		} while (pid > 0);
		char *d = p->listen_pid;
		while (n > 0) {
			*d++ = digits[--n];
		}
		*d = 0;
	}

	if (a->no_new_privs && (r = sd_syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) < 0) {
		return sd_child_fail(p, SD_STEP_NO_NEW_PRIVS, r);
	}

	// After the credentials: changing them clears the parent-death signal.
	if (p->pdeathsig) {
		if ((r = sd_syscall(SYS_prctl, PR_SET_PDEATHSIG, p->pdeathsig, 0, 0, 0)) < 0) {
			return sd_child_fail(p, SD_STEP_PDEATHSIG, r);
		}
		// The parent may have died before the signal was armed.
		if (sd_syscall(SYS_getppid, 0, 0, 0, 0, 0) != p->ppid) {
			sd_syscall(SYS_exit, 127, 0, 0, 0, 0);
		}
	}

	if (p->dir && (r = sd_syscall(SYS_chdir, (long)p->dir, 0, 0, 0, 0)) < 0) {
		return sd_child_fail(p, SD_STEP_CHDIR, r);
	}

	uint64_t none = 0;
	sd_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, sizeof(none), 0);
	r = sd_syscall(SYS_execve, (long)p->path, (long)p->argv, (long)p->envp, 0, 0);
	return sd_child_fail(p, SD_STEP_EXEC, r);
}

// sd_no_clone3 is set once clone3 has failed with ENOSYS or EPERM, as a
// container runtime's default seccomp profile or a kernel before 5.3 makes
// it: from then on the C library's clone starts children, and a child joins
// its cgroup itself (join_procs).
static int sd_no_clone3;

void sd_set_no_clone3(int on) { __atomic_store_n(&sd_no_clone3, on, __ATOMIC_RELAXED); }

// sd_clone_fallbacks counts the children started with the C library's
// clone, for tests.
static long sd_clone_fallbacks;

long sd_clone_fallback_count(void) { return __atomic_load_n(&sd_clone_fallbacks, __ATOMIC_RELAXED); }

// sd_pid is socketd's pid, read once at start: socketd never forks.
static int sd_pid;

__attribute__((constructor)) static void sd_init_pid(void) {
	sd_pid = getpid();
	for (int sig = 1; sig < 65; sig++) {
		struct sd_sigaction old;
		if (sd_syscall(SYS_rt_sigaction, sig, 0, (long)&old, sizeof(old.mask), 0) == 0 && old.handler == SIG_IGN) {
			sd_ignored |= 1ULL << (sig - 1);
		}
	}
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd >= 0) {
		sd_has_tty = 1;
		close(fd);
	}
}

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

// sd_proc_new copies what the child needs into one allocation: blob holds
// the path, argc arguments, envc environment entries and, if has_dir, the
// working directory, each NUL-terminated; groups holds attrs->ngroups
// groups. It returns NULL if out of memory.
sd_proc *sd_proc_new(const char *blob, size_t len, int argc, int envc, int has_dir,
		const int *fds, int nfds, int pdeathsig, const sd_attrs *attrs, const unsigned int *groups) {
	size_t off_groups = align16(sizeof(sd_proc));
	size_t off_fds = off_groups + align16(attrs->ngroups * sizeof(unsigned int));
	size_t off_argv = off_fds + align16(nfds * sizeof(int));
	size_t off_envp = off_argv + align16((argc + 1) * sizeof(char *));
	size_t off_blob = off_envp + align16((envc + 1) * sizeof(char *));
	size_t off_stack = off_blob + align16(len);
	char *m = malloc(off_stack + SD_STACK);
	if (m == NULL) {
		return NULL;
	}
	sd_proc *p = (sd_proc *)m;
	memset(p, 0, sizeof(*p));
	p->attrs = *attrs;
	if (attrs->ngroups > 0) {
		memcpy(m + off_groups, groups, attrs->ngroups * sizeof(unsigned int));
	}
	p->attrs.groups = (const unsigned int *)(m + off_groups);
	p->fds = (int *)(m + off_fds);
	memcpy(p->fds, fds, nfds * sizeof(int));
	p->nfds = nfds;
	p->pdeathsig = pdeathsig;
	p->argv = (char **)(m + off_argv);
	p->envp = (char **)(m + off_envp);
	char *s = m + off_blob;
	memcpy(s, blob, len);

	p->path = s;
	s += strlen(s) + 1;
	for (int i = 0; i < argc; i++) {
		p->argv[i] = s;
		s += strlen(s) + 1;
	}
	p->argv[argc] = NULL;
	for (int i = 0; i < envc; i++) {
		p->envp[i] = s;
		s += strlen(s) + 1;
	}
	p->envp[envc] = NULL;
	p->listen_pid = NULL;
	if (attrs->listen_pid_env >= 0 && attrs->listen_pid_env < envc) {
		p->listen_pid = strchr(p->envp[attrs->listen_pid_env], '=') + 1;
	}
	p->dir = has_dir ? s : NULL;

	p->stack = m + off_stack;
	p->cgroup_fd = -1;
	p->cgroup_procs_fd = -1;
	p->join_procs = -1;
	p->pid = -1;
	p->pidfd = -1;
	return p;
}

// sd_proc_start starts the child and returns at once, with p->pid and
// p->pidfd set, or returns an errno. The child uses p until it has
// executed or exited: free p only after reaping it.
int sd_proc_start(sd_proc *p) {
	// The child starts with every signal blocked (see sd_child); so must
	// this thread while it clones. Raw calls: the C library would keep
	// its own two signals unblocked.
	uint64_t all = ~(uint64_t)0, old;
	sd_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, sizeof(all), 0);
	p->ppid = sd_pid;
	int pidfd = -1;
	struct sd_clone_args args = {
		.flags = CLONE_VM | CLONE_PIDFD | CLONE_CLEAR_SIGHAND,
		.pidfd = (uintptr_t)&pidfd,
		.exit_signal = SIGCHLD,
		.stack = (uintptr_t)p->stack,
		.stack_size = SD_STACK,
	};
	if (p->cgroup_fd >= 0) {
		args.flags |= CLONE_INTO_CGROUP;
		args.cgroup = p->cgroup_fd;
	}
	long pid = -ENOSYS;
	if (!__atomic_load_n(&sd_no_clone3, __ATOMIC_RELAXED)) {
		p->sighand_cleared = 1;
		pid = sd_clone3(&args, sd_child, p);
		if (pid == -ENOSYS || pid == -EPERM) {
			sd_set_no_clone3(1);
		}
	}
	if (pid == -ENOSYS || pid == -EPERM) {
		p->sighand_cleared = 0;
		p->join_procs = p->cgroup_fd >= 0 ? p->cgroup_procs_fd : -1;
		__atomic_add_fetch(&sd_clone_fallbacks, 1, __ATOMIC_RELAXED);
		pid = clone(sd_child, p->stack + SD_STACK, CLONE_VM | CLONE_PIDFD | SIGCHLD, p, &pidfd);
		if (pid < 0) {
			pid = -errno;
		}
	}
	sd_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, sizeof(old), 0);
	if (pid < 0) {
		return (int)-pid;
	}
	// The child makes its own group as its first step, but the parent may
	// signal the group before the child has run at all: make it here too,
	// so that the group exists when sd_proc_start returns. Once the child
	// has executed this fails (EACCES), and it has made the group itself.
	setpgid((pid_t)pid, (pid_t)pid);
	// The pidfd waits in Go's netpoller, which takes only non-blocking
	// descriptors; CLONE_PIDFD makes it O_RDWR.
	if (pidfd >= 0 && fcntl(pidfd, F_SETFL, O_RDWR | O_NONBLOCK) < 0) {
		close(pidfd);
		pidfd = -1;
	}
	p->pid = (int)pid;
	p->pidfd = pidfd;
	return 0;
}

void sd_proc_free(sd_proc *p) { free(p); }
