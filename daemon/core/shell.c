/*
 * The shell around `pginval run` and `pginval apply` (shell.h). The
 * command does the work; the shell reads the command line and the
 * configuration, runs one libev loop, turns signals into loop events,
 * bounds the drain with shutdown_timeout, serves /metrics and /healthz,
 * and tells systemd what the command says of itself. Nothing here waits
 * on anything: systemd's socket is written without blocking (sd_notify.h)
 * and what it refuses is sent again from a timer.
 */
#include "core/shell.h"
#include "core/config.h"
#include "lib/http.h"
#include "lib/log.h"
#include "lib/sd_notify.h"

#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SHELL_STATUS_EVERY 5.0	/* seconds between STATUS= lines */
#define SHELL_NOTIFY_RETRY 1.0	/* seconds between resends to systemd */
#define SHELL_DRAIN_POLL 0.02	/* seconds between checks while stopping */

struct shell {
	const struct shell_ops *ops;
	struct ev_loop *loop;
	void *cmd;			/* owned: ops->free() */
	struct http_server *http;	/* NULL: no [metrics] listen */
	const char *config_path;
	double shutdown_timeout;	/* of the running configuration */
	ev_signal sigterm, sigint, sighup;
	ev_timer status;	/* systemd STATUS= line */
	ev_timer watchdog;	/* systemd WATCHDOG=1 */
	ev_timer notify_retry;	/* resends what a full socket refused */
	ev_timer deadline;	/* shutdown_timeout after the first stop */
	ev_timer drained;	/* while stopping: is everything done? */
	bool announced;		/* READY=1 sent */
	int stopping;		/* stop signals received */
	int exit_code;
};

void
shell_usage(FILE *f)
{
	fprintf(f,
	    "usage: pginval run   [-c FILE] [-l LEVEL]  run the daemon in the foreground\n"
	    "       pginval check [-c FILE] [--connect] validate a configuration; with\n"
	    "                                           --connect, also the servers and SQL\n"
	    "       pginval tail  [-c FILE] [--url URL] [--channel NAME] [--json]\n"
	    "                                           print the channel for humans\n"
	    "       pginval apply [-c FILE] [-l LEVEL]  invalidate caches from the channel\n"
	    "\n");
	shell_usage_options(f);
}

void
shell_usage_options(FILE *f)
{
	fprintf(f,
	    "  -c, --config FILE     configuration file (default "
	    SHELL_DEFAULT_CONFIG ")\n"
	    "  -l, --log-level LVL   error, warn, info or debug (overrides the file)\n"
	    "  -h, --help            this help\n"
	    "  -V, --version         print the version\n"
	    "\n"
	    "Signals: SIGTERM/SIGINT drain and stop (twice: stop now), SIGHUP reloads.\n");
}

/* The options of run, check and apply; tail has its own (tail.c). The
 * first row is for the commands that take --connect only. */
