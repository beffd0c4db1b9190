/*
 * Unit tests for daemon/core/config.c: parsing configuration text (through
 * fmemopen), loading files, Redis URLs, and the error report.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../daemon/lib/buf.h"
#include "../../daemon/core/config.h"
#include "../../daemon/core/rules.h"

#include "tcheck.h"

#define NAME "test.conf"

/* Parses text as the file NAME. */
static int
parse(const char *text, struct config **cfg, char **errors)
{
	size_t len = strlen(text);
	char *copy = malloc(len + 1);
	FILE *f;
	int rc;

	assert_non_null(copy);
	memcpy(copy, text, len + 1);
	/* fmemopen() refuses a zero size. */
	f = fmemopen(copy, len ? len : 1, "r");
	assert_non_null(f);
	if (len == 0)
		(void)fgetc(f);	/* at the end already */
	rc = config_parse(f, NAME, cfg, errors);
	fclose(f);
	free(copy);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Every field of a struct config, as text, so that tables can list the
 * expected values. */

enum ftype { F_STR, F_INT, F_DBL, F_BOOL, F_ACTION, F_TABLES };

struct field {
	const char *name;
	enum ftype type;
	size_t off;
	const char *def;	/* the value when the file does not set it */
};

#define F(n, t, d) { #n, t, offsetof(struct config, n), d }

static const struct field fields[] = {
	F(path, F_STR, NAME),
	F(pg_conninfo, F_STR, "(null)"),
	F(pg_channel, F_STR, "pginval"),
	F(pg_connect_timeout, F_DBL, "10"),
	F(redis_url, F_STR, "redis://127.0.0.1:6379/0"),
	F(redis_channel, F_STR, "pginval"),
	F(redis_action, F_ACTION, "publish"),
	F(redis_connect_timeout, F_DBL, "5"),
	F(redis_command_timeout, F_DBL, "10"),
	F(redis_rows, F_BOOL, "on"),
	F(redis.host, F_STR, "127.0.0.1"),
	F(redis.port, F_INT, "6379"),
	F(redis.unix_path, F_STR, "(null)"),
	F(redis.db, F_INT, "0"),
	F(redis.user, F_STR, "(null)"),
	F(redis.password, F_STR, "(null)"),
	F(redis.where, F_STR, "127.0.0.1:6379"),
	F(log_level, F_INT, "6"),
	F(max_queue, F_INT, "100000"),
	F(max_inflight, F_INT, "1000"),
	F(shutdown_timeout, F_DBL, "10"),
	F(takeover_timeout, F_DBL, "10"),
	F(reconnect_min, F_DBL, "0.1"),
	F(reconnect_max, F_DBL, "30"),
	/* "name@line[columns]; ..." */
	{ "tables", F_TABLES, 0, "" },
};

#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static void
field_text(const struct config *cfg, const struct field *f, struct buf *out)
{
	const char *p = (const char *)cfg + f->off;
	char tmp[64];

	buf_reset(out);
	switch (f->type) {
	case F_STR: {
		const char *s;

		memcpy(&s, p, sizeof(s));
		buf_adds(out, s ? s : "(null)");
		break;
	}
	case F_INT: {
		int v;

		memcpy(&v, p, sizeof(v));
		snprintf(tmp, sizeof(tmp), "%d", v);
		buf_adds(out, tmp);
		break;
	}
	case F_DBL: {
		double v;

		memcpy(&v, p, sizeof(v));
		snprintf(tmp, sizeof(tmp), "%g", v);
		buf_adds(out, tmp);
		break;
	}
	case F_BOOL: {
		bool v;

		memcpy(&v, p, sizeof(v));
		buf_adds(out, v ? "on" : "off");
		break;
	}
	case F_ACTION:
		buf_adds(out, cfg->redis_action == REDIS_ACTION_PUBLISH ?
		    "publish" : cfg->redis_action == REDIS_ACTION_DELETE ?
		    "delete" : "?");
		break;
	case F_TABLES:
		for (size_t i = 0; i < cfg->ntables; i++) {
			const struct table_rule *t = &cfg->tables[i];

			snprintf(tmp, sizeof(tmp), "@%d[", t->line);
			if (i > 0)
				buf_adds(out, "; ");
			buf_adds(out, t->name);
			buf_adds(out, tmp);
			buf_adds(out, rules_columns(t->rules));
			buf_addc(out, ']');
		}
		if (out->data == NULL)
			buf_adds(out, "");
		break;
	}
}

#define MAXEXPECT 24

struct expect {
	const char *field;
	const char *want;
};

struct good_case {
	const char *name;
	const char *text;
	struct expect expect[MAXEXPECT];	/* differences from fields[].def */
};

/* Checks every field of cfg against c's expectations or the defaults. */
static void
check_fields(const struct config *cfg, const struct expect *expect)
{
	struct buf got = { 0 };

	for (size_t j = 0; j < MAXEXPECT && expect[j].field != NULL; j++) {
		size_t i;

		for (i = 0; i < NFIELDS; i++)
			if (strcmp(fields[i].name, expect[j].field) == 0)
				break;
		if (i == NFIELDS)
			t_fail(__LINE__, "test bug: no field %s", expect[j].field);
	}
	for (size_t i = 0; i < NFIELDS; i++) {
		const char *want = fields[i].def;

		for (size_t j = 0; j < MAXEXPECT && expect[j].field != NULL; j++)
			if (strcmp(expect[j].field, fields[i].name) == 0)
				want = expect[j].want;
		field_text(cfg, &fields[i], &got);
		if (strcmp(got.data, want) != 0)
			t_fail(__LINE__, "%s is \"%s\", want \"%s\"",
			    fields[i].name, got.data, want);
	}
	buf_free(&got);
}

#define PG "[postgres]\nconninfo = host=x\n"
#define HOSTX { "pg_conninfo", "host=x" }

static const struct good_case good_cases[] = {
	{ "minimal", "[postgres]\nconninfo = host=localhost dbname=app\n",
	    { { "pg_conninfo", "host=localhost dbname=app" } } },
	{ "every key",
	    "[postgres]\n"
	    "conninfo = host=db.example port=5433 dbname=app user=inval\n"
	    "channel = inval_chan\n"
	    "connect_timeout = 2.5s\n"
	    "\n"
	    "[redis]\n"
	    "url = redis://cache:p%40ss@cache.example:6380/3\n"
	    "channel = invalidations\n"
	    "action = delete\n"
	    "connect_timeout = 500ms\n"
	    "command_timeout = 3\n"
	    "\n"
	    "[daemon]\n"
	    "log_level = debug\n"
	    "max_queue = 5000\n"
	    "max_inflight = 50\n"
	    "shutdown_timeout = 0\n"
	    "reconnect_min = 250ms\n"
	    "reconnect_max = 60s\n"
	    "\n"
	    "[table public.users]\n"
	    "keys = user:{id}, user:email:{email}\n"
	    "\n"
	    "[table shop.orders]\n"
	    "keys = order:{id}\n",
	    { { "pg_conninfo", "host=db.example port=5433 dbname=app user=inval" },
		{ "pg_channel", "inval_chan" },
		{ "pg_connect_timeout", "2.5" },
		{ "redis_url", "redis://cache:p%40ss@cache.example:6380/3" },
		{ "redis_channel", "invalidations" },
		{ "redis_action", "delete" },
		{ "redis_connect_timeout", "0.5" },
		{ "redis_command_timeout", "3" },
		{ "redis.host", "cache.example" },
		{ "redis.port", "6380" },
		{ "redis.db", "3" },
		{ "redis.user", "cache" },
		{ "redis.password", "p@ss" },
		{ "redis.where", "cache.example:6380" },
		{ "log_level", "7" },
		{ "max_queue", "5000" },
		{ "max_inflight", "50" },
		{ "shutdown_timeout", "0" },
		{ "reconnect_min", "0.25" },
		{ "reconnect_max", "60" },
		{ "tables", "public.users@21[id, email]; shop.orders@24[id]" } } },
	{ "durations",
	    PG "connect_timeout = 500ms\n"
	    "[redis]\nconnect_timeout = 2.5s\ncommand_timeout = 5\n"
	    "[daemon]\nshutdown_timeout = 0ms\nreconnect_min = 1ms\n"
	    "reconnect_max = 86400s\n",
	    { HOSTX, { "pg_connect_timeout", "0.5" },
		{ "redis_connect_timeout", "2.5" },
		{ "redis_command_timeout", "5" }, { "shutdown_timeout", "0" },
		{ "reconnect_min", "0.001" }, { "reconnect_max", "86400" } } },
	{ "limits of the ranges",
	    PG "[daemon]\nmax_queue = 1\nmax_inflight = 1000000\n"
	    "shutdown_timeout = 3600\nreconnect_min = 0.001\n"
	    "reconnect_max = 0.001\n",
	    { HOSTX, { "max_queue", "1" }, { "max_inflight", "1000000" },
		{ "shutdown_timeout", "3600" }, { "reconnect_min", "0.001" },
		{ "reconnect_max", "0.001" } } },
	{ "rows off", PG "[redis]\nrows = off\n",
	    { HOSTX, { "redis_rows", "off" } } },
	{ "upper limit of max_queue", PG "[daemon]\nmax_queue = 100000000\n",
	    { HOSTX, { "max_queue", "100000000" } } },
	{ "comments with # and ;",
	    "# pginval\n; settings\n[postgres]\n# a comment\n  ; indented\n"
	    "\t# tab-indented\nconninfo = host=x\n#channel = nope\n",
	    { HOSTX } },
	{ "';' and '#' inside values are kept",
	    "[postgres]\nconninfo = host=x password=a;b#c\n"
	    "channel = chan;nel # not a comment\n"
	    "[redis]\nchannel = ; also kept\n",
	    { { "pg_conninfo", "host=x password=a;b#c" },
		{ "pg_channel", "chan;nel # not a comment" },
		{ "redis_channel", "; also kept" } } },
	{ "blanks around names, values and headers",
	    "\n\n   [postgres]   \n   conninfo   =   host=x   \n\t channel\t=\tc \t\n",
	    { HOSTX, { "pg_channel", "c" } } },
	{ "'=' in a value", PG "[redis]\nchannel = a=b=c\n",
	    { HOSTX, { "redis_channel", "a=b=c" } } },
	{ "CRLF line ends",
	    "[postgres]\r\nconninfo = host=x\r\n[daemon]\r\nmax_queue = 5\r\n",
	    { HOSTX, { "max_queue", "5" } } },
	{ "UTF-8 byte order mark", "\xef\xbb\xbf[postgres]\nconninfo = host=x\n",
	    { HOSTX } },
	{ "no newline at the end", "[postgres]\nconninfo = host=x",
	    { HOSTX } },
	{ "a section seen twice", "[postgres]\nconninfo = host=x\n[daemon]\n"
	    "max_queue = 7\n[postgres]\nchannel = again\n",
	    { HOSTX, { "max_queue", "7" }, { "pg_channel", "again" } } },
	{ "the last of repeated settings wins",
	    PG "[redis]\nchannel = one\nchannel = two\n",
	    { HOSTX, { "redis_channel", "two" } } },
	{ "log_level names",
	    PG "[daemon]\nlog_level = warning\n",
	    { HOSTX, { "log_level", "4" } } },
	{ "log_level error", PG "[daemon]\nlog_level = error\n",
	    { HOSTX, { "log_level", "3" } } },
	{ "action publish", PG "[redis]\naction = publish\n", { HOSTX } },
	{ "unix socket url", PG "[redis]\nurl = unix:/run/redis/redis.sock\n",
	    { HOSTX, { "redis_url", "unix:/run/redis/redis.sock" },
		{ "redis.host", "(null)" },
		{ "redis.unix_path", "/run/redis/redis.sock" },
		{ "redis.where", "/run/redis/redis.sock" } } },
	{ "IPv6 url", PG "[redis]\nurl = redis://:pw@[::1]:6380/1\n",
	    { HOSTX, { "redis_url", "redis://:pw@[::1]:6380/1" },
		{ "redis.host", "::1" }, { "redis.port", "6380" },
		{ "redis.db", "1" }, { "redis.password", "pw" },
		{ "redis.where", "[::1]:6380" } } },
	{ "tables",
	    PG "[table public.users]\nkeys = user:{id}, user:email:{email}\n"
	    "\n[table shop.orders]\n\nkeys=order:{id}:{line}\n",
	    { HOSTX, { "tables", "public.users@3[id, email]; "
		"shop.orders@6[id, line]" } } },
	{ "blanks around a table name",
	    PG "[table   public.users \t]\nkeys = user:{id}\n",
	    { HOSTX, { "tables", "public.users@3[id]" } } },
	{ "a table name longer than 49 bytes",
	    PG "[table some_long_schema_name.a_table_with_a_rather_long_name_x]\n"
	    "keys = t:{id}\n",
	    { HOSTX, { "tables", "some_long_schema_name.a_table_with_a_rather_"
		"long_name_x@3[id]" } } },
	{ "a table name of 127 bytes",
	    PG "[table s23456789012345678901234567890123456789012345678901234567"
	    "890123.t23456789012345678901234567890123456789012345678901234567"
	    "890123]\nkeys = t:{id}\n",
	    { HOSTX, { "tables", "s23456789012345678901234567890123456789012345"
		"678901234567890123.t2345678901234567890123456789012345678901234"
		"5678901234567890123@3[id]" } } },
	{ "quoted identifiers in a table name",
	    PG "[table My Schema.\"Odd\" table]\nkeys = k:{Id}\n",
	    { HOSTX, { "tables", "My Schema.\"Odd\" table@3[Id]" } } },
	{ "a template that begins with a column, allowed",
	    PG "[table public.kv]\nallow_wide_sweep = yes\nkeys = {id}, {a}:{b}\n",
	    { HOSTX, { "tables", "public.kv@3[id, a, b]" } } },
	{ "allow_wide_sweep after the keys", PG "[table public.kv]\n"
	    "keys = {id}\nallow_wide_sweep = on\n",
	    { HOSTX, { "tables", "public.kv@3[id]" } } },
	{ "a table section without keys is ignored",
	    PG "[table public.users]\n# nothing yet\n",
	    { HOSTX } },
};

static void
test_good_configs(void **state)
{
	for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
		const struct good_case *c = &good_cases[i];
		struct config *cfg = NULL;
		char *errors = NULL;

		tcase = c->name;
		if (parse(c->text, &cfg, &errors) != 0) {
			t_fail(__LINE__, "config_parse failed:\n%s", errors);
			CHECK(cfg == NULL);
			free(errors);
			continue;
		}
		CHECK(errors == NULL);
		CHECK(cfg != NULL);
		if (cfg != NULL)
			check_fields(cfg, c->expect);
		config_free(cfg);
	}
	t_done();
}

