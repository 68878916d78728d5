/* spawnrate measures the raw spawn rate of a program with no network:
 * W workers each run posix_spawn + waitpid in a loop for S seconds.
 * Usage: spawnrate PROG WORKERS SECONDS. Prints spawns per second. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: spawnrate PROG WORKERS SECONDS\n");
		return 2;
	}
	int workers = atoi(argv[2]);
	double secs = atof(argv[3]);
	int pipefd[2];
	if (pipe(pipefd) < 0)
		return 1;
	double start = now();
	for (int w = 0; w < workers; w++) {
		if (fork() == 0) {
			int devnull = open("/dev/null", O_WRONLY);
			posix_spawn_file_actions_t fa;
			posix_spawn_file_actions_init(&fa);
			posix_spawn_file_actions_adddup2(&fa, devnull, 1);
			char *args[] = {argv[1], NULL};
			char *env[] = {NULL};
			long n = 0;
			while (now() - start < secs) {
				pid_t pid;
				if (posix_spawn(&pid, argv[1], &fa, NULL, args, env) != 0)
					_exit(1);
				waitpid(pid, NULL, 0);
				n++;
			}
			if (write(pipefd[1], &n, sizeof n) != sizeof n)
				_exit(1);
			_exit(0);
		}
	}
	long total = 0;
	for (int w = 0; w < workers; w++) {
		long n = 0;
		if (read(pipefd[0], &n, sizeof n) == sizeof n)
			total += n;
		wait(NULL);
	}
	printf("%.0f\n", total / (now() - start));
	return 0;
}
