// A handler process started with clone3(CLONE_VM) on a small stack of its
// own: the parent neither copies its address space nor waits for the exec.
// See process.go.

#include <stddef.h>

// Steps of the child before execve; a failure at one is reported in
// sd_proc.err_step with its errno in sd_proc.err_errno.
enum {
	SD_STEP_NONE = 0,
	SD_STEP_SETPGID,
	SD_STEP_PDEATHSIG,
	SD_STEP_DUP,
	SD_STEP_CHDIR,
	SD_STEP_EXEC,
	SD_STEP_NICE,
	SD_STEP_SETGROUPS,
	SD_STEP_SETGID,
	SD_STEP_SETUID,
	SD_STEP_NAMESPACE,
	SD_STEP_PRIVATE_TMP,
	SD_STEP_NO_NEW_PRIVS,
	SD_STEP_RLIMIT,
	SD_STEP_CGROUP,
};

// A resource limit to set (setrlimit's resource, soft and hard).
typedef struct sd_rlimit {
	int resource;
	unsigned long long soft, hard;
} sd_rlimit;

#define SD_MAX_RLIMITS 8
#define SD_MAX_JOINS 2

// What the child changes about itself before it executes, besides its fds
// and directory: the one place where a handler's privileges are dropped.
typedef struct sd_attrs {
	int set_groups; // set the supplementary groups to groups
	int ngroups;
	const unsigned int *groups; // set by sd_proc_new
	int set_gid; // set the real, effective and saved gid to gid
	unsigned int gid;
	int set_uid; // likewise the uid, after the groups
	unsigned int uid;
	int umask; // -1: unchanged
	int set_nice;
	int nice;
	// private_tmp: a mount namespace of its own with an empty tmpfs on
	// /tmp and /var/tmp, gone with the last process in it.
	int private_tmp;
	int no_new_privs; // PR_SET_NO_NEW_PRIVS before execve
	// kill_all: once the credentials are changed, send SIGKILL to every
	// process they may signal and exit, instead of executing anything.
	int kill_all;
	// kill_ruid, with kill_all: the real and saved uid, uid being the
	// effective one, so that the processes of uid cannot signal (stop)
	// the killer while they may not be signalled by anyone else.
	unsigned int kill_ruid;
	int nrlimits;
	sd_rlimit rlimits[SD_MAX_RLIMITS];
	// joins are cgroup.procs files of cgroup v1 hierarchies, opened for
	// writing, which the child writes itself into first.
	int njoins;
	int joins[SD_MAX_JOINS];
	// The index of the environment entry "LISTEN_PID=" followed by ten
	// digits, which the child overwrites with its pid; -1: none.
	int listen_pid_env;
} sd_attrs;

typedef struct sd_proc {
	// Set by sd_proc_new, read by the child.
	const char *path;
	char **argv;
	char **envp;
	const char *dir; // NULL: the parent's
	int nfds;
	int *fds;        // fds[i] becomes the child's fd i
	int pdeathsig;
	int ppid;
	sd_attrs attrs; // its groups point into the allocation
	char *listen_pid; // the digits of LISTEN_PID, or NULL

	// Written by the child only when it fails before execve, read by the
	// parent only after the child has exited.
	int err_step;
	int err_errno;

	// Set by sd_proc_start.
	int pid;
	int pidfd; // non-blocking; -1 if the kernel gave none

	// Set by the caller before sd_proc_start: the cgroup v2 directory
	// the child starts in, or -1 for socketd's own, and its cgroup.procs,
	// opened for writing, for the child to join it where clone3 cannot
	// place it (join_procs, set by sd_proc_start).
	int cgroup_fd;
	int cgroup_procs_fd;
	int join_procs;
	// sighand_cleared, set by sd_proc_start, says that the kernel reset
	// the handled signals (clone3's CLONE_CLEAR_SIGHAND).
	int sighand_cleared;

	char *stack; // SD_STACK bytes, 16-byte aligned
} sd_proc;

sd_proc *sd_proc_new(const char *blob, size_t len, int argc, int envc, int has_dir,
		const int *fds, int nfds, int pdeathsig, const sd_attrs *attrs, const unsigned int *groups);
int sd_proc_start(sd_proc *p);
void sd_set_no_clone3(int on);
long sd_clone_fallback_count(void);
void sd_proc_free(sd_proc *p);