/* ------------------------------------------------------------------ */

#define MAXERR 8

struct bad_config {
	const char *name;
	const char *text;
	/* Every line of the report, in order. A line ending in '*' only
	 * has to start with what precedes it. */
	const char *errors[MAXERR];
};

/* The list of sections that follows grows with the daemon. */
#define UNKNOWN_SECTION "(expected [postgres], [redis], [daemon]*"
#define NOT_A_SETTING "not a setting (\"name = value\") nor a [section] header"
#define DURATION "a duration (such as 5, 2.5s or 500ms)"
#define NO_CONNINFO NAME ": conninfo is missing from [postgres]"
#define BAD_CONNINFO "is not a valid libpq connection string: "
#define NOT_SHOWN "; the value is not shown, as it may hold a password"

/* The report for template n of table t that begins with a column. */
#define WIDE_AT(at, t, n, pattern, name) NAME at "[table " t "] keys: " \
	"template " #n " begins with a {column}, so a truncate or reset of " \
	"the table would remove every key matching \"" pattern "\", other " \
	"applications' keys too; begin each template with fixed text (as in " \
	"\"" name ":{id}\"), or set allow_wide_sweep = yes in [table " t "] " \
	"if this Redis holds nothing else that matches"
#define WIDE(t, n, pattern, name) WIDE_AT(":4: ", t, n, pattern, name)

