/*
 * The `pginval apply` command: arguments, the loop, signals (SIGTERM and
 * SIGINT drain, a second one exits at once, SIGHUP reloads) and the
 * metrics listener, around the policy in apply.c.
 */
#include "apply.h"
#include "buf.h"
#include "config.h"
#include "http.h"
#include "log.h"

#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct apply_cmd {
	struct ev_loop *loop;
	const char *path;
	struct apply *apply;
	struct http_server *http;
	ev_signal sigterm, sigint, sighup;
	ev_timer deadline, drained;
	int stopping;
	int exit_code;
};

static void
apply_drained_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct apply_cmd *c = w->data;

	if (!apply_busy(c->apply)) {
		log_info("shutdown: everything acknowledged");
		ev_break(loop, EVBREAK_ALL);
	}
}

static void
apply_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	log_warnx("shutdown: commands still unacknowledged after "
	    "shutdown_timeout; the next start resets anyway");
	ev_break(loop, EVBREAK_ALL);
}

static void
apply_stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct apply_cmd *c = w->data;

	if (c->stopping++) {
		log_warnx("second %s: exiting now", strsignal(w->signum));
		c->exit_code = 1;
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	log_info("%s: unsubscribing, then delivering what is in flight",
	    strsignal(w->signum));
	apply_unsubscribe(c->apply);
	ev_timer_set(&c->deadline, apply_config(c->apply)->shutdown_timeout, 0);
	ev_timer_start(loop, &c->deadline);
	ev_timer_start(loop, &c->drained);
}

static void
apply_hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct apply_cmd *c = w->data;
	struct config *cfg;

	log_info("SIGHUP: reloading %s", c->path);
	if ((cfg = config_reload(c->path)) == NULL)
		return;
	log_set_level((enum log_level)cfg->log_level);
	apply_reload(c->apply, cfg);
}

/* Listening comes first, so that a port in use stops the start early. */
static void
apply_cmd_http(void *arg, const char *path, struct http_response *res)
{
	struct apply_cmd *c = arg;

	apply_http(c->apply, path, res);
}

void
apply_usage(FILE *f)
{
	fprintf(f,
	    "usage: pginval apply [-c FILE] [-l LEVEL]\n"
	    "\n"
	    "Subscribes to the channel and invalidates (or refreshes) the keys of\n"
	    "each message in every [target] Redis (default: the channel's Redis).\n"
	    "\n"
	    "  -c, --config FILE     configuration file (default "
	    "/etc/pginval/pginval.conf)\n"
	    "  -l, --log-level LVL   error, warn, info or debug (overrides the file)\n"
	    "  -h, --help            this help\n"
	    "  -V, --version         print the version\n"
	    "\n"
	    "Signals: SIGTERM/SIGINT drain and stop (twice: stop now), SIGHUP "
	    "reloads.\n");
}

/* Takes cfg. */
static int
apply_run(struct apply_cmd *c, struct config *cfg)
{
	log_init((enum log_level)cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)getpid() ^ (unsigned)time(NULL));
	c->loop = EV_DEFAULT;
	ev_signal_init(&c->sigterm, apply_stop_cb, SIGTERM);
	ev_signal_init(&c->sigint, apply_stop_cb, SIGINT);
	ev_signal_init(&c->sighup, apply_hup_cb, SIGHUP);
	c->sigterm.data = c->sigint.data = c->sighup.data = c;
	ev_signal_start(c->loop, &c->sigterm);
	ev_signal_start(c->loop, &c->sigint);
	ev_signal_start(c->loop, &c->sighup);
	ev_timer_init(&c->deadline, apply_deadline_cb, 0, 0);
	ev_timer_init(&c->drained, apply_drained_cb, 0.02, 0.02);
	c->deadline.data = c->drained.data = c;
	if (cfg->metrics_listen != NULL) {
		char err[256];

		c->http = http_server_new(c->loop, apply_cmd_http, c);
		if (http_server_listen(c->http, cfg->metrics_listen, err,
		    sizeof(err)) == -1)
			log_fatal("%s: [metrics] listen: %s", c->path, err);
		log_info("metrics: serving /metrics and /healthz on %s",
		    cfg->metrics_listen);
	}
	c->apply = apply_new(c->loop, cfg);

	ev_run(c->loop, 0);

	apply_free(c->apply);
	http_server_free(c->http);
	ev_timer_stop(c->loop, &c->deadline);
	ev_timer_stop(c->loop, &c->drained);
	ev_signal_stop(c->loop, &c->sigterm);
	ev_signal_stop(c->loop, &c->sigint);
	ev_signal_stop(c->loop, &c->sighup);
	ev_loop_destroy(c->loop);
	return c->exit_code;
}

int
apply_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = "/etc/pginval/pginval.conf", *level = NULL;
	struct apply_cmd c = { 0 };
	struct config *cfg;
	enum log_level lvl;
	int ch;

	while ((ch = getopt_long(argc, argv, "c:l:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'l': level = optarg; break;
		case 'h': apply_usage(stdout); return 0;
		case 'V': printf("pginval %s\n", PGINVAL_VERSION); return 0;
		default: apply_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "pginval apply: unexpected argument \"%s\"\n",
		    argv[optind]);
		return 2;
	}
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
	c.path = path;
	return apply_run(&c, cfg);
}
