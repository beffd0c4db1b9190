/*
 * pginval: one binary, four commands, dispatched here.
 *
 *   run   -c FILE   the daemon, in the foreground (run_main.c)
 *   check -c FILE   validate a configuration and exit (run_main.c)
 *   tail            print the channel for humans (tail.c)
 *   apply -c FILE   the subscriber that invalidates caches (apply_main.c)
 *
 * run and apply share one shell (shell.c): options, configuration,
 * signals, the drain, the metrics listener and systemd notifications.
 */
#include "apply/apply.h"
#include "run/run_main.h"
#include "core/shell.h"
#include "tail.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

static const struct {
	const char *name;
	int (*main)(int argc, char **argv);	/* argv[0] is the name */
} commands[] = {
	{ "run", run_main },
	{ "check", check_main },
	{ "tail", tail_main },
	{ "apply", apply_main },
};

int
main(int argc, char **argv)
{
	const char *cmd;

	/* Every command holds passwords in memory (and maybe in its
	 * environment): no core dump, and no ptrace or /proc/PID/mem,
	 * environ or fd for other processes of the same user. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		fprintf(stderr, "pginval: warning: cannot turn off core dumps "
		    "(PR_SET_DUMPABLE): %s\n", strerror(errno));
	if (argc < 2) {
		shell_usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		shell_usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
		printf("pginval %s\n", PGINVAL_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(cmd, commands[i].name) == 0)
			return commands[i].main(argc - 1, argv + 1);
	fprintf(stderr, "pginval: unknown command \"%s\"\n", cmd);
	shell_usage(stderr);
	return 2;
}