static const struct bad_config bad_configs[] = {
	{ "unknown section", PG "[foo]\nbar = 1\n",
	    { NAME ":4: unknown section [foo] " UNKNOWN_SECTION } },
	{ "section names are case-sensitive", "[Postgres]\nconninfo = host=x\n",
	    { NAME ":2: unknown section [Postgres] " UNKNOWN_SECTION,
		NO_CONNINFO } },
	{ "unknown key", PG "port = 5432\n",
	    { NAME ":3: unknown setting \"port\" in [postgres]" } },
	{ "key in the wrong section", "[redis]\nconninfo = host=x\n",
	    { NAME ":2: unknown setting \"conninfo\" in [redis]", NO_CONNINFO } },
	{ "key names are case-sensitive", PG "Channel = x\n",
	    { NAME ":3: unknown setting \"Channel\" in [postgres]" } },
	{ "key outside a section", "channel = x\n" PG,
	    { NAME ":1: \"channel\" is outside any section" } },
	{ "not name=value", PG "just some words\n",
	    { NAME ":3: " NOT_A_SETTING } },
	{ "two lines that are not settings", PG "foo\n\nbar\n",
	    { NAME ":3: " NOT_A_SETTING, NAME ":5: " NOT_A_SETTING } },
	{ "unclosed section header", PG "[daemon\nmax_queue = 5\n",
	    { NAME ":3: " NOT_A_SETTING,
		NAME ":4: unknown setting \"max_queue\" in [postgres]" } },
	{ "not a setting on the last line, no newline", PG "oops",
	    { NAME ":3: " NOT_A_SETTING } },
	{ "bad number", PG "[daemon]\nmax_queue = 10k\n",
	    { NAME ":4: max_queue in [daemon]: \"10k\" is not a whole number" } },
	{ "fraction for a count", PG "[daemon]\nmax_inflight = 1.5\n",
	    { NAME ":4: max_inflight in [daemon]: \"1.5\" is not a whole "
		"number" } },
	{ "duration for a count", PG "[daemon]\nmax_queue = 5s\n",
	    { NAME ":4: max_queue in [daemon]: \"5s\" is not a whole number" } },
	{ "exponent for a count", PG "[daemon]\nmax_queue = 1e3\n",
	    { NAME ":4: max_queue in [daemon]: \"1e3\" is not a whole number" } },
	{ "empty count", PG "[daemon]\nmax_queue =\n",
	    { NAME ":4: max_queue in [daemon]: \"\" is not a whole number" } },
	{ "NaN count", PG "[daemon]\nmax_queue = nan\n",
	    { NAME ":4: max_queue in [daemon]: \"nan\" is not a whole number" } },
	{ "bad duration unit", PG "connect_timeout = 5m\n",
	    { NAME ":3: connect_timeout in [postgres]: \"5m\" is not "
		DURATION } },
	{ "space before the unit", PG "connect_timeout = 5 s\n",
	    { NAME ":3: connect_timeout in [postgres]: \"5 s\" is not "
		DURATION } },
	{ "words for a duration", PG "[redis]\ncommand_timeout = fast\n",
	    { NAME ":4: command_timeout in [redis]: \"fast\" is not "
		DURATION } },
	{ "NaN duration", PG "[daemon]\nreconnect_min = nan\n",
	    { NAME ":4: reconnect_min in [daemon]: \"nan\" is not " DURATION } },
	{ "count out of range, low", PG "[daemon]\nmax_queue = 0\n",
	    { NAME ":4: max_queue in [daemon]: 0 is out of range (1 to 1e+08)" } },
	{ "count out of range, high", PG "[daemon]\nmax_queue = 100000001\n",
	    { NAME ":4: max_queue in [daemon]: 100000001 is out of range "
		"(1 to 1e+08)" } },
	{ "count far out of range", PG "[daemon]\nmax_inflight = 99999999999\n",
	    { NAME ":4: max_inflight in [daemon]: 99999999999 is out of range "
		"(1 to 1e+06)" } },
	{ "negative duration", PG "[daemon]\nshutdown_timeout = -1\n",
	    { NAME ":4: shutdown_timeout in [daemon]: -1 is out of range "
		"(0 to 3600)" } },
	{ "takeover_timeout too short", PG "[daemon]\ntakeover_timeout = 1\n",
	    { NAME ":4: takeover_timeout in [daemon]: 1 is out of range "
		"(2 to 3600)" } },
	{ "duration too short", PG "connect_timeout = 50ms\n",
	    { NAME ":3: connect_timeout in [postgres]: 50ms is out of range "
		"(0.1 to 3600)" } },
	{ "infinite duration", PG "[redis]\nconnect_timeout = inf\n",
	    { NAME ":4: connect_timeout in [redis]: inf is out of range "
		"(0.1 to 3600)" } },
	{ "bad log_level", PG "[daemon]\nlog_level = verbose\n",
	    { NAME ":4: log_level: \"verbose\" is not one of error, warn, info, "
		"debug" } },
	{ "log_level in capitals", PG "[daemon]\nlog_level = INFO\n",
	    { NAME ":4: log_level: \"INFO\" is not one of error, warn, info, "
		"debug" } },
	{ "bad action", PG "[redis]\naction = flush\n",
	    { NAME ":4: action: \"flush\" is not \"publish\" or \"delete\"" } },
	{ "empty string setting", PG "[redis]\nchannel =\n",
	    { NAME ":4: channel in [redis] is empty" } },
	{ "bad template", PG "[table public.users]\nkeys = user:{\n",
	    { NAME ":4: [table public.users] keys: unclosed '{' in \"user:{\"" } },
	{ "bad second template", PG "[table public.users]\nkeys = a:{id}, b:}\n",
	    { NAME ":4: [table public.users] keys: unmatched '}' in \"b:}\" "
		"(write '}}' for a literal brace)" } },
	{ "empty keys", PG "[table public.users]\nkeys =\n",
	    { NAME ":4: [table public.users] keys: empty key template" } },
	{ "table without schema", PG "[table users]\nkeys = user:{id}\n",
	    { NAME ":4: [table users]: name the schema too, as in "
		"[table public.users]" } },
	{ "table without a name", PG "[table]\nkeys = user:{id}\n",
	    { NAME ":4: [table] needs a name, such as [table public.users]" } },
	{ "table with a blank name", PG "[table   ]\nkeys = user:{id}\n",
	    { NAME ":4: [table] needs a name, such as [table public.users]" } },
	{ "unknown key in a table", PG "[table public.users]\nkey = user:{id}\n",
	    { NAME ":4: unknown setting \"key\" in [table public.users] "
		"(expected: keys, refresh, ttl, allow_wide_sweep)" } },
	{ "a template that begins with a column", PG "[table public.kv]\n"
	    "keys = {id}\n", { WIDE("public.kv", 1, "*", "kv") } },
	{ "a template that begins with two columns",
	    PG "[table s.t]\n\nkeys = t:{id}, {a}:{b}\n",
	    { WIDE_AT(":5: ", "s.t", 2, "*:*", "t") } },
	{ "every wide template is reported",
	    PG "[table s.t]\nkeys = {tenant}:user:{id}, {x}\n",
	    { WIDE("s.t", 1, "*:user:*", "t"), WIDE("s.t", 2, "*", "t") } },
	{ "allow_wide_sweep = no", PG "[table s.t]\nkeys = {id}\n"
	    "allow_wide_sweep = no\n", { WIDE("s.t", 1, "*", "t") } },
	{ "allow_wide_sweep is yes or no", PG "[table s.t]\nkeys = t:{id}\n"
	    "allow_wide_sweep = maybe\n",
	    { NAME ":5: allow_wide_sweep in [table s.t]: \"maybe\" is not yes "
		"or no" } },
	{ "keys twice in a table",
	    PG "[table public.users]\nkeys = a:{id}\nkeys = b:{id}\n",
	    { NAME ":5: [table public.users] has keys already (line 3); list "
		"all templates in one keys line" } },
	{ "a table in two sections",
	    PG "[table public.users]\nkeys = a:{id}\n\n[table public.users ]\n"
	    "keys = b:{id}\n",
	    { NAME ":7: [table public.users] has keys already (line 3); list "
		"all templates in one keys line" } },
	{ "missing conninfo", "[redis]\nurl = redis://h\n", { NO_CONNINFO } },
	{ "empty file", "", { NO_CONNINFO } },
	{ "only comments", "# nothing\n; here\n", { NO_CONNINFO } },
	{ "empty conninfo", "[postgres]\nconninfo =\n",
	    { NAME ":2: conninfo in [postgres] is empty" } },
	{ "invalid conninfo", "[postgres]\nconninfo = host=x bogus\n",
	    { NAME ":2: conninfo in [postgres] " BAD_CONNINFO "a word without "
		"\"=\" (write keyword=value pairs separated by spaces; quote a "
		"value with spaces: password='a b')" NOT_SHOWN } },
	{ "unknown conninfo option", "[postgres]\n\nconninfo = host=x nosuch=1\n",
	    { NAME ":3: conninfo in [postgres] " BAD_CONNINFO "an unknown "
		"keyword (see \"Parameter Key Words\" in the libpq "
		"documentation)" NOT_SHOWN } },
	{ "unterminated quote in conninfo", "[postgres]\nconninfo = host='x\n",
	    { NAME ":2: conninfo in [postgres] " BAD_CONNINFO "a quoted value "
		"that is not closed" NOT_SHOWN } },
	/* libpq's own messages quote the text, which may be the password. */
	{ "password cut by a space", "[postgres]\nconninfo = host=x "
	    "password=S3cr3t Pw\n",
	    { NAME ":2: conninfo in [postgres] " BAD_CONNINFO "a word without "
		"\"=\"*" } },
	{ "bad percent escape in a URI password", "[postgres]\nconninfo = "
	    "postgresql://u:S3cr3tPw%zz@h/db\n",
	    { NAME ":2: conninfo in [postgres] " BAD_CONNINFO "an invalid %XX "
		"escape (write a literal % as %25)" NOT_SHOWN } },
	{ "%00 in a URI password", "[postgres]\nconninfo = "
	    "postgresql://u:S3cr3t%00@h/db\n",
	    { NAME ":2: conninfo in [postgres] " BAD_CONNINFO "%00 in a value"
		NOT_SHOWN } },
	{ "bad URI query", "[postgres]\nconninfo = postgresql://h/db?"
	    "password\n",
	    { NAME ":2: conninfo in [postgres] " BAD_CONNINFO "a malformed or "
		"unknown URI query parameter*" } },
	{ "bad IPv6 host in a URI", "[postgres]\nconninfo = "
	    "postgresql://u:S3cr3t@[::1/db\n",
	    { NAME ":2: conninfo in [postgres] " BAD_CONNINFO "a malformed "
		"[IPv6] host in the URI" NOT_SHOWN } },
	{ "a '/' in a URI password", "[postgres]\nconninfo = "
	    "postgresql://u:S3cr/3t@h/db\n",
	    { NAME ":2: conninfo in [postgres]: the URI has an '@' after its "
		"first '/'; percent-encode a '/' in the user name or password "
		"as %2F" } },
	{ "bad [apply] conninfo", PG "[apply]\nconninfo = host=x S3cr3t\n",
	    { NAME ":4: conninfo in [apply] " BAD_CONNINFO "a word without "
		"\"=\"*" } },
	{ "a password in a name without '='", PG "password x:S3cr3t\n",
	    { NAME ":3: unknown setting \"password\"... in [postgres]" } },
	{ "reconnect_min above reconnect_max",
	    PG "[daemon]\nreconnect_min = 10\nreconnect_max = 5\n",
	    { NAME ": [daemon] reconnect_min is above reconnect_max" } },
	{ "reconnect_min above the default maximum",
	    PG "[daemon]\nreconnect_min = 31s\n",
	    { NAME ": [daemon] reconnect_min is above reconnect_max" } },
	{ "bad redis url", PG "[redis]\nurl = http://x\n",
	    { NAME ":4: [redis] url: expected redis://[user:password@]host[:port]"
		"[/db] or unix:/path (rediss:// needs a TLS proxy, see the "
		"README)" } },
	{ "bad redis port", PG "[redis]\nurl = redis://h:99999\n",
	    { NAME ":4: [redis] url: bad port" } },
	{ "a '/' in a redis password", PG "[redis]\nurl = redis://:S3/cr3t@h\n",
	    { NAME ":4: [redis] url: an '@' after the first '/': percent-encode "
		"a '/' in the user name or password as %2F" } },
	{ "many errors, one per line",
	    "[postgres]\n"			/* 1 */
	    "conninfo = host=x bogus\n"		/* 2 */
	    "port = 5\n"			/* 3 */
	    "[daemon]\n"			/* 4 */
	    "max_queue = lots\n"		/* 5 */
	    "log_level = loud\n"		/* 6 */
	    "junk line\n"			/* 7 */
	    "[table users]\n"			/* 8 */
	    "keys = u:{id}\n"			/* 9 */
	    "[redis]\n"				/* 10 */
	    "action = nuke\n"			/* 11 */
	    "url = redis://\n",			/* 12 */
	    { NAME ":2: conninfo in [postgres] " BAD_CONNINFO "a word without*",
		NAME ":3: unknown setting \"port\" in [postgres]",
		NAME ":5: max_queue in [daemon]: \"lots\" is not a whole number",
		NAME ":6: log_level: \"loud\" is not one of error, warn, info, "
		    "debug",
		NAME ":7: " NOT_A_SETTING,
		NAME ":9: [table users]: name the schema too, as in "
		    "[table public.users]",
		NAME ":11: action: \"nuke\" is not \"publish\" or \"delete\"",
		NAME ":12: [redis] url: no host name" } },
};

