/*
 * Reference relay for the benchmarks: LISTEN on a PostgreSQL channel and
 * PUBLISH every notification's payload, verbatim, to a Redis channel,
 * pipelined (a batch of appended commands, then their replies in bulk).
 * No parsing, no keys, no reconnects: the practical limit of "read from
 * PostgreSQL, write to Redis".
 *
 *   refrelay CONNINFO PG_CHANNEL REDIS_HOST REDIS_PORT REDIS_CHANNEL
 *
 * Prints "listening" once both connections are up.
 */
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 1000	/* commands in flight, as pginval's max_inflight */

int
main(int argc, char **argv)
{
	PGconn *pg;
	redisContext *rc;
	char *ident, sql[160];
	PGnotify *n;

	if (argc != 6) {
		fprintf(stderr, "usage: refrelay CONNINFO PG_CHANNEL REDIS_HOST "
		    "REDIS_PORT REDIS_CHANNEL\n");
		return 2;
	}
	pg = PQconnectdb(argv[1]);
	rc = redisConnect(argv[3], atoi(argv[4]));
	if (PQstatus(pg) != CONNECTION_OK || rc == NULL || rc->err) {
		fprintf(stderr, "refrelay: cannot connect\n");
		return 1;
	}
	ident = PQescapeIdentifier(pg, argv[2], strlen(argv[2]));
	snprintf(sql, sizeof(sql), "LISTEN %s", ident);
	if (PQresultStatus(PQexec(pg, sql)) != PGRES_COMMAND_OK)
		return 1;
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		struct pollfd pfd = { .fd = PQsocket(pg), .events = POLLIN };
		int pending = 0;
		void *reply;

		while (pending < BATCH && (n = PQnotifies(pg)) != NULL) {
			redisAppendCommand(rc, "PUBLISH %s %b", argv[5], n->extra,
			    strlen(n->extra));
			PQfreemem(n);
			pending++;
		}
		for (int i = 0; i < pending; i++) {
			if (redisGetReply(rc, &reply) != REDIS_OK)
				return 1;
			freeReplyObject(reply);
		}
		/* A short batch took all that was parsed: wait for more. */
		if (pending < BATCH && poll(&pfd, 1, -1) < 0)
			return 1;
		if (!PQconsumeInput(pg))
			return 1;
	}
}
