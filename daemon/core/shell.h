/*
 * The shell of the two long-running commands, `pginval run` and `pginval
 * apply`: their options, the configuration and its reloads, the signals
 * (the first SIGTERM or SIGINT drains within shutdown_timeout, a second
 * exits at once, SIGHUP reloads, SIGPIPE is ignored), the metrics
 * listener and the systemd notification protocol (READY=1, STATUS=,
 * WATCHDOG=1, RELOADING=1, STOPPING=1). A command is a table of
 * operations on an object of its own, which the shell creates, drives on
 * one libev loop and frees.
 */
#ifndef PGINVAL_SHELL_H
#define PGINVAL_SHELL_H

#include <stdbool.h>
#include <stdio.h>

#include "lib/buf.h"

struct config;
struct ev_loop;

#define SHELL_DEFAULT_CONFIG "/etc/pginval/pginval.conf"

/* What a command says of itself: it can do its work (ready), or it lost
 * something it needs and is getting it back. */
typedef void shell_ready_cb(void *arg, bool ready);

/*
 * The operations of a command. Every one is required. cmd is what new()
 * returned; the shell owns it until it calls free(). A configuration
 * handed to new() or reload() belongs to the command from then on.
 */
struct shell_ops {
	/* The command line (shell_args()). */
	const char *name;		/* "run" */
	void (*usage)(FILE *f);		/* --help, and after a usage error */
	bool connect_option;		/* accepts (and ignores) --connect */

	/* Sets up on loop; starts nothing. ready may be called from start()
	 * on, whenever readiness changes. */
	void *(*new)(struct ev_loop *loop, struct config *cfg,
	    shell_ready_cb *ready, void *arg);
	void (*start)(void *cmd);
	/* The shell has set the new log level already. */
	void (*reload)(void *cmd, struct config *cfg);
	/* A first stop signal: take no new work, and say what is left. */
	void (*stop)(void *cmd);
	/* Whether work is still in flight; polled after stop(). */
	bool (*busy)(void *cmd);
	/* /healthz: true when ready; why says each part's state either way. */
	bool (*health)(void *cmd, struct buf *why);
	/* The systemd STATUS= line: states, rates since the previous call,
	 * and counts. */
	void (*status)(void *cmd, struct buf *out);
	/* /metrics, in the Prometheus text format. */
	void (*metrics)(void *cmd, struct buf *out);
	/* Closes everything and logs the totals. */
	void (*free)(void *cmd);
};

/* argv[0] is the command's name. Returns the exit status: 0 after a clean
 * stop, 1 after a second stop signal or a start-up error, 2 after a usage
 * error. */
int shell_main(const struct shell_ops *ops, int argc, char **argv);

/* The options of the commands that read a configuration file. */
struct shell_args {
	const char *config;	/* -c; SHELL_DEFAULT_CONFIG */
	const char *log_level;	/* -l; NULL: the file's */
	bool connect;		/* --connect */
};

/*
 * Parses argv (argv[0] is the command's name) into *out. Returns -1 when
 * the command is to go on, else its exit status: 0 after --help or
 * --version, 2 after a usage error, which it reports on stderr.
 */
int shell_args(const char *cmd, void (*usage)(FILE *), bool connect_option,
    int argc, char **argv, struct shell_args *out);
/* The usage of run, check and apply. */
void shell_usage(FILE *f);
/* The options and signals part of it, for a command's own usage. */
void shell_usage_options(FILE *f);

#endif
