/*
 * The messages of the Redis sink: what one holds, how much memory, and
 * how row messages of the same table merge while they wait. Pure.
 */
#include "run/sink_msg.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

struct sink_msg *
sink_msg_new(void)
{
	return xcalloc(1, sizeof(struct sink_msg));
}

size_t
sink_msg_size(const struct sink_msg *m)
{
	return sizeof(*m) + m->body.cap + m->rows.cap + m->keys.data.cap +
	    m->keys.cap * 2 * sizeof(size_t) + m->patterns.data.cap;
}

void
sink_msg_free(struct sink_msg *m)
{
	if (m == NULL)
		return;
	buf_free(&m->body);
	free(m->table);
	keys_free(&m->keys);
	buf_free(&m->rows);
	keys_free(&m->patterns);
	free(m);
}

bool
sink_msg_mergeable(const struct sink_msg *a, const struct sink_msg *b,
    size_t max_keys)
{
	return a->op != NULL && a->op == b->op && a->on_ack == b->on_ack &&
	    a->unlinking == 0 && !a->unlinked &&
	    a->ack_arg == b->ack_arg && (a->nrows == 0) == (b->nrows == 0) &&
	    strcmp(a->table, b->table) == 0 &&
	    a->keys.n + b->keys.n <= max_keys;
}

void
sink_msg_merge(struct sink_msg *a, const struct sink_msg *b)
{
	for (size_t i = 0; i < b->keys.n; i++) {
		size_t len;
		const char *k = keys_get(&b->keys, i, &len);

		keys_add(&a->keys, k, len);
	}
	if (b->nrows > 0) {
		buf_addc(&a->rows, ',');
		buf_add(&a->rows, b->rows.data, b->rows.len);
	}
	a->nrows += b->nrows;
	a->nacks += b->nacks;
	if (b->ts < a->ts)
		a->ts = b->ts;
}