/* Compares a report with the expected lines. */
static void
check_errors(const char *errors, const char *const *want)
{
	const char *p = errors;
	size_t n = 0;

	if (errors == NULL) {
		t_fail(__LINE__, "no error report");
		return;
	}
	for (; n < MAXERR && want[n] != NULL; n++) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		size_t wlen = strlen(want[n]);
		bool prefix = wlen > 0 && want[n][wlen - 1] == '*';

		if (*p == '\0' && (n > 0 || len == 0)) {
			t_fail(__LINE__, "report ends before line %zu \"%s\"", n + 1,
			    want[n]);
			return;
		}
		if (prefix ? len < wlen - 1 || memcmp(p, want[n], wlen - 1) != 0 :
		    len != wlen || memcmp(p, want[n], wlen) != 0)
			t_fail(__LINE__, "report line %zu is\n    \"%.*s\", want\n"
			    "    \"%s\"", n + 1, (int)len, p, want[n]);
		p = nl ? nl + 1 : p + len;
	}
	if (*p != '\0')
		t_fail(__LINE__, "more in the report than expected:\n%s", p);
	/* One line per problem: no trailing newline, no empty line. */
	if (strstr(errors, "\n\n") != NULL ||
	    errors[0] == '\0' || errors[strlen(errors) - 1] == '\n')
		t_fail(__LINE__, "badly formed report:\n%s", errors);
}

