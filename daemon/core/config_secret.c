/*
 * The settings that may hold a secret: conninfo strings checked without
 * showing them, the passwords read from files or the environment, and
 * whether the file itself holds one. Part of the parser of config.c (see
 * config_parse.h).
 */
#include "core/config.h"
#include "core/config_parse.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * What is wrong with a conninfo that libpq cannot parse, in words of our
 * own: libpq's message quotes the offending text, which may be (part of)
 * the password.
 */
static const char *
config_conninfo_problem(const char *libpq_msg)
{
	static const struct { const char *libpq, *ours; } problems[] = {
		{ "percent-encoded token", "an invalid %XX escape (write a "
		    "literal % as %25)" },
		{ "%00", "%00 in a value" },
		{ "missing \"=\"", "a word without \"=\" (write keyword=value "
		    "pairs separated by spaces; quote a value with spaces: "
		    "password='a b')" },
		{ "invalid connection option", "an unknown keyword (see \"Parameter "
		    "Key Words\" in the libpq documentation)" },
		{ "unterminated quoted string", "a quoted value that is not "
		    "closed" },
		{ "IPv6 host", "a malformed [IPv6] host in the URI" },
		{ "query parameter", "a malformed or unknown URI query parameter "
		    "(write ?keyword=value&keyword=value)" },
		{ "unexpected character", "an unexpected character in the URI's "
		    "host part (percent-encode '/', '@' and ':' in the user name "
		    "and password)" },
		{ "URI", "a malformed URI" },
		{ "out of memory", "out of memory" },
	};

	for (size_t i = 0; i < sizeof(problems) / sizeof(problems[0]); i++)
		if (libpq_msg != NULL && strstr(libpq_msg, problems[i].libpq))
			return problems[i].ours;
	return "libpq cannot parse it";
}

/* A URI whose password holds a '/' parses, wrongly: the '/' ends the
 * host part, so part of the password would become the database name
 * and reach error messages. An '@' in the path gives it away. */
static bool
config_uri_slash_in_password(const char *conninfo)
{
	const char *p, *slash, *end;

	if (strncmp(conninfo, "postgresql://", 13) == 0)
		p = conninfo + 13;
	else if (strncmp(conninfo, "postgres://", 11) == 0)
		p = conninfo + 11;
	else
		return false;
	if ((slash = strchr(p, '/')) == NULL)
		return false;
	end = strchr(slash, '?');
	return memchr(slash, '@', end ? (size_t)(end - slash) :
	    strlen(slash)) != NULL;
}

/* Catches a bad conninfo now rather than at every reconnect. The value
 * itself never appears in the message. */
void
config_check_conninfo(struct parse_ctx *ctx, const char *section,
    const char *conninfo)
{
	char *errmsg = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);

	if (opts == NULL)
		config_error(ctx, ctx->line, "conninfo in [%s] is not a valid "
		    "libpq connection string: %s; the value is not shown, as it "
		    "may hold a password", section,
		    config_conninfo_problem(errmsg));
	else if (config_uri_slash_in_password(conninfo))
		config_error(ctx, ctx->line, "conninfo in [%s]: the URI has an "
		    "'@' after its first '/'; percent-encode a '/' in the user "
		    "name or password as %%2F", section);
	PQfreemem(errmsg);
	PQconninfoFree(opts);
}

/* Reads a password: the file's first line, without its line end. NULL
 * with err on error. */
static char *
config_read_secret(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	size_t n;

	if (f == NULL) {
		snprintf(err, errlen, "cannot read %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	fclose(f);
	n = strcspn(line, "\r\n");
	line[n] = '\0';
	if (n == 0) {
		snprintf(err, errlen, "%s is empty", path);
		return NULL;
	}
	return xstrdup(line);
}

int
config_redis_password(struct config *cfg, char *err, size_t errlen)
{
	const char *env = getenv("PGINVAL_REDIS_PASSWORD");
	char *pw = NULL;

	if (cfg->redis_password_file != NULL) {
		pw = config_read_secret(cfg->redis_password_file, err, errlen);
		if (pw == NULL)
			return -1;
	} else if (cfg->redis_password_opt != NULL) {
		pw = xstrdup(cfg->redis_password_opt);
	} else if (env != NULL && env[0] != '\0') {
		pw = xstrdup(env);
	}
	if (pw != NULL) {
		free(cfg->redis.password);
		cfg->redis.password = pw;
	}
	return 0;
}

int
config_parse_redis_url(struct config *cfg, const char *url, char *err,
    size_t errlen)
{
	return redis_addr_parse(&cfg->redis, url, &cfg->redis_url_password,
	    err, errlen);
}

void
config_secrets(struct parse_ctx *ctx)
{
	struct config *cfg = ctx->cfg;
	char err[512];

	if (cfg->pg_password_file != NULL &&
	    (cfg->pg_password = config_read_secret(cfg->pg_password_file, err,
	    sizeof(err))) == NULL)
		config_error(ctx, 0, "[postgres] password_file: %s", err);
	if (config_redis_password(cfg, err, sizeof(err)) == -1)
		config_error(ctx, 0, "[redis] password_file: %s", err);
}

bool
config_holds_secret(const struct config *cfg)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(cfg->pg_conninfo, &err);
	bool secret = cfg->redis_password_opt != NULL ||
	    cfg->redis_url_password || cfg->redis_sentinel_password != NULL;

	for (size_t i = 0; i < cfg->ntargets; i++)
		if (cfg->targets[i].addr.password != NULL ||
		    cfg->targets[i].sentinel_password != NULL)
			secret = true;

	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL &&
		    o->val[0] != '\0')
			secret = true;
	PQconninfoFree(opts);
	PQfreemem(err);
	return secret;
}
