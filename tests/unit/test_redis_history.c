/*
 * Unit tests for daemon/lib/redis_history.c: INFO and ROLE as Redis
 * 7.0.15 sends them, and the continuity rule on every situation of the
 * design note's table, run for real: a plain reconnect, restarts without
 * data, from an older snapshot and after SHUTDOWN SAVE, a master that
 * never had a replica, a graceful failover and a promoted replica that
 * missed writes. The replies showed the ids' first digits; the rest of
 * each id is filler.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../daemon/lib/redis_history.h"

#include "tcheck.h"
#include "resp_notation.h"

/* INFO server replication from a 7.0.15 master without replicas. */
static const char info_real[] =
	"# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n"
	"redis_git_dirty:0\r\nredis_build_id:ae4d7c971a948f0\r\n"
	"redis_mode:cluster\r\nos:Linux x86_64\r\narch_bits:64\r\n"
	"monotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\n"
	"atomicvar_api:c11-builtin\r\ngcc_version:12.2.0\r\n"
	"process_id:23413\r\nprocess_supervised:no\r\n"
	"run_id:7d507ff40b7defb794c55ab9cb366d03777e379e\r\n"
	"tcp_port:30194\r\nserver_time_usec:1796412686052628\r\n"
	"uptime_in_seconds:7\r\nuptime_in_days:0\r\nhz:10\r\n"
	"configured_hz:10\r\nlru_clock:1250573\r\nexecutable:/usr/bin/"
	"redis-server\r\nconfig_file:\r\nio_threads_active:0\r\n\r\n"
	"# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"
	"master_failover_state:no-failover\r\n"
	"master_replid:65c9f0a565e0570550a049a79ef4db46f41a2c2d\r\n"
	"master_replid2:0000000000000000000000000000000000000000\r\n"
	"master_repl_offset:0\r\nsecond_repl_offset:-1\r\n"
	"repl_backlog_active:0\r\nrepl_backlog_size:1048576\r\n"
	"repl_backlog_first_byte_offset:0\r\nrepl_backlog_histlen:0\r\n\r\n";

#define RUN "7d507ff40b7defb794c55ab9cb366d03777e379e"
#define REPLID "65c9f0a565e0570550a049a79ef4db46f41a2c2d"
#define ZERO "0000000000000000000000000000000000000000"

static void
test_info_real(void **state)
{
	struct redis_node_info in;

	(void)state;
	assert_int_equal(redis_info_parse(info_real, sizeof(info_real) - 1,
	    &in), 0);
	CHECK_STR(in.run_id, RUN);
	CHECK_STR(in.replid, REPLID);
	CHECK_STR(in.replid2, ZERO);
	CHECK_INT(in.offset, 0);
	CHECK_INT(in.second_offset, -1);
	CHECK(in.master);
	t_done();
}

