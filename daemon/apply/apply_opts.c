/*
 * From pginval apply's configuration to its modules' options (see
 * apply_opts.h). Kept apart from apply.c, which holds the policy.
 */
#include "apply/apply_opts.h"

#include <string.h>

struct redis_conn_opts
apply_opts_channel(const struct config *cfg)
{
	struct redis_conn_opts co = {
		.addr = &cfg->redis, .client_name = "pginval-apply",
		.connect_timeout = cfg->redis_connect_timeout,
		.command_timeout = cfg->redis_command_timeout,
		.health_interval = cfg->health_interval,
		.keepalive = cfg->health_interval > 0 ? cfg->health_interval : 30,
		.reconnect_min = cfg->reconnect_min,
		.reconnect_max = cfg->reconnect_max,
	};

	return co;
}

/* A [target] names a server of its own; the rest is the channel's. */
struct apply_target_opts
apply_opts_target(const struct config *cfg, size_t i,
    struct apply_stats *stats)
{
	struct apply_target_opts o = {
		.name = "default",
		.conn = apply_opts_channel(cfg),
		.max_inflight = cfg->max_inflight,
		.max_queue = cfg->apply_max_queue,
		.marker_ttl = cfg->apply_marker_ttl,
		.marker_margin = cfg->apply_marker_margin,
		.markers = cfg->apply_markers,
		.stats = stats,
	};

	if (i < cfg->ntargets) {
		const struct apply_target_cfg *t = &cfg->targets[i];

		o.name = t->name;
		o.conn.addr = &t->addr;
	}
	return o;
}

bool
apply_opts_refresh_wanted(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->ntables; i++)
		if (cfg->tables[i].refresh != NULL)
			return true;
	return false;
}

struct pg_conn_opts
apply_opts_refresh(const struct config *cfg)
{
	struct pg_conn_opts po = {
		.name = "refresh",
		.conninfo = cfg->apply_conninfo ? cfg->apply_conninfo :
		    cfg->pg_conninfo,
		.password = cfg->apply_conninfo ? NULL : cfg->pg_password,
		.connect_timeout = cfg->pg_connect_timeout,
		.query_timeout = cfg->apply_refresh_timeout,
		.reconnect_min = cfg->reconnect_min,
		.reconnect_max = cfg->reconnect_max,
	};

	return po;
}

bool
apply_opts_same_targets(const struct config *x, const struct config *y)
{
	if (x->ntargets != y->ntargets)
		return false;
	for (size_t i = 0; i < x->ntargets; i++)
		if (strcmp(x->targets[i].name, y->targets[i].name) != 0 ||
		    strcmp(x->targets[i].url, y->targets[i].url) != 0)
			return false;
	return true;
}
