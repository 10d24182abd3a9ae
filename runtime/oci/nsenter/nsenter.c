// Joins the namespaces of a running container before the Go runtime starts.
//
// setns(2) into a mount namespace is refused to a process with more than one
// thread, and a Go program always has several. So, like runc, hako does it in a
// C constructor that runs before Go's runtime starts any thread. It acts only
// when _HAKO_NSENTER names a container's PID; every other start of the binary
// returns at once.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what, const char *arg) {
	fprintf(stderr, "nsenter: %s %s: %s\n", what, arg ? arg : "", strerror(errno));
	_exit(125);
}

static pid_t child;

static void forward(int sig) {
	if (child > 0)
		kill(child, sig);
}

__attribute__((constructor)) static void hako_nsenter(void) {
	const char *pid = getenv("_HAKO_NSENTER");
	if (pid == NULL || *pid == '\0')
		return;

	// The host binary must not be reachable from the container through
	// /proc/PID/exe: a non-dumpable process's exe link is closed to processes
	// without CAP_SYS_PTRACE (CVE-2019-5736 class).
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		die("prctl", "dumpable");

	// Open the container's cgroup.procs files while host paths still
	// resolve; the child writes 0 (itself) there after the fork, so that this
	// waiting parent never counts in the container's cgroup.
	int cgfds[16];
	int ncg = 0;
	const char *procs = getenv("_HAKO_CGROUP_PROCS");
	if (procs != NULL && *procs != '\0') {
		char *list = strdup(procs), *save = NULL;
		for (char *p = strtok_r(list, ":", &save); p && ncg < 16; p = strtok_r(NULL, ":", &save)) {
			cgfds[ncg] = open(p, O_WRONLY | O_CLOEXEC);
			if (cgfds[ncg] < 0)
				die("open", p);
			ncg++;
		}
		free(list);
	}

	// Open every namespace first (the paths are host paths), then join them,
	// the mount namespace last.
	static const char *names[] = {"cgroup", "ipc", "uts", "net", "pid", "mnt"};
	int fds[6];
	char path[64];
	for (int i = 0; i < 6; i++) {
		snprintf(path, sizeof path, "/proc/%s/ns/%s", pid, names[i]);
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			die("open", path);
	}
	for (int i = 0; i < 6; i++) {
		if (setns(fds[i], 0) < 0)
			die("setns", names[i]);
		close(fds[i]);
	}

	// A new PID namespace applies to children only: fork, let the child go on
	// into Go, and mirror its end here.
	child = fork();
	if (child < 0)
		die("fork", NULL);
	if (child == 0) {
		for (int i = 0; i < ncg; i++) {
			if (write(cgfds[i], "0", 1) != 1)
				die("join cgroup", NULL);
			close(cgfds[i]);
		}
		unsetenv("_HAKO_NSENTER");
		unsetenv("_HAKO_CGROUP_PROCS");
		return;
	}
	// This waiting parent needs no descriptor: holding the socket to the host
	// would keep the host from seeing the child's exec (the socket's EOF).
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = forward;
	int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
	for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaction(sigs[i], &sa, NULL);
	int status;
	while (waitpid(child, &status, 0) < 0) {
		if (errno != EINTR)
			die("wait", NULL);
	}
	if (WIFEXITED(status))
		_exit(WEXITSTATUS(status));
	int sig = WTERMSIG(status);
	signal(sig, SIG_DFL);
	sigset_t all;
	sigemptyset(&all);
	sigaddset(&all, sig);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	kill(getpid(), sig);
	_exit(128 + sig);
}