static void
test_info_cases(void **state)
{
	static const struct {
		const char *name, *text;
		int rc;
		bool master;
		long long offset, second;
	} cases[] = {
		{ "replica, \\n only", "run_id:" RUN "\nrole:slave\n"
		    "master_host:127.0.0.1\nmaster_replid:" REPLID "\n"
		    "master_replid2:" ZERO "\nmaster_repl_offset:2070\n"
		    "second_repl_offset:-1", 0, false, 2070, -1 },
		{ "no final newline", "run_id:" RUN "\r\nrole:master\r\n"
		    "master_replid:" REPLID "\r\nmaster_replid2:" REPLID "\r\n"
		    "master_repl_offset:130\r\nsecond_repl_offset:131", 0, true,
		    130, 131 },
		{ "no run_id", "role:master\nmaster_replid:" REPLID "\n"
		    "master_replid2:" ZERO "\nmaster_repl_offset:0\n"
		    "second_repl_offset:-1\n", -1, false, 0, 0 },
		{ "no second offset", "run_id:" RUN "\nrole:master\n"
		    "master_replid:" REPLID "\nmaster_replid2:" ZERO "\n"
		    "master_repl_offset:0\n", -1, false, 0, 0 },
		{ "short id", "run_id:7d50\nrole:master\nmaster_replid:" REPLID
		    "\nmaster_replid2:" ZERO "\nmaster_repl_offset:0\n"
		    "second_repl_offset:-1\n", -1, false, 0, 0 },
		{ "id not hex", "run_id:" RUN "\nrole:master\nmaster_replid:"
		    "zzc9f0a565e0570550a049a79ef4db46f41a2c2d\n"
		    "master_replid2:" ZERO "\nmaster_repl_offset:0\n"
		    "second_repl_offset:-1\n", -1, false, 0, 0 },
		{ "role sentinel", "run_id:" RUN "\nrole:sentinel\n"
		    "master_replid:" REPLID "\nmaster_replid2:" ZERO "\n"
		    "master_repl_offset:0\nsecond_repl_offset:-1\n", -1, false,
		    0, 0 },
		{ "negative offset", "run_id:" RUN "\nrole:master\n"
		    "master_replid:" REPLID "\nmaster_replid2:" ZERO "\n"
		    "master_repl_offset:-1\nsecond_repl_offset:-1\n", -1, false,
		    0, 0 },
		{ "second -2", "run_id:" RUN "\nrole:master\nmaster_replid:"
		    REPLID "\nmaster_replid2:" ZERO "\nmaster_repl_offset:1\n"
		    "second_repl_offset:-2\n", -1, false, 0, 0 },
		{ "offset text", "run_id:" RUN "\nrole:master\nmaster_replid:"
		    REPLID "\nmaster_replid2:" ZERO "\nmaster_repl_offset:1x\n"
		    "second_repl_offset:-1\n", -1, false, 0, 0 },
		{ "offset huge", "run_id:" RUN "\nrole:master\nmaster_replid:"
		    REPLID "\nmaster_replid2:" ZERO "\nmaster_repl_offset:"
		    "99999999999999999999\nsecond_repl_offset:-1\n", -1, false,
		    0, 0 },
		{ "offset empty", "run_id:" RUN "\nrole:master\nmaster_replid:"
		    REPLID "\nmaster_replid2:" ZERO "\nmaster_repl_offset:\n"
		    "second_repl_offset:-1\n", -1, false, 0, 0 },
		{ "twice", "run_id:" RUN "\nrun_id:" RUN "\nrole:master\n"
		    "master_replid:" REPLID "\nmaster_replid2:" ZERO "\n"
		    "master_repl_offset:0\nsecond_repl_offset:-1\n", -1, false,
		    0, 0 },
		{ "empty", "", -1, false, 0, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].text);
		char *copy = malloc(len + 1);	/* no NUL read past len */
		struct redis_node_info in;

		memcpy(copy, cases[i].text, len);
		tcase = cases[i].name;
		CHECK_INT(redis_info_parse(copy, len, &in), cases[i].rc);
		if (cases[i].rc == 0) {
			CHECK_INT(in.master, cases[i].master);
			CHECK_INT(in.offset, cases[i].offset);
			CHECK_INT(in.second_offset, cases[i].second);
		}
		free(copy);
	}
	t_done();
}

