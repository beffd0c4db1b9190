/*
 * `pginval run` is the relay (relay.h), run by the channel's group (ha.h:
 * only the active daemon runs it), driven by the shell (shell.h): this
 * file is the table of operations between them. `pginval check`
 * takes the same options and loads the configuration the same way, then
 * stops there (or goes on to check.h's checks with --connect).
 */
#include "run/run_main.h"
#include "run/check.h"
#include "core/config.h"
#include "lib/http.h"
#include "run/ha.h"
#include "core/shell.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>

/* The command's object: the group's member, and where its readiness
 * goes. */
struct run {
	struct ha *ha;
	shell_ready_cb *ready;
	void *arg;
};

static void
run_ha_cb(void *arg, bool ready)
{
	struct run *r = arg;

	r->ready(r->arg, ready);
}

static void *
run_new(struct ev_loop *loop, struct config *cfg, shell_ready_cb *ready,
    void *arg)
{
	struct run *r = xcalloc(1, sizeof(*r));

	r->ready = ready;
	r->arg = arg;
	r->ha = ha_new(loop, cfg, run_ha_cb, r);
	return r;
}

static void
run_start(void *cmd)
{
	ha_start(((struct run *)cmd)->ha);
}

static void
run_reload(void *cmd, struct config *cfg)
{
	ha_reload(((struct run *)cmd)->ha, cfg);
}

static void
run_stop(void *cmd)
{
	ha_stop(((struct run *)cmd)->ha);
}

static bool
run_busy(void *cmd)
{
	return ha_busy(((struct run *)cmd)->ha);
}

static bool
run_health(void *cmd, struct buf *why)
{
	return ha_health(((struct run *)cmd)->ha, why);
}

static void
run_status(void *cmd, struct buf *out)
{
	ha_status(((struct run *)cmd)->ha, out);
}

static void
run_metrics(void *cmd, struct buf *out)
{
	ha_metrics(((struct run *)cmd)->ha, out);
}

static void
run_free(void *cmd)
{
	struct run *r = cmd;

	ha_free(r->ha);
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