static void
test_bad_configs(void **state)
{
	for (size_t i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++) {
		const struct bad_config *c = &bad_configs[i];
		struct config *cfg = (struct config *)&cfg;
		char *errors = NULL;

		tcase = c->name;
		if (parse(c->text, &cfg, &errors) != -1) {
			t_fail(__LINE__, "config_parse accepted it");
			config_free(cfg);
			continue;
		}
		CHECK(cfg == NULL);
		check_errors(errors, c->errors);
		/* The cases' passwords all contain "S3cr". */
		CHECK(errors == NULL || strstr(errors, "S3cr") == NULL);
		free(errors);
	}
	t_done();
}

/* ------------------------------------------------------------------ */
/* Long lines: inih reads them in pieces, line numbers must not drift. */

static char *
long_config(size_t n, const char *before, const char *after)
{
	struct buf b = { 0 };

	buf_adds(&b, before);
	for (size_t i = 0; i < n; i++)
		buf_addc(&b, (char)('a' + i % 26));
	buf_adds(&b, after);
	return buf_steal(&b);
}

struct long_case {
	const char *name;
	const char *before;
	size_t n;		/* generated bytes */
	const char *after;
	const char *error;	/* NULL: the file is good */
	size_t conninfo_len;	/* on success */
};

static const struct long_case long_cases[] = {
	{ "conninfo of 1000+ bytes",
	    "[postgres]\nconninfo = host=x application_name=", 1200, "\n",
	    NULL, 1200 + 24 },
	{ "conninfo of 60000 bytes",
	    "[postgres]\nconninfo = host=x application_name=", 60000, "\n",
	    NULL, 60000 + 24 },
	{ "line numbers after a long conninfo",
	    "[postgres]\nconninfo = host=x application_name=", 3000,
	    "\n[daemon]\nbogus = 1\n",
	    NAME ":4: unknown setting \"bogus\" in [daemon]", 0 },
	{ "line numbers after a long comment",
	    "# ", 5000, "\n" PG "\nbogus = 1\n",
	    NAME ":5: unknown setting \"bogus\" in [postgres]", 0 },
	{ "a long section header", "[table public.t", 300,
	    "]\nkeys = k:{\n" PG,
	    NULL, 0 },
	{ "a long line that is not a setting", PG "[daemon]\n", 4000,
	    "\nmax_queue = x\n",
	    NAME ":4: " NOT_A_SETTING, 0 },
};