static void
test_role(void **state)
{
	static const struct {
		const char *name, *spec;
		int rc;
		bool master;
		long long offset;
	} cases[] = {
		/* Real ROLE replies of 7.0.15. */
		{ "master", "[\"master\", 599, [[\"127.0.0.1\", \"34619\", "
		    "\"599\"]]]", 0, true, 599 },
		{ "master alone", "[\"master\", 2874, []]", 0, true, 2874 },
		{ "replica", "[\"slave\", \"127.0.0.1\", 56398, \"connected\", "
		    "2070]", 0, false, 2070 },
		{ "replica syncing", "[\"slave\", \"127.0.0.1\", 56398, "
		    "\"sync\", -1]", 0, false, -1 },
		{ "sentinel", "[\"sentinel\", [\"mymaster\"]]", -1, false, 0 },
		{ "error", "!\"NOAUTH Authentication required.\"", -1, false,
		    0 },
		{ "master offset string", "[\"master\", \"599\", []]", -1, false,
		    0 },
		{ "master negative", "[\"master\", -1, []]", -1, false, 0 },
		{ "replica short", "[\"slave\", \"127.0.0.1\", 56398]", -1,
		    false, 0 },
		{ "empty", "[]", -1, false, 0 },
		{ "one", "[\"master\"]", -1, false, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redisReply *r = resp(cases[i].spec);
		bool master = !cases[i].master;
		long long offset = 12345;

		tcase = cases[i].name;
		CHECK_INT(redis_role_offset(r, &master, &offset), cases[i].rc);
		if (cases[i].rc == 0) {
			CHECK_INT(master, cases[i].master);
			CHECK_INT(offset, cases[i].offset);
		}
		freeReplyObject(r);
	}
	tcase = "NULL";
	{
		bool m;
		long long o;

		CHECK_INT(redis_role_offset(NULL, &m, &o), -1);
	}
	t_done();
}

/* A 40-digit id from the first digits a reply showed; "0" is all zeros. */
static void
make_id(char out[41], const char *prefix)
{
	static const char fill[] = "5c2e81d09f4a7b3c6d1e0f2a9b8c7d6e5f4a3b2c";
	size_t n = strlen(prefix);

	if (strcmp(prefix, "0") == 0) {
		memset(out, '0', 40);
	} else {
		memcpy(out, prefix, n);
		memcpy(out + n, fill + n, 40 - n);
	}
	out[40] = '\0';
}

/*
 * known: run_id/replid/confirmed before (NULL run: nothing known); now:
 * what INFO said after. Values from the real runs; where the table shows
 * no value (an id before a restart, say) a made-up one stands in.
 */
static const struct history_case {
	const char *name;
	const char *k_run, *k_replid;
	long long k_confirmed;
	const char *run, *replid, *replid2;
	long long offset, second;
	enum redis_history_verdict verdict;
	const char *why;
} history_cases[] = {
	{ "first contact", NULL, NULL, 0,
	    "aab7", "b0a7", "3ad2", 130, 131,
	    REDIS_HISTORY_FIRST, "first contact" },
	{ "plain reconnect", "aab7", "b0a7", 130,
	    "aab7", "b0a7", "3ad2", 140, 131,
	    REDIS_HISTORY_SAME, "same process" },
	{ "A: restart, no data", "3dc1", "e1f0", 42,
	    "5aa9", "793c", "0", 0, -1,
	    REDIS_HISTORY_BROKEN, "restarted without replication history" },
	{ "B: restart from an older RDB", "d2ab", "449b", 134,
	    "34be", "23dd", "449b", 50, 51,
	    REDIS_HISTORY_BROKEN, "offset went back from 134 to 50" },
	{ "SHUTDOWN SAVE restart", "61c0", "3ad2", 93,
	    "aab7", "b0a7", "3ad2", 130, 131,
	    REDIS_HISTORY_CONTINUED, "continues" },
	{ "master that never had a replica", "9e12", "4b7a", 0,
	    "c3d4", "a0e1", "0", 0, -1,
	    REDIS_HISTORY_BROKEN, "restarted without replication history" },
	{ "graceful CLUSTER FAILOVER", "2f6e", "d7b3", 599,
	    "90ab", "5591", "d7b3", 599, 600,
	    REDIS_HISTORY_CONTINUED, "from offset 599" },
	{ "failover one write short", "2f6e", "d7b3", 600,
	    "90ab", "5591", "d7b3", 599, 600,
	    REDIS_HISTORY_BROKEN, "offset went back from 600 to 599" },
	{ "C: promoted replica that missed writes", "4e5f", "b0a7", 265,
	    "71c2", "c41d", "b0a7", 181, 182,
	    REDIS_HISTORY_BROKEN, "offset went back from 265 to 181" },
	{ "another node of the shard, in sync", "aab7", "b0a7", 130,
	    "5d9e", "b0a7", "3ad2", 130, 131,
	    REDIS_HISTORY_CONTINUED, "run_id changed" },
	{ "same history, offset back", "aab7", "b0a7", 130,
	    "5d9e", "b0a7", "3ad2", 120, 131,
	    REDIS_HISTORY_BROKEN, "offset went back from 130 to 120" },
	{ "two failovers unseen", "2f6e", "d7b3", 599,
	    "c9d0", "e2e2", "5591", 700, 650,
	    REDIS_HISTORY_BROKEN, "run_id changed and replication id is new" },
	{ "new history, same process", "aab7", "b0a7", 130,
	    "aab7", "c41d", "0", 130, -1,
	    REDIS_HISTORY_BROKEN, "replication id changed" },
};

static void
history_setup(const struct history_case *c, struct redis_history *h,
    struct redis_node_info *now)
{
	memset(h, 0, sizeof(*h));
	memset(now, 0, sizeof(*now));
	if (c->k_run != NULL) {
		h->known = true;
		make_id(h->run_id, c->k_run);
		make_id(h->replid, c->k_replid);
		h->confirmed = c->k_confirmed;
	}
	make_id(now->run_id, c->run);
	make_id(now->replid, c->replid);
	make_id(now->replid2, c->replid2);
	now->offset = c->offset;
	now->second_offset = c->second;
	now->master = true;
}

/* The reason never shows more than an id's first 8 digits. */
static void
check_short_ids(const char *why, const char *id)
{
	char nine[10];

	if (strlen(id) < 9)
		return;		/* nothing known */
	memcpy(nine, id, 9);
	nine[9] = '\0';
	if (strcmp(nine, "000000000") != 0 && strstr(why, nine) != NULL)
		t_fail(__LINE__, "\"%s\" shows more than 8 digits of %s", why,
		    id);
}

static void
test_history_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(history_cases) / sizeof(history_cases[0]);
	    i++) {
		const struct history_case *c = &history_cases[i];
		struct redis_history h;
		struct redis_node_info now;
		char why[256] = "";
		enum redis_history_verdict v;

		tcase = c->name;
		history_setup(c, &h, &now);
		v = redis_history_check(&h, &now, why, sizeof(why));
		if (v != c->verdict)
			t_fail(__LINE__, "verdict %s, want %s (%s)",
			    redis_history_name(v), redis_history_name(c->verdict),
			    why);
		if (strstr(why, c->why) == NULL)
			t_fail(__LINE__, "why \"%s\", want \"%s\"", why, c->why);
		check_short_ids(why, h.run_id);
		check_short_ids(why, h.replid);
		check_short_ids(why, now.run_id);
		check_short_ids(why, now.replid);
		check_short_ids(why, now.replid2);
		CHECK_INT(redis_history_check(&h, &now, NULL, 0), c->verdict);
		/* Then the node is what is known, and a reconnect is quiet. */
		redis_history_learn(&h, &now);
		CHECK_INT(redis_history_check(&h, &now, why, sizeof(why)),
		    REDIS_HISTORY_SAME);
	}
	t_done();
}

