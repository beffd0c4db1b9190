/*
 * Unit tests for daemon/lib/fifo.c: push and pop order, counts, and
 * fifo_prepend() (what was in flight goes back ahead of what waits) with
 * either side empty.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../daemon/lib/fifo.h"

#include "tcheck.h"

struct item {
	struct fifo_node node;	/* first, as fifo.h requires */
	int v;
};

static struct item items[16];

/* Pushes the values of s ("123") onto q. */
static void
fill(struct fifo *q, const char *s)
{
	for (; *s != '\0'; s++) {
		struct item *it = &items[*s - '0'];

		it->v = *s - '0';
		fifo_push(q, &it->node);
	}
}

/* Pops everything, as a string of values. */
static const char *
drain(struct fifo *q, char *out)
{
	struct fifo_node *e;
	size_t n = 0;

	while ((e = fifo_pop(q)) != NULL) {
		CHECK(e->next == NULL);
		out[n++] = (char)('0' + ((struct item *)e)->v);
	}
	out[n] = '\0';
	return out;
}

struct prepend_case {
	const char *name;
	const char *to, *from;	/* pushed in this order */
	const char *want;
};

static const struct prepend_case prepend_cases[] = {
	{ "both empty", "", "", "" },
	{ "nothing to put back", "45", "", "45" },
	{ "nothing waiting", "", "123", "123" },
	{ "in flight goes first", "45", "123", "12345" },
	{ "one and one", "2", "1", "12" },
};

static void
test_prepend(void **state)
{
	for (size_t i = 0; i < sizeof(prepend_cases) /
	    sizeof(prepend_cases[0]); i++) {
		const struct prepend_case *c = &prepend_cases[i];
		struct fifo to = { 0 }, from = { 0 };
		char got[32], want[32];

		tcase = c->name;
		fill(&to, c->to);
		fill(&from, c->from);
		fifo_prepend(&to, &from);
		CHECK_INT(to.n, strlen(c->want));
		CHECK(from.head == NULL && from.tail == NULL && from.n == 0);
		/* The tail is right: a push after the splice goes last. */
		fill(&to, "9");
		snprintf(want, sizeof(want), "%s9", c->want);
		CHECK_STR(drain(&to, got), want);
		CHECK_INT(to.n, 0);
		CHECK(to.head == NULL && to.tail == NULL);
	}
	t_done();
}

static void
test_order(void **state)
{
	struct fifo q = { 0 };
	char got[32];

	tcase = "empty";
	CHECK(fifo_pop(&q) == NULL);
	CHECK_INT(q.n, 0);
	tcase = "first in, first out";
	fill(&q, "123");
	CHECK_INT(q.n, 3);
	CHECK(((struct item *)fifo_pop(&q))->v == 1);
	CHECK_INT(q.n, 2);
	tcase = "push after pop";
	fill(&q, "4");
	CHECK_STR(drain(&q, got), "234");
	tcase = "reusable when emptied";
	fill(&q, "56");
	CHECK_STR(drain(&q, got), "56");
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_prepend),
	};

	return cmocka_run_group_tests_name("fifo", tests, NULL, NULL);
}