static const struct option shell_longopts[] = {
	{ "connect", no_argument, NULL, 'K' },
	{ "config", required_argument, NULL, 'c' },
	{ "log-level", required_argument, NULL, 'l' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

int
shell_args(const char *cmd, void (*usage)(FILE *), bool connect_option,
    int argc, char **argv, struct shell_args *out)
{
	const struct option *longopts = connect_option ? shell_longopts :
	    shell_longopts + 1;
	int ch;

	out->config = SHELL_DEFAULT_CONFIG;
	out->log_level = NULL;
	out->connect = false;
	while ((ch = getopt_long(argc, argv, "c:l:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			out->config = optarg;
			break;
		case 'l':
			out->log_level = optarg;
			break;
		case 'K':
			out->connect = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("pginval %s\n", PGINVAL_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "pginval %s: unexpected argument \"%s\"\n", cmd,
		    argv[optind]);
		return 2;
	}
	return -1;
}

/* The configuration of args, with -l applied; NULL with *status set. */
static struct config *
shell_config(const struct shell_args *args, int *status)
{
	struct config *cfg;
	enum log_level lvl;

	if ((cfg = config_open(args->config)) == NULL) {
		*status = 1;
		return NULL;
	}
	if (args->log_level != NULL) {
		if (log_level_parse(args->log_level, &lvl) == -1) {
			fprintf(stderr, "pginval: unknown log level \"%s\"\n",
			    args->log_level);
			config_free(cfg);
			*status = 2;
			return NULL;
		}
		cfg->log_level = lvl;
	}
	return cfg;
}

/* -- systemd ------------------------------------------------------------ */

/* Sends without waiting; what the socket refuses now is sent again every
 * second until it goes through. */
static void
shell_notify_send(struct shell *sh, const char *msg)
{
	if (sd_notify_send(msg) == -1 && !ev_is_active(&sh->notify_retry))
		ev_timer_start(sh->loop, &sh->notify_retry);
}

static void
shell_notify_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	if (sd_notify_flush() == 0)
		ev_timer_stop(loop, w);
}

/* Sends what ("" or lines ending in '\n'), then the current status. */
static void
shell_notify(struct shell *sh, const char *what)
{
	struct buf b = { 0 };

	if (!sd_notify_enabled())
		return;
	buf_adds(&b, what);
	buf_adds(&b, "STATUS=");
	sh->ops->status(sh->cmd, &b);
	shell_notify_send(sh, b.data);
	buf_free(&b);
}

/* READY=1 the first time; any later change is a new status line. */
static void
shell_on_ready(void *arg, bool ready)
{
	struct shell *sh = arg;

	if (ready && !sh->announced) {
		sh->announced = true;
		shell_notify(sh, "READY=1\n");
	} else {
		shell_notify(sh, "");
	}
}

static void
shell_status_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	shell_notify(w->data, "");
}

/* The watchdog is fed from the loop itself: a stuck loop stops feeding. */
static void
shell_watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	shell_notify_send(w->data, "WATCHDOG=1");
}

/* RELOADING=1 with the time systemd needs to tell reloads apart. */
static void
shell_notify_reloading(struct shell *sh)
{
	char msg[64];
	struct timespec ts;

	if (!sd_notify_enabled())
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000);
	shell_notify_send(sh, msg);
}

/* -- metrics ------------------------------------------------------------ */

static void
shell_http_cb(void *arg, const char *path, struct http_response *res)
{
	struct shell *sh = arg;

	if (strcmp(path, "/metrics") == 0) {
		res->content_type = "text/plain; version=0.0.4; charset=utf-8";
		sh->ops->metrics(sh->cmd, &res->body);
	} else if (strcmp(path, "/healthz") == 0) {
		res->status = sh->ops->health(sh->cmd, &res->body) ? 200 : 503;
		buf_addc(&res->body, '\n');
	} else {
		res->status = 404;
		buf_adds(&res->body, "not found: try /metrics or /healthz\n");
	}
}

/* Listening comes before the command, so that a port in use stops the
 * start early. */
static void
shell_listen(struct shell *sh, const struct config *cfg)
{
	char err[256];

	if (cfg->metrics_listen == NULL)
		return;
	sh->http = http_server_new(sh->loop, shell_http_cb, sh);
	if (http_server_listen(sh->http, cfg->metrics_listen, err,
	    sizeof(err)) == -1)
		log_fatal("%s: [metrics] listen: %s", sh->config_path, err);
	log_info("metrics: serving /metrics and /healthz on %s",
	    cfg->metrics_listen);
}

/* -- signals ------------------------------------------------------------ */

static void
shell_drained_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct shell *sh = w->data;

	if (!sh->ops->busy(sh->cmd)) {
		log_info("shutdown: everything acknowledged");
		ev_break(loop, EVBREAK_ALL);
	}
}

static void
shell_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct shell *sh = w->data;
	struct buf b = { 0 };

	sh->ops->status(sh->cmd, &b);
	log_warnx("shutdown: work still in flight after shutdown_timeout "
	    "(%.1fs; %s); the reset of the next start covers it",
	    sh->shutdown_timeout, b.len > 0 ? b.data : "");
	buf_free(&b);
	ev_break(loop, EVBREAK_ALL);
}

static void
shell_stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct shell *sh = w->data;

	if (sh->stopping++) {
		/* Leave the loop without waiting; what is still in flight is
		 * lost, and the next start resets. */
		log_warnx("second %s: exiting now", strsignal(w->signum));
		sh->exit_code = 1;
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	log_info("%s: shutting down", strsignal(w->signum));
	shell_notify(sh, "STOPPING=1\n");
	sh->ops->stop(sh->cmd);
	ev_timer_set(&sh->deadline, sh->shutdown_timeout, 0);
	ev_timer_start(loop, &sh->deadline);
	ev_timer_start(loop, &sh->drained);
	shell_drained_cb(loop, &sh->drained, 0);
}