static void
test_history_confirm(void **state)
{
	struct redis_history h = { 0 };
	struct redis_node_info before, after;
	char why[16];

	(void)state;
	/* Case C as it happened: connected at 181, confirmed up to 265 by
	 * ROLE after writes, then the replica that stopped at 181 took
	 * over. */
	memset(&before, 0, sizeof(before));
	make_id(before.run_id, "4e5f");
	make_id(before.replid, "b0a7");
	make_id(before.replid2, "0");
	before.offset = 181;
	before.second_offset = -1;
	before.master = true;
	after = before;
	make_id(after.run_id, "71c2");
	make_id(after.replid, "c41d");
	make_id(after.replid2, "b0a7");
	after.second_offset = 182;

	tcase = "case C";
	CHECK_INT(redis_history_check(&h, &before, NULL, 0),
	    REDIS_HISTORY_FIRST);
	redis_history_learn(&h, &before);
	CHECK_INT(h.confirmed, 181);
	CHECK_INT(redis_history_check(&h, &after, NULL, 0),
	    REDIS_HISTORY_CONTINUED);	/* nothing confirmed past 181 yet */
	redis_history_confirm(&h, 265, 0);
	CHECK_INT(h.confirmed, 265);
	/* A short buffer cuts the reason, and the verdict stands. */
	CHECK_INT(redis_history_check(&h, &after, why, sizeof(why)),
	    REDIS_HISTORY_BROKEN);
	CHECK_INT(strlen(why), sizeof(why) - 1);
	redis_history_learn(&h, &after);
	CHECK_STR(h.replid, after.replid);
	CHECK_INT(h.confirmed, 181);
	CHECK_INT(redis_history_check(&h, &after, NULL, 0), REDIS_HISTORY_SAME);
	t_done();
}

