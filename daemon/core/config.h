/*
 * The configuration file (INI, parsed with inih). A loaded configuration
 * is immutable: a reload builds a new one and swaps it in only if it is
 * valid. Pure apart from reading the file.
 */
#ifndef PGINVAL_CONFIG_H
#define PGINVAL_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "lib/log.h"
#include "lib/redis_addr.h"
#include "core/rules.h"

enum redis_action {
	REDIS_ACTION_PUBLISH,	/* PUBLISH only */
	REDIS_ACTION_DELETE,	/* PUBLISH, and UNLINK the keys in that Redis */
};

/* pginval apply: what a reset of every table does to a target. */
enum apply_reset {
	APPLY_RESET_PATTERNS,	/* SCAN + UNLINK every table's key patterns */
	APPLY_RESET_FLUSH,	/* FLUSHDB ASYNC: only for a dedicated database */
};

struct table_rule {
	char *name;		/* "schema.table" */
	struct rule_set *rules;	/* NULL until its keys line is read */
	int line;		/* of the section header */
	/* pginval apply: refresh the first template's keys with this query
	 * ($1.. are the key's template columns, in order) instead of
	 * deleting them; NULL: delete. */
	char *refresh;
	double ttl;		/* seconds a refreshed key lives */
	/* Templates may begin with a {column}, whose sweeps then reach
	 * beyond the table's own keys (see rules_prefixed()). */
	bool allow_wide_sweep;
	int keys_line, refresh_line, ttl_line;	/* 0: not set */
	int wide_line;
};

/* pginval apply: a Redis to invalidate, from a [target NAME] section. */
struct apply_target_cfg {
	char *name;
	char *url;		/* may hold a password: never log it */
	/* NULL when not given */
	char *cluster, *sentinels, *master, *sentinel_password;
	struct redis_addr addr;	/* parsed from url and the four above */
	int line;		/* of the section header */
	int url_line;
};

struct config {
	char *path;
	int refs;		/* config_ref() calls not yet freed */

	/* [postgres] */
	char *pg_conninfo;		/* may hold a password: never log it */
	char *pg_password_file;
	char *pg_password;		/* read from pg_password_file */
	char *pg_channel;
	char *pg_slot;			/* the wal mode's replication slot */
	double pg_connect_timeout;
	double pg_notify_queue_warn;	/* NOTIFY queue use that degrades health */

	/* [redis] */
	char *redis_url;		/* may hold a password: never log it */
	char *redis_password_opt;	/* [redis] password */
	char *redis_password_file;
	char *redis_channel;
	char *redis_stream;		/* NULL: no replayable copy */
	int redis_stream_maxlen;
	enum redis_action redis_action;
	char *redis_cluster;		/* off, on or broadcast */
	char *redis_sentinels;
	char *redis_master;
	char *redis_sentinel_password;	/* never log it */
	double redis_connect_timeout;
	double redis_command_timeout;
	bool redis_rows;		/* off: messages carry no row images */
	/* parsed from redis_url; its password as config_redis_password()
	 * chose it */
	struct redis_addr redis;
	bool redis_url_password;	/* the URL itself holds one */

	/* [daemon] */
	enum log_level log_level;
	int max_queue;			/* messages waiting for Redis */
	size_t max_queue_bytes;		/* and their memory */
	int max_inflight;		/* PUBLISHes awaiting a reply */
	double shutdown_timeout;
	double reconnect_min;
	double reconnect_max;

	double health_interval;
	/* A partitioned active daemon's session ends within this; see
	 * run/ha.h */
	double takeover_timeout;
	int max_keys;			/* per message, when changes merge */
	double coalesce;		/* seconds a change waits for others */

	/* [outbox] */
	bool outbox_enabled;
	int outbox_batch;
	double outbox_poll_interval;
	double outbox_ack_timeout;
	size_t outbox_max_payload;	/* bigger rows become resets, unread */
	size_t outbox_max_batch_bytes;	/* payload bytes per drain */

	/* [metrics] */
	char *metrics_listen;		/* NULL: no HTTP listener */

	/* [apply] */
	enum apply_reset apply_reset;
	double apply_marker_ttl;
	double apply_marker_margin;
	bool apply_markers;		/* off: plain UNLINKs, no guard */
	char *apply_conninfo;		/* NULL: [postgres] conninfo */
	double apply_refresh_timeout;
	int apply_max_queue;		/* commands waiting, per target */

	struct table_rule *tables;
	size_t ntables;
	struct apply_target_cfg *targets;	/* [target NAME] sections */
	size_t ntargets;
};

/*
 * Loads the file at path. On success returns 0 and *out (config_free()).
 * On error returns -1, *out is NULL and *errors holds one line per problem,
 * each "FILE:LINE: reason" (the caller frees it).
 */
int config_load(const char *path, struct config **out, char **errors)
    __attribute__((warn_unused_result));
/*
 * config_load() for a command's start: the errors, and a warning about a
 * password that every user can read, go to stderr. NULL on error.
 */
struct config *config_open(const char *path);
/*
 * config_load() for a reload: each error is logged as "reload: ...", and
 * that the running configuration stays. NULL on error.
 */
struct config *config_reload(const char *path);
/* The same for an open stream; name is used in messages. */
int config_parse(FILE *f, const char *name, struct config **out,
    char **errors) __attribute__((warn_unused_result));
/* Drops one reference: the last one frees. */
void config_free(struct config *cfg);
/* Another reference to the same (immutable) configuration, for a second
 * owner; each owner calls config_free(). */
struct config *config_ref(struct config *cfg);

/* The rules for table, or NULL when it has no section. */
const struct table_rule *config_table(const struct config *cfg,
    const char *table);

/* Whether the file itself holds a password (conninfo, URL or [redis]
 * password), so that its permissions matter. */
bool config_holds_secret(const struct config *cfg);

/* Parses a Redis URL into cfg->redis and cfg->redis_url_password; -1
 * with err on error (see redis_addr_parse()). */
int config_parse_redis_url(struct config *cfg, const char *url, char *err,
    size_t errlen) __attribute__((warn_unused_result));
/*
 * Sets cfg->redis.password from where a Redis password comes from,
 * strongest first: redis_password_file, redis_password_opt, the
 * environment (PGINVAL_REDIS_PASSWORD); otherwise the URL's (parsed
 * before) stays. -1 with err when the file cannot be read.
 */
int config_redis_password(struct config *cfg, char *err, size_t errlen)
    __attribute__((warn_unused_result));


/* The default slot name of a channel: "pginval_" and the channel when it
 * is at most 55 of [a-z0-9_]; else its first 38 bytes (lower-cased, any
 * byte but [a-z0-9_] made '_') and "_" and a hash of it. out holds 64. */
void config_slot_name(const char *channel, char out[64]);

#endif
