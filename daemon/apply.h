/*
 * pginval apply: the subscriber daemon in the same binary. It SUBSCRIBEs
 * to the channel and, for every message, invalidates the keys in each
 * target Redis (UNLINK plus an invalidation marker that stale cache fills
 * respect), refreshes them instead where a table has a refresh query, and
 * turns truncates, resets and sequence gaps into sweeps of the tables'
 * key patterns. See README, "Subscribers: pginval apply".
 *
 * This is its policy, on the loop it is given; apply_main.c is the
 * command around it (arguments, the loop, signals, the metrics listener),
 * the way main.c is for `pginval run`.
 */
#ifndef PGINVAL_APPLY_H
#define PGINVAL_APPLY_H

#include <stdbool.h>
#include <stdio.h>

struct config;
struct ev_loop;
struct http_response;
struct apply;

/* argv[0] is "apply". Returns the exit status. */
int apply_main(int argc, char **argv);
void apply_usage(FILE *f);

/* Connects to the targets and subscribes; takes ownership of cfg. */
struct apply *apply_new(struct ev_loop *loop, struct config *cfg);
/* Closes every connection and logs the totals. */
void apply_free(struct apply *a);
/* Stops taking messages (a shutdown); what is queued is still sent. */
void apply_unsubscribe(struct apply *a);
/* Commands or refreshes still unacknowledged. */
bool apply_busy(const struct apply *a);
/* A reload: takes ownership of cfg. Tables, refresh queries, limits and
 * timeouts apply at once; what needs a restart is logged. */
void apply_reload(struct apply *a, struct config *cfg);
const struct config *apply_config(const struct apply *a);
/* Answers /metrics and /healthz. */
void apply_http(struct apply *a, const char *path, struct http_response *res);

#endif