static void
test_long_lines(void **state)
{
	for (size_t i = 0; i < sizeof(long_cases) / sizeof(long_cases[0]); i++) {
		const struct long_case *c = &long_cases[i];
		char *text = long_config(c->n, c->before, c->after);
		struct config *cfg = NULL;
		char *errors = NULL;
		int rc;

		tcase = c->name;
		rc = parse(text, &cfg, &errors);
		if (c->error != NULL) {
			CHECK(rc == -1);
			if (errors != NULL && strncmp(errors, c->error,
			    strlen(c->error)) != 0)
				t_fail(__LINE__, "report is \"%s\", want \"%s\"...",
				    errors, c->error);
		} else if (c->conninfo_len == 0) {
			/* The long header names the table in full, so its
			 * bad template is reported with the whole name. */
			char want[512];

			snprintf(want, sizeof(want), NAME ":2: [table public.t%.300s] "
			    "keys: unclosed '{' in \"k:{\"", text + 15);
			CHECK(rc == -1);
			if (errors != NULL)
				CHECK_STR(errors, want);
		} else {
			CHECK(rc == 0);
			if (rc == 0) {
				CHECK(strlen(cfg->pg_conninfo) == c->conninfo_len);
				CHECK(strstr(text, cfg->pg_conninfo) != NULL);
			} else {
				t_fail(__LINE__, "%s", errors);
			}
		}
		config_free(cfg);
		free(errors);
		free(text);
	}
	t_done();
}

/* ------------------------------------------------------------------ */

struct url_case {
	const char *url;
	int rc;
	const char *host, *unix_path;
	int port, db;
	const char *user, *password, *where;
	const char *err;	/* the whole message, when rc is -1 */
};