/* Checkpoints: which mark a node that forgot still holds. */
static void
test_history_marks(void **state)
{
	struct redis_history h = { 0 };
	struct redis_node_info n, back, promoted, fresh;

	(void)state;
	memset(&n, 0, sizeof(n));
	make_id(n.run_id, "4e5f");
	make_id(n.replid, "b0a7");
	make_id(n.replid2, "0");
	n.offset = 100;
	n.second_offset = -1;
	n.master = true;
	redis_history_learn(&h, &n);
	tcase = "marks";
	/* Offsets 110, 120, ... with marks 1, 2, ...; a mark seen again
	 * keeps its first (lowest) offset, and 0 is no mark. */
	for (long long i = 1; i <= 10; i++)
		redis_history_confirm(&h, 100 + 10 * i, (uint64_t)i);
	redis_history_confirm(&h, 205, 10);
	redis_history_confirm(&h, 210, 0);
	CHECK_INT(h.nmarks, 10);
	CHECK_INT(h.confirmed, 210);

	/* A restart from a snapshot at offset 145: marks 1-4 held. */
	back = n;
	make_id(back.run_id, "71c2");
	back.offset = 145;
	CHECK_INT(redis_history_kept(&h, &back), 4);
	CHECK_INT(h.nmarks, 4);		/* 5-10 are gone: 146+ is rewritten */
	/* Then again, before all of them. */
	back.offset = 105;
	CHECK_INT(redis_history_kept(&h, &back), 0);
	CHECK_INT(h.nmarks, 0);

	/* A replica promoted at 131 (held up to 130): mark 3. */
	memset(&h, 0, sizeof(h));
	redis_history_learn(&h, &n);
	for (long long i = 1; i <= 10; i++)
		redis_history_confirm(&h, 100 + 10 * i, (uint64_t)i);
	promoted = n;
	make_id(promoted.run_id, "99aa");
	make_id(promoted.replid, "c41d");
	make_id(promoted.replid2, "b0a7");
	promoted.offset = 500;
	promoted.second_offset = 131;
	CHECK_INT(redis_history_kept(&h, &promoted), 3);

	/* A restart without data holds no mark at all. */
	fresh = n;
	make_id(fresh.run_id, "1234");
	make_id(fresh.replid, "d00d");
	fresh.offset = 0;
	CHECK_INT(redis_history_kept(&h, &fresh), 0);

	/* Full: they thin out with age, the first and newest stay, the
	 * order holds. */
	memset(&h, 0, sizeof(h));
	redis_history_learn(&h, &n);
	for (long long i = 1; i <= 1000; i++)
		redis_history_confirm(&h, 100 + i, (uint64_t)i);
	CHECK_INT(h.nmarks <= REDIS_HISTORY_MARKS, 1);
	CHECK_INT(h.marks[h.nmarks - 1].mark, 1000);
	for (size_t i = 1; i < h.nmarks; i++)
		CHECK_INT(h.marks[i - 1].mark < h.marks[i].mark, 1);
	CHECK_INT(h.marks[0].mark, 1);
	CHECK_INT(h.marks[1].mark < 500, 1);	/* far back */
	back.offset = 150;
	CHECK_INT(redis_history_kept(&h, &back) <= 50, 1);
	CHECK_INT(redis_history_kept(&h, &back) >= 1, 1);
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_info_real),
		cmocka_unit_test(test_info_cases),
		cmocka_unit_test(test_role),
		cmocka_unit_test(test_history_table),
		cmocka_unit_test(test_history_confirm),
		cmocka_unit_test(test_history_marks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
