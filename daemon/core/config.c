/*
 * Configuration parsing. Every setting is described once, in config_opts:
 * its section, name, type, default and range. inih does the lexing; a
 * line-counting reader gives each error its line number, since Debian's
 * inih does not pass it on. The [table] and [target] sections are read in
 * config_sections.c, the secrets and conninfo checks in config_secret.c.
 */
#include "core/config.h"
#include "lib/redis_slots.h"
#include "core/config_parse.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

enum opt_type {
	OPT_STRING,
	OPT_INT,
	OPT_SECONDS,
	OPT_LOG_LEVEL,
	OPT_ACTION,
	OPT_BOOL,
	OPT_APPLY_RESET,
	OPT_SIZE,
	OPT_RATIO,
};

struct opt {
	const char *section;
	const char *name;
	enum opt_type type;
	size_t off;
	const char *def;	/* NULL: required */
	double min, max;	/* for numbers */
};

#define O(f) offsetof(struct config, f)

static const struct opt config_opts[] = {
	{ "postgres", "conninfo", OPT_STRING, O(pg_conninfo), NULL, 0, 0 },
	{ "postgres", "channel", OPT_STRING, O(pg_channel), "pginval", 0, 0 },
	{ "postgres", "password_file", OPT_STRING, O(pg_password_file), "", 0, 0 },
	{ "postgres", "connect_timeout", OPT_SECONDS, O(pg_connect_timeout), "10", 0.1, 3600 },
	{ "postgres", "slot", OPT_STRING, O(pg_slot), "", 0, 0 },
	{ "postgres", "notify_queue_warn", OPT_RATIO, O(pg_notify_queue_warn), "0.5", 1e-9, 1 },
	{ "redis", "url", OPT_STRING, O(redis_url), "redis://127.0.0.1:6379/0", 0, 0 },
	{ "redis", "channel", OPT_STRING, O(redis_channel), "pginval", 0, 0 },
	{ "redis", "stream", OPT_STRING, O(redis_stream), "", 0, 0 },
	{ "redis", "stream_maxlen", OPT_INT, O(redis_stream_maxlen), "10000", 1, 100000000 },
	{ "redis", "password", OPT_STRING, O(redis_password_opt), "", 0, 0 },
	{ "redis", "password_file", OPT_STRING, O(redis_password_file), "", 0, 0 },
	{ "redis", "action", OPT_ACTION, O(redis_action), "publish", 0, 0 },
	{ "redis", "cluster", OPT_STRING, O(redis_cluster), "off", 0, 0 },
	{ "redis", "sentinels", OPT_STRING, O(redis_sentinels), "", 0, 0 },
	{ "redis", "master", OPT_STRING, O(redis_master), "", 0, 0 },
	{ "redis", "sentinel_password", OPT_STRING, O(redis_sentinel_password), "", 0, 0 },
	{ "redis", "connect_timeout", OPT_SECONDS, O(redis_connect_timeout), "5", 0.1, 3600 },
	{ "redis", "command_timeout", OPT_SECONDS, O(redis_command_timeout), "10", 0.1, 3600 },
	{ "redis", "rows", OPT_BOOL, O(redis_rows), "on", 0, 0 },
	{ "daemon", "log_level", OPT_LOG_LEVEL, O(log_level), "info", 0, 0 },
	{ "daemon", "max_queue", OPT_INT, O(max_queue), "100000", 1, 100000000 },
	{ "daemon", "max_queue_bytes", OPT_SIZE, O(max_queue_bytes), "4MB", 65536, 1e12 },
	{ "daemon", "max_inflight", OPT_INT, O(max_inflight), "1000", 1, 1000000 },
	{ "daemon", "shutdown_timeout", OPT_SECONDS, O(shutdown_timeout), "10", 0, 3600 },
	{ "daemon", "reconnect_min", OPT_SECONDS, O(reconnect_min), "0.1", 0.001, 3600 },
	{ "daemon", "reconnect_max", OPT_SECONDS, O(reconnect_max), "30", 0.001, 86400 },
	{ "daemon", "health_interval", OPT_SECONDS, O(health_interval), "10", 0, 3600 },
	{ "daemon", "takeover_timeout", OPT_SECONDS, O(takeover_timeout), "10", 2, 3600 },
	{ "daemon", "max_keys", OPT_INT, O(max_keys), "1000", 1, 1000000 },
	{ "daemon", "coalesce", OPT_SECONDS, O(coalesce), "0", 0, 10 },
	{ "outbox", "enabled", OPT_BOOL, O(outbox_enabled), "off", 0, 0 },
	{ "outbox", "batch", OPT_INT, O(outbox_batch), "1000", 1, 100000 },
	{ "outbox", "poll_interval", OPT_SECONDS, O(outbox_poll_interval), "1", 0.001, 3600 },
	{ "outbox", "ack_timeout", OPT_SECONDS, O(outbox_ack_timeout), "30", 1, 3600 },
	{ "outbox", "max_payload", OPT_SIZE, O(outbox_max_payload), "1MB", 4096, 1073741824 },
	{ "outbox", "max_batch_bytes", OPT_SIZE, O(outbox_max_batch_bytes), "4MB", 65536, 1073741824 },
	{ "metrics", "listen", OPT_STRING, O(metrics_listen), "", 0, 0 },
	{ "apply", "reset", OPT_APPLY_RESET, O(apply_reset), "patterns", 0, 0 },
	{ "apply", "marker_ttl", OPT_SECONDS, O(apply_marker_ttl), "10", 0.1, 3600 },
	{ "apply", "marker_margin", OPT_SECONDS, O(apply_marker_margin), "50ms", 0, 60 },
	{ "apply", "markers", OPT_BOOL, O(apply_markers), "on", 0, 0 },
	{ "apply", "conninfo", OPT_STRING, O(apply_conninfo), "", 0, 0 },
	{ "apply", "refresh_timeout", OPT_SECONDS, O(apply_refresh_timeout), "5", 0.1, 3600 },
	{ "apply", "max_queue", OPT_INT, O(apply_max_queue), "100000", 1, 100000000 },
};