static const struct url_case url_cases[] = {
	{ "redis://h:1234/2", 0, "h", NULL, 1234, 2, NULL, NULL, "h:1234", NULL },
	{ "redis://h", 0, "h", NULL, 6379, 0, NULL, NULL, "h:6379", NULL },
	{ "redis://h/", 0, "h", NULL, 6379, 0, NULL, NULL, "h:6379", NULL },
	{ "redis://127.0.0.1:6379/0", 0, "127.0.0.1", NULL, 6379, 0, NULL,
	    NULL, "127.0.0.1:6379", NULL },
	{ "redis://h:65535/15", 0, "h", NULL, 65535, 15, NULL, NULL, "h:65535",
	    NULL },
	{ "redis://h:1", 0, "h", NULL, 1, 0, NULL, NULL, "h:1", NULL },
	{ "redis://user:p%40ss@h/0", 0, "h", NULL, 6379, 0, "user", "p@ss",
	    "h:6379", NULL },
	{ "redis://:secret@h", 0, "h", NULL, 6379, 0, NULL, "secret", "h:6379",
	    NULL },
	{ "redis://secret@h:7000", 0, "h", NULL, 7000, 0, NULL, "secret",
	    "h:7000", NULL },
	{ "redis://u:a@b@h:1/3", 0, "h", NULL, 1, 3, "u", "a@b", "h:1", NULL },
	{ "redis://u%3Ax:p%2fq%3a%25@h", 0, "h", NULL, 6379, 0, "u:x",
	    "p/q:%", "h:6379", NULL },
	{ "redis://u:%zz%4@h", 0, "h", NULL, 6379, 0, "u", "%zz%4", "h:6379",
	    NULL },
	{ "redis://u:@h", 0, "h", NULL, 6379, 0, "u", "", "h:6379", NULL },
	{ "redis://[::1]:6380", 0, "::1", NULL, 6380, 0, NULL, NULL,
	    "[::1]:6380", NULL },
	{ "redis://[::1]", 0, "::1", NULL, 6379, 0, NULL, NULL, "[::1]:6379",
	    NULL },
	{ "redis://u:p@[fe80::1]:1/4", 0, "fe80::1", NULL, 1, 4, "u", "p",
	    "[fe80::1]:1", NULL },
	{ "unix:/run/r.sock", 0, NULL, "/run/r.sock", 6379, 0, NULL, NULL,
	    "/run/r.sock", NULL },
	{ "unix:///run/r.sock", 0, NULL, "/run/r.sock", 6379, 0, NULL, NULL,
	    "/run/r.sock", NULL },
	{ "http://x", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: expected redis://[user:password@]host[:port][/db] or "
	    "unix:/path (rediss:// needs a TLS proxy, see the README)" },
	{ "rediss://h", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: expected redis://[user:password@]host[:port][/db] or "
	    "unix:/path (rediss:// needs a TLS proxy, see the README)" },
	{ "", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: expected redis://[user:password@]host[:port][/db] or "
	    "unix:/path (rediss:// needs a TLS proxy, see the README)" },
	{ "redis://h:0", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: bad port" },
	{ "redis://h:99999", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: bad port" },
	{ "redis://h:65536", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: bad port" },
	{ "redis://h:", -1, NULL, NULL, 0, 0, NULL, NULL, NULL, "url: bad port" },
	{ "redis://h:-1", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: bad port" },
	{ "redis://h:12ab/0", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: bad port" },
	{ "redis://h:99999999999999999999", -1, NULL, NULL, 0, 0, NULL, NULL,
	    NULL, "url: bad port" },
	{ "redis://h/x", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: the database number after the '/' is not a whole number "
	    "from 0" },
	{ "redis://h/-1", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: the database number after the '/' is not a whole number "
	    "from 0" },
	{ "redis://h/1x", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: the database number after the '/' is not a whole number "
	    "from 0" },
	{ "redis://h/99999999999", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: the database number after the '/' is not a whole number "
	    "from 0" },
	{ "redis://", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: no host name" },
	/* The password must not reach the message, whole or in part. */
	{ "redis://h/MyRedisS3cret@x", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: an '@' after the first '/': percent-encode a '/' in the user "
	    "name or password as %2F" },
	{ "redis://:My/S3cret@h:1/0", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: an '@' after the first '/': percent-encode a '/' in the user "
	    "name or password as %2F" },
	{ "redis://u:My%2FS3cret@h/0", 0, "h", NULL, 6379, 0, "u", "My/S3cret",
	    "h:6379", NULL },
	{ "redis:///0", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: no host name" },
	{ "redis://:pw@", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: no host name" },
	{ "redis://:6379", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: no host name" },
	{ "redis://[]:1", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: no host name" },
	{ "redis://[::1", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: unclosed '[' in the host" },
	{ "redis://[::1]6380", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: unexpected text after ']' in the host" },
	{ "redis://[::1]x:1/0", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: unexpected text after ']' in the host" },
	{ "unix:relative", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: a unix socket needs an absolute path, as in "
	    "unix:/run/redis/redis.sock" },
	{ "unix://relative/r.sock", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: a unix socket needs an absolute path, as in "
	    "unix:/run/redis/redis.sock" },
	{ "unix:", -1, NULL, NULL, 0, 0, NULL, NULL, NULL,
	    "url: a unix socket needs an absolute path, as in "
	    "unix:/run/redis/redis.sock" },
};

static void
test_redis_urls(void **state)
{
	/* One struct for all: each parse replaces the previous result. */
	struct config *cfg = calloc(1, sizeof(*cfg));

	assert_non_null(cfg);
	for (size_t i = 0; i < sizeof(url_cases) / sizeof(url_cases[0]); i++) {
		const struct url_case *c = &url_cases[i];
		char err[256] = "";
		int rc;

		tcase = c->url;
		rc = config_parse_redis_url(cfg, c->url, err, sizeof(err));
		if (rc != c->rc) {
			t_fail(__LINE__, "rc %d, want %d (err \"%s\")", rc, c->rc,
			    err);
			continue;
		}
		if (rc == -1) {
			CHECK_STR(err, c->err);
			continue;
		}
		CHECK_STR(err, "");
		CHECK_STR(cfg->redis.host, c->host);
		CHECK_STR(cfg->redis.unix_path, c->unix_path);
		CHECK(cfg->redis.port == c->port);
		CHECK(cfg->redis.db == c->db);
		CHECK_STR(cfg->redis.user, c->user);
		CHECK_STR(cfg->redis.password, c->password);
		CHECK_STR(cfg->redis.where, c->where);
	}
	config_free(cfg);
	t_done();
}

/* ------------------------------------------------------------------ */

static char *
write_temp(const char *text)
{
	const char *dir = getenv("TMPDIR");
	char *path;
	int fd;
	size_t len = strlen(text);

	if (dir == NULL || *dir == '\0')
		dir = "/tmp";
	path = malloc(strlen(dir) + 32);
	assert_non_null(path);
	sprintf(path, "%s/test_config.XXXXXX", dir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
	return path;
}

struct load_case {
	const char *name;
	const char *text;	/* NULL: a path that does not exist */
	int rc;
	const char *error;	/* after "PATH", when rc is -1 */
};

static const struct load_case load_cases[] = {
	{ "good file", PG "[table public.users]\nkeys = user:{id}\n", 0, NULL },
	{ "bad file", PG "[daemon]\nmax_queue = many\n", -1,
	    ":4: max_queue in [daemon]: \"many\" is not a whole number" },
	{ "empty file", "", -1, ": conninfo is missing from [postgres]" },
	{ "missing file", NULL, -1,
	    ": cannot open: No such file or directory" },
};

static void
test_load(void **state)
{
	for (size_t i = 0; i < sizeof(load_cases) / sizeof(load_cases[0]); i++) {
		const struct load_case *c = &load_cases[i];
		char *path = c->text ? write_temp(c->text) :
		    strdup("/nonexistent/pginval/test.conf");
		struct config *cfg = (struct config *)&cfg;
		char *errors = NULL;
		int rc;

		tcase = c->name;
		rc = config_load(path, &cfg, &errors);
		CHECK(rc == c->rc);
		if (rc == 0) {
			CHECK(errors == NULL);
			CHECK_STR(cfg->path, path);
			CHECK_STR(cfg->pg_conninfo, "host=x");
			CHECK(config_table(cfg, "public.users") != NULL);
			config_free(cfg);
		} else {
			struct buf want = { 0 };

			CHECK(cfg == NULL);
			buf_adds(&want, path);
			buf_adds(&want, c->error);
			CHECK_STR(errors, want.data);
			buf_free(&want);
		}
		free(errors);
		if (c->text != NULL)
			unlink(path);
		free(path);
	}
	t_done();
}

/* Loading a directory is a read error, not an empty file. */
static void
test_load_directory(void **state)
{
	struct config *cfg;
	char *errors;

	assert_int_equal(config_load("/", &cfg, &errors), -1);
	assert_null(cfg);
	assert_string_equal(errors, "/: cannot read: Is a directory");
	free(errors);
}

/* ------------------------------------------------------------------ */

struct lookup_case {
	const char *table;
	int index;		/* in cfg->tables, or -1 */
	const char *columns;
};

static const struct lookup_case lookup_cases[] = {
	{ "public.users", 0, "id, email" },
	{ "shop.orders", 1, "id" },
	{ "public.users_archive", 2, "id" },
	{ "public.user", -1, NULL },
	{ "public.users ", -1, NULL },
	{ "Public.Users", -1, NULL },
	{ "users", -1, NULL },
	{ "public.orders", -1, NULL },
	{ "", -1, NULL },
};

static void
test_config_table(void **state)
{
	struct config *cfg;
	char *errors = NULL;

	if (parse(PG "[table public.users]\nkeys = user:{id}, e:{email}\n"
	    "[table shop.orders]\nkeys = order:{id}\n"
	    "[table public.users_archive]\nkeys = old:{id}\n",
	    &cfg, &errors) != 0)
		fail_msg("config_parse: %s", errors);
	assert_int_equal(cfg->ntables, 3);
	for (size_t i = 0; i < sizeof(lookup_cases) / sizeof(lookup_cases[0]); i++) {
		const struct lookup_case *c = &lookup_cases[i];
		const struct table_rule *t = config_table(cfg, c->table);

		tcase = c->table;
		if (c->index < 0) {
			CHECK(t == NULL);
			continue;
		}
		CHECK(t == &cfg->tables[c->index]);
		if (t != NULL) {
			CHECK_STR(t->name, c->table);
			CHECK_STR(rules_columns(t->rules), c->columns);
		}
	}
	config_free(cfg);
	t_done();
}

/* The same text always gives the same result: no state leaks from one
 * parse into the next (inih's settings are global). */
static void
test_parse_repeatable(void **state)
{
	static const char *const texts[] = {
		"[postgres]\nconninfo = host=a\n[table a.b]\nkeys = k:{id}\n",
		"[daemon]\nnope\n",
		"[postgres]\nconninfo = host=b;c\n",
	};

	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
			struct config *cfg;
			char *errors;
			int rc = parse(texts[i], &cfg, &errors);

			assert_int_equal(rc, i == 1 ? -1 : 0);
			if (rc == 0) {
				assert_string_equal(cfg->pg_conninfo,
				    i == 0 ? "host=a" : "host=b;c");
				assert_int_equal(cfg->ntables, i == 0 ? 1 : 0);
				config_free(cfg);
			} else {
				assert_string_equal(errors, NAME ":2: "
				    NOT_A_SETTING "\n" NO_CONNINFO);
				free(errors);
			}
		}
}

/* The default slot of a channel: readable when the channel is, and never
 * the same for two channels. */
static void
test_slot_names(void **state)
{
	static const char *const channels[] = {
		"a-b", "a_b", "Foo", "foo", "we\"ird\\cha'n", "",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2",
	};
	char names[8][64];

	(void)state;
	config_slot_name("pginval", names[0]);
	assert_string_equal(names[0], "pginval_pginval");
	config_slot_name("orders_2", names[0]);
	assert_string_equal(names[0], "pginval_orders_2");
	for (size_t i = 0; i < 8; i++) {
		config_slot_name(channels[i], names[i]);
		assert_true(strlen(names[i]) <= 63);
		assert_int_equal(strspn(names[i], "abcdefghijklmnopqrstuvwxyz"
		    "0123456789_"), strlen(names[i]));
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(names[i], names[j]);
	}
	assert_int_equal(strncmp(names[0], "pginval_a_b_", 12), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_configs),
		cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_redis_urls),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_load_directory),
		cmocka_unit_test(test_config_table),
		cmocka_unit_test(test_parse_repeatable),
		cmocka_unit_test(test_slot_names),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
