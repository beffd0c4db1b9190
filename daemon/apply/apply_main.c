/*
 * `pginval apply` is the policy in apply.c driven by the shell (shell.h):
 * this file is the table of operations between the two, and the
 * command's usage.
 */
#include "apply/apply.h"
#include "lib/buf.h"
#include "core/shell.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>

/* The command's object: apply, and where its readiness goes. */
struct apply_cmd {
	struct apply *apply;
	shell_ready_cb *ready;
	void *arg;
};

static void
apply_cmd_usage(FILE *f)
{
	fprintf(f,
	    "usage: pginval apply [-c FILE] [-l LEVEL]\n"
	    "\n"
	    "Subscribes to the channel and invalidates (or refreshes) the keys of\n"
	    "each message in every [target] Redis (default: the channel's Redis).\n"
	    "\n");
	shell_usage_options(f);
}

static void
apply_cmd_event(void *arg, enum apply_event ev)
{
	struct apply_cmd *c = arg;

	c->ready(c->arg, ev == APPLY_EVENT_READY);
}

static void *
apply_cmd_new(struct ev_loop *loop, struct config *cfg, shell_ready_cb *ready,
    void *arg)
{
	struct apply_cmd *c = xcalloc(1, sizeof(*c));

	c->ready = ready;
	c->arg = arg;
	c->apply = apply_new(loop, cfg, apply_cmd_event, c);
	return c;
}

static void
apply_cmd_start(void *cmd)
{
	apply_start(((struct apply_cmd *)cmd)->apply);
}

static void
apply_cmd_reload(void *cmd, struct config *cfg)
{
	apply_reload(((struct apply_cmd *)cmd)->apply, cfg);
}

static void
apply_cmd_stop(void *cmd)
{
	apply_stop(((struct apply_cmd *)cmd)->apply);
}

static bool
apply_cmd_busy(void *cmd)
{
	return apply_busy(((struct apply_cmd *)cmd)->apply);
}

static bool
apply_cmd_health(void *cmd, struct buf *why)
{
	return apply_health(((struct apply_cmd *)cmd)->apply, why);
}

static void
apply_cmd_status(void *cmd, struct buf *out)
{
	apply_status(((struct apply_cmd *)cmd)->apply, out);
}

static void
apply_cmd_metrics(void *cmd, struct buf *out)
{
	apply_metrics(((struct apply_cmd *)cmd)->apply, out);
}

static void
apply_cmd_free(void *cmd)
{
	struct apply_cmd *c = cmd;

	apply_free(c->apply);
	free(c);
}

static const struct shell_ops apply_ops = {
	.name = "apply",
	.usage = apply_cmd_usage,
	.connect_option = false,
	.new = apply_cmd_new,
	.start = apply_cmd_start,
	.reload = apply_cmd_reload,
	.stop = apply_cmd_stop,
	.busy = apply_cmd_busy,
	.health = apply_cmd_health,
	.status = apply_cmd_status,
	.metrics = apply_cmd_metrics,
	.free = apply_cmd_free,
};

int
apply_main(int argc, char **argv)
{
	return shell_main(&apply_ops, argc, argv);
}
