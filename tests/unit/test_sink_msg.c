/*
 * Unit tests for daemon/run/sink_msg.c: which row messages may merge
 * while they wait, and what a merge leaves (keys without duplicates, rows
 * in order, counts added up, the earliest change time), and messages
 * without row images.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../daemon/run/sink_msg.h"

#include "tcheck.h"

static void ack_a(void *arg) { (void)arg; }
static void ack_b(void *arg) { (void)arg; }

static const char op_update[] = "update", op_delete[] = "delete";

/* A row message of table with keys ("k1 k2"), as the relay makes one. */
static struct sink_msg *
msg(const char *op, const char *table, const char *keys, int64_t ts)
{
	struct sink_msg *m = sink_msg_new();
	char copy[64];

	m->op = op;
	m->table = table ? strdup(table) : NULL;
	m->ts = ts;
	m->nrows = 1;
	m->nacks = 1;
	buf_adds(&m->rows, "{}");
	snprintf(copy, sizeof(copy), "%s", keys);
	for (char *k = strtok(copy, " "); k != NULL; k = strtok(NULL, " "))
		keys_add(&m->keys, k, strlen(k));
	return m;
}

static void
test_mergeable(void **state)
{
	static const struct {
		const char *name;
		const char *op_b, *table_b, *keys_b;
		bool other_ack;
		size_t max_keys;
		bool want;
	} cases[] = {
		{ "same table and op", op_update, "t", "k3", false, 10, true },
		{ "other op", op_delete, "t", "k3", false, 10, false },
		{ "other table", op_update, "u", "k3", false, 10, false },
		{ "other acknowledgement", op_update, "t", "k3", true, 10, false },
		{ "at the key limit", op_update, "t", "k3", false, 3, true },
		{ "over the key limit", op_update, "t", "k3 k4", false, 3, false },
		{ "not a row message", NULL, "t", "", false, 10, false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sink_msg *a = msg(op_update, "t", "k1 k2", 5);
		struct sink_msg *b = msg(cases[i].op_b, cases[i].table_b,
		    cases[i].keys_b, 5);

		tcase = cases[i].name;
		a->on_ack = ack_a;
		b->on_ack = cases[i].other_ack ? ack_b : ack_a;
		CHECK(sink_msg_mergeable(a, b, cases[i].max_keys) ==
		    cases[i].want);
		/* A reset (no op) takes nothing in. */
		a->op = NULL;
		CHECK(!sink_msg_mergeable(a, b, cases[i].max_keys));
		sink_msg_free(a);
		sink_msg_free(b);
	}
	t_done();
}

static void
test_merge(void **state)
{
	struct sink_msg *a = msg(op_update, "t", "k1 k2", 7);
	struct sink_msg *b = msg(op_update, "t", "k2 k3", 4);
	size_t before = sink_msg_size(a), len;
	const char *k;

	(void)state;
	sink_msg_merge(a, b);
	tcase = "keys without duplicates, in order";
	CHECK_INT(a->keys.n, 3);
	k = keys_get(&a->keys, 2, &len);
	CHECK(len == 2 && memcmp(k, "k3", 2) == 0);
	tcase = "rows joined";
	CHECK_STR(a->rows.data, "{},{}");
	CHECK_INT(a->nrows, 2);
	tcase = "acknowledgements added up";
	CHECK_INT(a->nacks, 2);
	tcase = "the earliest change time";
	CHECK_INT(a->ts, 4);
	tcase = "the size (capacities) does not shrink";
	CHECK(sink_msg_size(a) >= before);
	sink_msg_free(a);
	sink_msg_free(b);
	sink_msg_free(NULL);
	t_done();
}

/* Without row images ([redis] rows = off): such messages merge with each
 * other only, and stay without them. */
static void
test_rowless(void **state)
{
	struct sink_msg *a = msg(op_update, "t", "k1", 7);
	struct sink_msg *b = msg(op_update, "t", "k2", 4);
	struct sink_msg *c = msg(op_update, "t", "k3", 4);

	(void)state;
	buf_reset(&a->rows);
	a->nrows = 0;
	buf_reset(&b->rows);
	b->nrows = 0;
	tcase = "rowless with one with rows";
	CHECK(!sink_msg_mergeable(a, c, 10));
	CHECK(!sink_msg_mergeable(c, a, 10));
	tcase = "rowless with rowless";
	CHECK(sink_msg_mergeable(a, b, 10));
	sink_msg_merge(a, b);
	CHECK_INT(a->keys.n, 2);
	CHECK_INT(a->nrows, 0);
	CHECK_INT(a->rows.len, 0);
	sink_msg_free(a);
	sink_msg_free(b);
	sink_msg_free(c);
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mergeable),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_rowless),
	};

	return cmocka_run_group_tests_name("sink_msg", tests, NULL, NULL);
}