#define NOPTS (sizeof(config_opts) / sizeof(config_opts[0]))

void
config_error(struct parse_ctx *ctx, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ctx->errors.len > 0)
		buf_addc(&ctx->errors, '\n');
	if (line > 0) {
		char where[32];

		snprintf(where, sizeof(where), ":%d: ", line);
		buf_adds(&ctx->errors, ctx->name);
		buf_adds(&ctx->errors, where);
	} else {
		buf_adds(&ctx->errors, ctx->name);
		buf_adds(&ctx->errors, ": ");
	}
	buf_adds(&ctx->errors, msg);
	ctx->nerrors++;
}

/*
 * Looks at a whole line the way inih will: a section header gives the
 * section its full name (inih cuts section names at 49 bytes, too short
 * for "table schema.name"), and a line that is neither a setting, a header
 * nor a comment is reported here (inih reports only the first such line).
 */
static void
config_check_line(struct parse_ctx *ctx)
{
	const char *p = ctx->raw.data ? ctx->raw.data : "", *end;

	ctx->raw_checked = true;
	if (ctx->line == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0' || *p == ';' || *p == '#')
		return;
	if (*p == '[') {
		end = strchr(p + 1, ']');
		if (end != NULL) {
			free(ctx->section);
			ctx->section = xstrndup(p + 1, (size_t)(end - p - 1));
			ctx->section_line = ctx->line;
			return;
		}
	} else if (strpbrk(p, "=:") != NULL) {
		return;
	}
	config_error(ctx, ctx->line, "not a setting (\"name = value\") nor a "
	    "[section] header");
	ctx->syntax_errors = true;
}

/* fgets() that counts lines, so the handler knows where it is. */
static char *
config_reader(char *str, int num, void *stream)
{
	struct parse_ctx *ctx = stream;
	char *r;

	if (ctx->at_line_start) {
		ctx->line++;
		buf_reset(&ctx->raw);
		ctx->raw_checked = false;
	}
	errno = 0;
	r = fgets(str, num, ctx->f);
	if (r != NULL) {
		size_t n = strlen(r);

		ctx->at_line_start = n > 0 && r[n - 1] == '\n';
		buf_add(&ctx->raw, r, n);
		/* inih handles a line once it has all of it: at its newline,
		 * or at the end of the file. */
		if (ctx->at_line_start || feof(ctx->f))
			config_check_line(ctx);
	} else {
		if (ferror(ctx->f))
			ctx->read_errno = errno ? errno : EIO;
		if (ctx->raw.len > 0 && !ctx->raw_checked)
			config_check_line(ctx);
	}
	return r;
}

int
config_number(const char *value, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(value, &end);
	if (errno != 0 || end == value || isnan(*out))
		return -1;
	/* Allow a unit suffix on durations: "500ms", "5s". */
	if (strcmp(end, "ms") == 0)
		*out /= 1000;
	else if (strcmp(end, "s") != 0 && *end != '\0')
		return -1;
	return 0;
}

static int
config_set(struct parse_ctx *ctx, const struct opt *o, const char *value,
    int line)
{
	void *field = (char *)ctx->cfg + o->off;
	double d;

	switch (o->type) {
	case OPT_STRING:
		if (value[0] == '\0') {
			config_error(ctx, line, "%s in [%s] is empty", o->name,
			    o->section);
			return -1;
		}
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 0;
	case OPT_INT:
	case OPT_SECONDS:
		if (config_number(value, &d) == -1 ||
		    (o->type == OPT_INT && strpbrk(value, ".eEms") != NULL)) {
			config_error(ctx, line, "%s in [%s]: \"%s\" is not %s",
			    o->name, o->section, value, o->type == OPT_INT ?
			    "a whole number" : "a duration (such as 5, 2.5s or 500ms)");
			return -1;
		}
		if (d < o->min || d > o->max) {
			config_error(ctx, line, "%s in [%s]: %s is out of range "
			    "(%g to %g)", o->name, o->section, value, o->min, o->max);
			return -1;
		}
		if (o->type == OPT_INT)
			*(int *)field = (int)d;
		else
			*(double *)field = d;
		return 0;
	case OPT_LOG_LEVEL: {
		enum log_level lvl;

		if (log_level_parse(value, &lvl) == -1) {
			config_error(ctx, line, "log_level: \"%s\" is not one of "
			    "error, warn, info, debug", value);
			return -1;
		}
		*(enum log_level *)field = lvl;
		return 0;
	}
	case OPT_SIZE: {
		char *end;
		double mul = 1;

		errno = 0;
		d = strtod(value, &end);
		if (strcasecmp(end, "kb") == 0 || strcasecmp(end, "k") == 0)
			mul = 1024;
		else if (strcasecmp(end, "mb") == 0 || strcasecmp(end, "m") == 0)
			mul = 1024 * 1024;
		else if (strcasecmp(end, "gb") == 0 || strcasecmp(end, "g") == 0)
			mul = 1024.0 * 1024 * 1024;
		else if (*end != '\0')
			end = NULL;
		if (errno != 0 || end == NULL || end == value || !(d >= 0)) {
			config_error(ctx, line, "%s in [%s]: \"%s\" is not a size "
			    "(such as 65536, 512kB or 8MB)", o->name, o->section,
			    value);
			return -1;
		}
		d *= mul;
		if (d < o->min || d > o->max) {
			config_error(ctx, line, "%s in [%s]: %s is out of range "
			    "(%g to %g bytes)", o->name, o->section, value, o->min,
			    o->max);
			return -1;
		}
		*(size_t *)field = (size_t)d;
		return 0;
	}
	case OPT_BOOL:
		if (strcmp(value, "on") == 0 || strcmp(value, "true") == 0 ||
		    strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
			*(bool *)field = true;
		else if (strcmp(value, "off") == 0 || strcmp(value, "false") == 0 ||
		    strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
			*(bool *)field = false;
		else {
			config_error(ctx, line, "%s in [%s]: \"%s\" is not on or "
			    "off", o->name, o->section, value);
			return -1;
		}
		return 0;
	case OPT_RATIO: {
		char *end;

		errno = 0;
		d = strtod(value, &end);
		if (strcmp(end, "%") == 0)
			d /= 100;
		else if (*end != '\0')
			end = NULL;
		if (errno != 0 || end == NULL || end == value || isnan(d)) {
			config_error(ctx, line, "%s in [%s]: \"%s\" is not a "
			    "fraction (such as 0.5) or a percentage (50%%)",
			    o->name, o->section, value);
			return -1;
		}
		if (d < o->min || d > o->max) {
			config_error(ctx, line, "%s in [%s]: %s is out of range "
			    "(above 0, up to 1 or 100%%)", o->name, o->section,
			    value);
			return -1;
		}
		*(double *)field = d;
		return 0;
	}
	case OPT_APPLY_RESET:
		if (strcmp(value, "patterns") == 0)
			*(enum apply_reset *)field = APPLY_RESET_PATTERNS;
		else if (strcmp(value, "flush") == 0)
			*(enum apply_reset *)field = APPLY_RESET_FLUSH;
		else {
			config_error(ctx, line, "reset in [apply]: \"%s\" is not "
			    "\"patterns\" or \"flush\"", value);
			return -1;
		}
		return 0;
	case OPT_ACTION:
		if (strcmp(value, "publish") == 0)
			*(enum redis_action *)field = REDIS_ACTION_PUBLISH;
		else if (strcmp(value, "delete") == 0)
			*(enum redis_action *)field = REDIS_ACTION_DELETE;
		else {
			config_error(ctx, line, "action: \"%s\" is not \"publish\" "
			    "or \"delete\"", value);
			return -1;
		}
		return 0;
	}
	return -1;
}

static int
config_handler(void *user, const char *inih_section, const char *name,
    const char *value)
{
	struct parse_ctx *ctx = user;
	/* inih_section may be cut short: use the name config_check_line()
	 * took from the header. */
	const char *section = ctx->section ? ctx->section : "";
	bool known_section = false;

	if (strncmp(section, "table ", 6) == 0 || strcmp(section, "table") == 0)
		return config_table_key(ctx, section + 5, name, value), 1;
	if (strncmp(section, "target ", 7) == 0 || strcmp(section, "target") == 0)
		return config_target_key(ctx, section + 6, name, value), 1;
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt *o = &config_opts[i];

		if (strcmp(section, o->section) != 0)
			continue;
		known_section = true;
		if (strcmp(name, o->name) != 0)
			continue;
		ctx->seen[i] = true;
		if (o->off == O(redis_url))
			ctx->redis_url_line = ctx->line;
		if (config_set(ctx, o, value, ctx->line) == 0 &&
		    (o->off == O(pg_conninfo) || o->off == O(apply_conninfo)))
			config_check_conninfo(ctx, o->section, value);
		return 1;
	}
	/* A name of several words is a line without its '=' where a value
	 * (a password, say) has a ':': show only the first word. */
	if (section[0] == '\0')
		config_error(ctx, ctx->line, "\"%.*s\"%s is outside any section",
		    (int)strcspn(name, " \t"), name,
		    name[strcspn(name, " \t")] ? "..." : "");
	else if (known_section)
		config_error(ctx, ctx->line, "unknown setting \"%.*s\"%s in [%s]",
		    (int)strcspn(name, " \t"), name,
		    name[strcspn(name, " \t")] ? "..." : "", section);
	else
		config_error(ctx, ctx->line, "unknown section [%s] (expected "
		    "[postgres], [redis], [daemon], [outbox], [metrics], [apply], "
		    "[table schema.name] or [target NAME])",
		    section);
	/* Errors are collected here; returning 1 lets inih carry on so that
	 * every problem is reported at once. */
	return 1;
}

static void
config_check(struct parse_ctx *ctx)
{
	struct config *cfg = ctx->cfg;
	char err[256];

	for (size_t i = 0; i < NOPTS; i++)
		if (config_opts[i].def == NULL && !ctx->seen[i])
			config_error(ctx, 0, "%s is missing from [%s]",
			    config_opts[i].name, config_opts[i].section);
	if (cfg->redis_url != NULL &&
	    config_parse_redis_url(cfg, cfg->redis_url, err, sizeof(err)) == -1)
		config_error(ctx, ctx->redis_url_line, "[redis] %s", err);
	else if (redis_addr_topology(&cfg->redis, cfg->redis_cluster,
	    cfg->redis_sentinels, cfg->redis_master,
	    cfg->redis_sentinel_password, err, sizeof(err)) == -1)
		config_error(ctx, 0, "[redis] %s", err);
	else if (cfg->redis.cluster != REDIS_CLUSTER_OFF &&
	    cfg->redis_stream != NULL && cfg->redis_channel != NULL &&
	    redis_keyslot(cfg->redis_stream, strlen(cfg->redis_stream)) !=
	    redis_keyslot(cfg->redis_channel, strlen(cfg->redis_channel)))
		/* Pipelined on one link, the stream must live where the
		 * channel is served: in the same slot. */
		config_error(ctx, 0, "[redis] stream \"%.80s\" and channel "
		    "\"%.80s\" hash to different slots of the cluster, so "
		    "they may live on different nodes; put the channel's name "
		    "in braces in the stream's, as in stream = {%.80s}:log",
		    cfg->redis_stream, cfg->redis_channel, cfg->redis_channel);
	config_check_targets(ctx);
	if (cfg->pg_slot == NULL && cfg->pg_channel != NULL) {
		char slot[64];

		config_slot_name(cfg->pg_channel, slot);
		cfg->pg_slot = xstrdup(slot);
	} else if (cfg->pg_slot != NULL &&
	    (strlen(cfg->pg_slot) > 63 ||
	    strspn(cfg->pg_slot, "abcdefghijklmnopqrstuvwxyz0123456789_") !=
	    strlen(cfg->pg_slot)))
		config_error(ctx, 0, "[postgres] slot \"%.80s\" is not a "
		    "replication slot name: 1 to 63 of a-z, 0-9 and _",
		    cfg->pg_slot);
	if (cfg->reconnect_min > cfg->reconnect_max)
		config_error(ctx, 0, "[daemon] reconnect_min is above "
		    "reconnect_max");
	for (size_t i = 0; i < cfg->ntables; i++) {
		const struct table_rule *t = &cfg->tables[i];

		if (t->keys_line == 0)
			config_error(ctx, t->line, "[table %s] has no keys line",
			    t->name);
		else if (t->ttl_line != 0 && t->refresh == NULL)
			config_error(ctx, t->ttl_line, "[table %s] ttl is for "
			    "refresh, which is not set", t->name);
		else if (t->rules != NULL && !t->allow_wide_sweep)
			config_check_sweeps(ctx, t);
	}
	config_secrets(ctx);
}

void
config_slot_name(const char *channel, char out[64])
{
	size_t len = strlen(channel), n = strlen("pginval_");
	bool plain = len <= 55 && strspn(channel,
	    "abcdefghijklmnopqrstuvwxyz0123456789_") == len;
	uint32_t h = 2166136261u;	/* FNV-1a */

	memcpy(out, "pginval_", n);
	if (plain) {
		memcpy(out + n, channel, len + 1);
		return;
	}
	/* Two channels must not share a slot: what one confirmed, the other
	 * would lose. So a name that had to change carries a hash of the
	 * channel. */
	for (const char *p = channel; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (const char *p = channel; *p != '\0' && n < 46; p++)
		out[n++] = (*p >= 'a' && *p <= 'z') || (*p >= '0' &&
		    *p <= '9') ? *p : (*p >= 'A' && *p <= 'Z') ?
		    (char)(*p - 'A' + 'a') : '_';
	snprintf(out + n, 64 - n, "_%08x", (unsigned)h);
}

int
config_parse(FILE *f, const char *name, struct config **out, char **errors)
{
	struct parse_ctx ctx = { 0 };
	int rc;

	*out = NULL;
	*errors = NULL;
	ctx.cfg = xcalloc(1, sizeof(*ctx.cfg));
	ctx.cfg->path = xstrdup(name);
	ctx.name = name;
	ctx.f = f;
	ctx.at_line_start = true;
	ctx.seen = xcalloc(NOPTS, sizeof(*ctx.seen));
	/* An empty default leaves the setting unset (NULL). */
	for (size_t i = 0; i < NOPTS; i++)
		if (config_opts[i].def != NULL && config_opts[i].def[0] != '\0')
			config_set(&ctx, &config_opts[i], config_opts[i].def, 0);

	/* Long conninfo lines are normal; ';' may be part of a password, so
	 * only whole-line comments exist. */
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_max_line = 65536;
	ini_allow_inline_comments = false;
	ini_allow_multiline = false;
	ini_stop_on_first_error = false;
	rc = ini_parse_stream(config_reader, &ctx, config_handler, &ctx);
	buf_free(&ctx.raw);
	free(ctx.section);
	if (rc > 0 && !ctx.syntax_errors)
		config_error(&ctx, rc, "not a setting (\"name = value\") nor a "
		    "[section] header");
	else if (rc < 0)
		config_error(&ctx, 0, "cannot parse (%s)", rc == -2 ?
		    "out of memory" : "read error");
	/* A read error looks like the end of the file to inih: say so
	 * rather than complain about what the rest would have held. */
	if (ctx.read_errno != 0)
		config_error(&ctx, 0, "cannot read: %s", strerror(ctx.read_errno));
	else
		config_check(&ctx);
	free(ctx.seen);
	if (ctx.nerrors > 0) {
		*errors = buf_steal(&ctx.errors);
		config_free(ctx.cfg);
		return -1;
	}
	buf_free(&ctx.errors);
	*out = ctx.cfg;
	return 0;
}

int
config_load(const char *path, struct config **out, char **errors)
{
	FILE *f = fopen(path, "r");
	int rc;

	if (f == NULL) {
		struct buf b = { 0 };

		buf_adds(&b, path);
		buf_adds(&b, ": cannot open: ");
		buf_adds(&b, strerror(errno));
		*out = NULL;
		*errors = buf_steal(&b);
		return -1;
	}
	rc = config_parse(f, path, out, errors);
	fclose(f);
	return rc;
}

struct config *
config_open(const char *path)
{
	struct config *cfg;
	char *errors = NULL;
	struct stat st;

	if (config_load(path, &cfg, &errors) == -1) {
		fprintf(stderr, "%s\n", errors);
		free(errors);
		return NULL;
	}
	if (config_holds_secret(cfg) && stat(path, &st) == 0 &&
	    (st.st_mode & S_IROTH))
		fprintf(stderr, "%s: warning: the file holds a password and every "
		    "user can read it; chmod o-r %s, or move the password to a "
		    "password_file\n", path, path);
	return cfg;
}

struct config *
config_reload(const char *path)
{
	struct config *cfg;
	char *errors = NULL;

	if (config_load(path, &cfg, &errors) == 0)
		return cfg;
	for (char *line = strtok(errors, "\n"); line != NULL;
	    line = strtok(NULL, "\n"))
		log_error("reload: %s", line);
	log_error("reload: keeping the running configuration");
	free(errors);
	return NULL;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	if (cfg->refs > 0) {
		cfg->refs--;
		return;
	}
	for (size_t i = 0; i < NOPTS; i++)
		if (config_opts[i].type == OPT_STRING)
			free(*(char **)((char *)cfg + config_opts[i].off));
	for (size_t i = 0; i < cfg->ntables; i++) {
		free(cfg->tables[i].name);
		rules_free(cfg->tables[i].rules);
		free(cfg->tables[i].refresh);
	}
	free(cfg->tables);
	for (size_t i = 0; i < cfg->ntargets; i++) {
		struct apply_target_cfg *t = &cfg->targets[i];

		free(t->name);
		free(t->url);
		free(t->cluster);
		free(t->sentinels);
		free(t->master);
		free(t->sentinel_password);
		redis_addr_free(&t->addr);
	}
	free(cfg->targets);
	redis_addr_free(&cfg->redis);
	free(cfg->pg_password);
	free(cfg->path);
	free(cfg);
}

struct config *
config_ref(struct config *cfg)
{
	cfg->refs++;
	return cfg;
}

const struct table_rule *
config_table(const struct config *cfg, const char *table)
{
	for (size_t i = 0; i < cfg->ntables; i++)
		if (strcmp(cfg->tables[i].name, table) == 0)
			return &cfg->tables[i];
	return NULL;
}
