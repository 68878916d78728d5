// A handler process started with clone(CLONE_VM) on a small stack of its
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
};

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

	// Written by the child only when it fails before execve, read by the
	// parent only after the child has exited.
	int err_step;
	int err_errno;

	// Set by sd_proc_start.
	int pid;
	int pidfd; // non-blocking; -1 if the kernel gave none

	char *stack_top;
} sd_proc;

sd_proc *sd_proc_new(const char *blob, size_t len, int argc, int envc, int has_dir,
		const int *fds, int nfds, int pdeathsig);
int sd_proc_start(sd_proc *p);
void sd_proc_free(sd_proc *p);
