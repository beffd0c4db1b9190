/*
 * pginval: command line, event loop and signals. Subcommands:
 *
 *   run   -c FILE   the daemon, in the foreground, logging to stderr
 *   check -c FILE   validate a configuration and exit
 *   tail            print the channel for humans
 *   apply -c FILE   the subscriber that invalidates caches (apply.c)
 *
 * The modules do the work; this file wires them to one libev loop and
 * turns signals into loop events: the first SIGTERM/SIGINT drains within
 * shutdown_timeout, a second exits at once, SIGHUP reloads.
 */
#include "apply.h"
#include "check.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "relay.h"
#include "sd_notify.h"
#include "tail.h"

#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/pginval/pginval.conf"

struct daemon {
	struct ev_loop *loop;
	struct relay *relay;
	struct http_server *http;
	const char *config_path;
	ev_signal sigterm, sigint, sighup;
	ev_timer status;	/* systemd STATUS= line */
	ev_timer watchdog;	/* systemd WATCHDOG=1 */
	ev_timer notify_retry;	/* resends what a full socket refused */
	bool announced;		/* READY=1 sent */
	int stopping;
	int exit_code;
};

static void
usage(FILE *f, const char *cmd)
{
	if (cmd == NULL || strcmp(cmd, "run") == 0 || strcmp(cmd, "check") == 0)
		fprintf(f,
		    "usage: pginval run   [-c FILE] [-l LEVEL]  run the daemon in the foreground\n"
		    "       pginval check [-c FILE] [--connect] validate a configuration; with\n"
		    "                                           --connect, also the servers and SQL\n"
		    "       pginval tail  [-c FILE] [--url URL] [--channel NAME] [--json]\n"
		    "                                           print the channel for humans\n"
		    "       pginval apply [-c FILE] [-l LEVEL]  invalidate caches from the channel\n"
		    "\n"
		    "  -c, --config FILE     configuration file (default " DEFAULT_CONFIG ")\n"
		    "  -l, --log-level LVL   error, warn, info or debug (overrides the file)\n"
		    "  -h, --help            this help\n"
		    "  -V, --version         print the version\n"
		    "\n"
		    "Signals: SIGTERM/SIGINT drain and stop (twice: stop now), SIGHUP reloads.\n");
	else
		tail_usage(f);
}

/* Sends to systemd without waiting; what the socket refuses now is sent
 * again every second until it goes through. */
static void
notify_send(struct daemon *d, const char *msg)
{
	if (sd_notify_send(msg) == -1 && !ev_is_active(&d->notify_retry))
		ev_timer_start(d->loop, &d->notify_retry);
}

static void
on_notify_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	if (sd_notify_flush() == 0)
		ev_timer_stop(loop, w);
}

/* Sends a systemd notification followed by the current status line. */
static void
notify(struct daemon *d, const char *what)
{
	struct buf b = { 0 };

	if (!sd_notify_enabled())
		return;
	buf_adds(&b, what);
	buf_adds(&b, "STATUS=");
	relay_status(d->relay, &b);
	notify_send(d, b.data);
	buf_free(&b);
}

static void
on_relay(void *arg, enum relay_event ev)
{
	struct daemon *d = arg;

	if (ev == RELAY_EVENT_READY && !d->announced) {
		d->announced = true;
		notify(d, "READY=1\n");
	} else {
		notify(d, "");
	}
}

static void
on_status_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	notify(w->data, "");
}

/* The watchdog is fed from the loop itself: a stuck loop stops feeding. */
static void
on_watchdog_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	notify_send(w->data, "WATCHDOG=1");
}

static void
on_http(void *arg, const char *path, struct http_response *res)
{
	struct daemon *d = arg;

	if (strcmp(path, "/metrics") == 0) {
		res->content_type = "text/plain; version=0.0.4; charset=utf-8";
		relay_metrics(d->relay, &res->body);
	} else if (strcmp(path, "/healthz") == 0) {
		bool up = relay_health(d->relay, &res->body);

		res->status = up ? 200 : 503;
		buf_addc(&res->body, '\n');
	} else {
		res->status = 404;
		buf_adds(&res->body, "not found: try /metrics or /healthz\n");
	}
}

static void
on_drained(void *arg)
{
	struct daemon *d = arg;

	ev_break(d->loop, EVBREAK_ALL);
}

static void
on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;

	if (d->stopping++) {
		/* Leave the loop without waiting for Redis; what is still
		 * queued is lost, and the next start sends a reset. */
		log_warnx("second %s: exiting now", strsignal(w->signum));
		d->exit_code = 1;
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	log_info("%s: shutting down", strsignal(w->signum));
	notify(d, "STOPPING=1\n");
	relay_drain(d->relay, on_drained, d);
}

static void
on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;
	struct config *cfg;

	log_info("SIGHUP: reloading %s", d->config_path);
	if (sd_notify_enabled()) {
		char msg[64];
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
		    (unsigned long long)ts.tv_sec * 1000000ULL +
		    (unsigned long long)ts.tv_nsec / 1000);
		notify_send(d, msg);
	}
	if ((cfg = config_reload(d->config_path)) != NULL)
		relay_reload(d->relay, cfg);
	notify(d, "READY=1\n");
}

