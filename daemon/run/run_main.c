/*
 * `pginval run` is the relay (relay.h) driven by the shell (shell.h):
 * this file is the table of operations between the two. `pginval check`
 * takes the same options and loads the configuration the same way, then
 * stops there (or goes on to check.h's checks with --connect).
 */
#include "run/run_main.h"
#include "run/check.h"
#include "core/config.h"
#include "lib/http.h"
#include "run/relay.h"
#include "core/shell.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>

/* The command's object: the relay, and where its readiness goes. */
struct run {
	struct relay *relay;
	shell_ready_cb *ready;
	void *arg;
};

static void
run_relay_cb(void *arg, enum relay_event ev)
{
	struct run *r = arg;

	r->ready(r->arg, ev == RELAY_EVENT_READY);
}

static void *
run_new(struct ev_loop *loop, struct config *cfg, shell_ready_cb *ready,
    void *arg)
{
	struct run *r = xcalloc(1, sizeof(*r));

	r->ready = ready;
	r->arg = arg;
	r->relay = relay_new(loop, cfg, run_relay_cb, r);
	return r;
}

static void
run_start(void *cmd)
{
	relay_start(((struct run *)cmd)->relay);
}

static void
run_reload(void *cmd, struct config *cfg)
{
	relay_reload(((struct run *)cmd)->relay, cfg);
}

static void
run_stop(void *cmd)
{
	relay_stop(((struct run *)cmd)->relay);
}

static bool
run_busy(void *cmd)
{
	return relay_busy(((struct run *)cmd)->relay);
}

static bool
run_health(void *cmd, struct buf *why)
{
	return relay_health(((struct run *)cmd)->relay, why);
}

static void
run_status(void *cmd, struct buf *out)
{
	relay_status(((struct run *)cmd)->relay, out);
}

static void
run_metrics(void *cmd, struct buf *out)
{
	relay_metrics(((struct run *)cmd)->relay, out);
}

static void
run_free(void *cmd)
{
	struct run *r = cmd;

	relay_free(r->relay);
	free(r);
}

static const struct shell_ops run_ops = {
	.name = "run",
	.usage = shell_usage,
	.connect_option = true,		/* shared with check, and ignored */
	.new = run_new,
	.start = run_start,
	.reload = run_reload,
	.stop = run_stop,
	.busy = run_busy,
	.health = run_health,
	.status = run_status,
	.metrics = run_metrics,
	.free = run_free,
};

int
run_main(int argc, char **argv)
{
	return shell_main(&run_ops, argc, argv);
}

int
check_main(int argc, char **argv)
{
	struct shell_args args;
	struct config *cfg;
	const char *path;
	int status, problems;

	if ((status = shell_args("check", shell_usage, true, argc, argv,
	    &args)) != -1)
		return status;
	path = args.config;
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
	    path, cfg->redis.where, cfg->redis_channel,
	    cfg->redis_stream ? ", stream \"" : "",
	    cfg->redis_stream ? cfg->redis_stream : "",
	    cfg->redis_stream ? "\"" : "", cfg->ntables);
	if (!args.connect) {
		config_free(cfg);
		return 0;
	}
	problems = check_connect(cfg, stdout);
	printf("%d problem%s found\n", problems, problems == 1 ? "" : "s");
	config_free(cfg);
	return problems > 0 ? 1 : 0;
}