/* A file that does not load keeps the running configuration (and
 * config_reload() says why). */
static void
shell_hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct shell *sh = w->data;
	struct config *cfg;

	log_info("SIGHUP: reloading %s", sh->config_path);
	shell_notify_reloading(sh);
	if ((cfg = config_reload(sh->config_path)) != NULL) {
		log_set_level(cfg->log_level);
		sh->shutdown_timeout = cfg->shutdown_timeout;
		sh->ops->reload(sh->cmd, cfg);
	}
	shell_notify(sh, "READY=1\n");
}

/* -- the loop ----------------------------------------------------------- */

static void
shell_watch(struct shell *sh)
{
	double wd = sd_notify_watchdog_interval();

	ev_timer_init(&sh->status, shell_status_cb, SHELL_STATUS_EVERY,
	    SHELL_STATUS_EVERY);
	ev_timer_init(&sh->notify_retry, shell_notify_retry_cb,
	    SHELL_NOTIFY_RETRY, SHELL_NOTIFY_RETRY);
	ev_timer_init(&sh->watchdog, shell_watchdog_cb, wd, wd);
	ev_timer_init(&sh->deadline, shell_deadline_cb, 0, 0);
	ev_timer_init(&sh->drained, shell_drained_cb, SHELL_DRAIN_POLL,
	    SHELL_DRAIN_POLL);
	sh->status.data = sh->notify_retry.data = sh->watchdog.data = sh;
	sh->deadline.data = sh->drained.data = sh;
	if (sd_notify_enabled())
		ev_timer_start(sh->loop, &sh->status);
	if (wd > 0)
		ev_timer_start(sh->loop, &sh->watchdog);
	ev_signal_init(&sh->sigterm, shell_stop_cb, SIGTERM);
	ev_signal_init(&sh->sigint, shell_stop_cb, SIGINT);
	ev_signal_init(&sh->sighup, shell_hup_cb, SIGHUP);
	sh->sigterm.data = sh->sigint.data = sh->sighup.data = sh;
	ev_signal_start(sh->loop, &sh->sigterm);
	ev_signal_start(sh->loop, &sh->sigint);
	ev_signal_start(sh->loop, &sh->sighup);
}

static void
shell_close(struct shell *sh)
{
	sh->ops->free(sh->cmd);
	sh->cmd = NULL;
	http_server_free(sh->http);
	sh->http = NULL;
	ev_timer_stop(sh->loop, &sh->status);
	ev_timer_stop(sh->loop, &sh->watchdog);
	ev_timer_stop(sh->loop, &sh->notify_retry);
	ev_timer_stop(sh->loop, &sh->deadline);
	ev_timer_stop(sh->loop, &sh->drained);
	(void)sd_notify_flush();	/* a last try for STOPPING=1 */
	sd_notify_close();
	ev_signal_stop(sh->loop, &sh->sigterm);
	ev_signal_stop(sh->loop, &sh->sigint);
	ev_signal_stop(sh->loop, &sh->sighup);
	ev_loop_destroy(sh->loop);
	log_info("stopped");
}

int
shell_main(const struct shell_ops *ops, int argc, char **argv)
{
	struct shell sh = { .ops = ops };
	struct shell_args args;
	struct config *cfg;
	int status;

	if ((status = shell_args(ops->name, ops->usage, ops->connect_option,
	    argc, argv, &args)) != -1)
		return status;
	if ((cfg = shell_config(&args, &status)) == NULL)
		return status;
	log_init(cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)getpid() ^ (unsigned)time(NULL));
	sh.loop = EV_DEFAULT;
	sh.config_path = args.config;
	sh.shutdown_timeout = cfg->shutdown_timeout;
	sd_notify_init();
	shell_listen(&sh, cfg);
	sh.cmd = ops->new(sh.loop, cfg, shell_on_ready, &sh);
	shell_watch(&sh);
	ops->start(sh.cmd);
	ev_run(sh.loop, 0);
	shell_close(&sh);
	return sh.exit_code;
}