static int
cmd_run(const char *path, const char *level)
{
	struct daemon d = { 0 };
	struct config *cfg;
	enum log_level lvl;

	if ((cfg = config_open(path)) == NULL)
		return 1;
	if (level != NULL) {
		if (log_level_parse(level, &lvl) == -1) {
			fprintf(stderr, "pginval: unknown log level \"%s\"\n", level);
			config_free(cfg);
			return 2;
		}
		cfg->log_level = (int)lvl;
	}
	log_init((enum log_level)cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)getpid() ^ (unsigned)time(NULL));

	d.loop = EV_DEFAULT;
	d.config_path = path;
	sd_notify_init();
	if (cfg->metrics_listen != NULL) {
		char err[256];

		d.http = http_server_new(d.loop, on_http, &d);
		if (http_server_listen(d.http, cfg->metrics_listen, err,
		    sizeof(err)) == -1)
			log_fatal("%s: [metrics] listen: %s", path, err);
		log_info("metrics: serving /metrics and /healthz on %s",
		    cfg->metrics_listen);
	}
	d.relay = relay_new(d.loop, cfg, on_relay, &d);
	ev_timer_init(&d.status, on_status_timer, 5, 5);
	d.status.data = &d;
	if (sd_notify_enabled())
		ev_timer_start(d.loop, &d.status);
	ev_timer_init(&d.notify_retry, on_notify_retry, 1, 1);
	d.notify_retry.data = &d;
	ev_timer_init(&d.watchdog, on_watchdog_timer,
	    sd_notify_watchdog_interval(), sd_notify_watchdog_interval());
	d.watchdog.data = &d;
	if (sd_notify_watchdog_interval() > 0)
		ev_timer_start(d.loop, &d.watchdog);
	ev_signal_init(&d.sigterm, on_stop_signal, SIGTERM);
	ev_signal_init(&d.sigint, on_stop_signal, SIGINT);
	ev_signal_init(&d.sighup, on_hup, SIGHUP);
	d.sigterm.data = d.sigint.data = d.sighup.data = &d;
	ev_signal_start(d.loop, &d.sigterm);
	ev_signal_start(d.loop, &d.sigint);
	ev_signal_start(d.loop, &d.sighup);

	relay_start(d.relay);
	ev_run(d.loop, 0);

	relay_free(d.relay);
	http_server_free(d.http);
	ev_timer_stop(d.loop, &d.status);
	ev_timer_stop(d.loop, &d.watchdog);
	ev_timer_stop(d.loop, &d.notify_retry);
	(void)sd_notify_flush();	/* a last try for STOPPING=1 */
	sd_notify_close();
	ev_signal_stop(d.loop, &d.sigterm);
	ev_signal_stop(d.loop, &d.sigint);
	ev_signal_stop(d.loop, &d.sighup);
	ev_loop_destroy(d.loop);
	log_info("stopped");
	return d.exit_code;
}

static int
cmd_check(const char *path, bool connect)
{
	struct config *cfg;
	int problems;

	if ((cfg = config_open(path)) == NULL)
		return 1;
	if (cfg->metrics_listen != NULL) {
		char host[256], port[16];

		if (http_split_addr(cfg->metrics_listen, host, sizeof(host), port,
		    sizeof(port)) == -1) {
			fprintf(stderr, "%s: [metrics] listen: \"%s\" is not "
			    "host:port\n", path, cfg->metrics_listen);
			config_free(cfg);
			return 1;
		}
	}
	printf("%s: OK (redis %s, channel \"%s\"%s%s%s; %zu table rules)\n",
	    path, cfg->redis_where, cfg->redis_channel,
	    cfg->redis_stream ? ", stream \"" : "",
	    cfg->redis_stream ? cfg->redis_stream : "",
	    cfg->redis_stream ? "\"" : "", cfg->ntables);
	if (!connect) {
		config_free(cfg);
		return 0;
	}
	problems = check_connect(cfg, stdout);
	printf("%d problem%s found\n", problems, problems == 1 ? "" : "s");
	config_free(cfg);
	return problems > 0 ? 1 : 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "connect", no_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd, *path = DEFAULT_CONFIG, *level = NULL;
	bool connect = false;
	int ch;

	/* Every command holds passwords in memory (and maybe in its
	 * environment): no core dump, and no ptrace or /proc/PID/mem,
	 * environ or fd for other processes of the same user. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		fprintf(stderr, "pginval: warning: cannot turn off core dumps "
		    "(PR_SET_DUMPABLE): %s\n", strerror(errno));
	if (argc < 2) {
		usage(stderr, NULL);
		return 2;
	}
	cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout, NULL);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
		printf("pginval %s\n", PGINVAL_VERSION);
		return 0;
	}
	if (strcmp(cmd, "tail") == 0)
		return tail_main(argc - 1, argv + 1);
	if (strcmp(cmd, "apply") == 0)
		return apply_main(argc - 1, argv + 1);
	if (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0) {
		fprintf(stderr, "pginval: unknown command \"%s\"\n", cmd);
		usage(stderr, NULL);
		return 2;
	}
	while ((ch = getopt_long(argc - 1, argv + 1, "c:l:hV", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'l':
			level = optarg;
			break;
		case 'K':
			connect = true;
			break;
		case 'h':
			usage(stdout, cmd);
			return 0;
		case 'V':
			printf("pginval %s\n", PGINVAL_VERSION);
			return 0;
		default:
			usage(stderr, cmd);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "pginval %s: unexpected argument \"%s\"\n", cmd,
		    argv[optind + 1]);
		return 2;
	}
	return strcmp(cmd, "run") == 0 ? cmd_run(path, level) :
	    cmd_check(path, connect);
}
