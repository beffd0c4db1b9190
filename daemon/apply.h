/*
 * pginval apply: the subscriber daemon in the same binary. It SUBSCRIBEs
 * to the channel and, for every message, invalidates the keys in each
 * target Redis (UNLINK plus an invalidation marker that stale cache fills
 * respect), refreshes them instead where a table has a refresh query, and
 * turns truncates, resets and sequence gaps into sweeps of the tables'
 * key patterns. See README, "Subscribers: pginval apply".
 *
 * Like `pginval tail`, it has its own entry point; it owns its libev loop
 * and its signals the way `pginval run` does in main.c.
 */
#ifndef PGINVAL_APPLY_H
#define PGINVAL_APPLY_H

#include <stdio.h>

/* argv[0] is "apply". Returns the exit status. */
int apply_main(int argc, char **argv);
void apply_usage(FILE *f);

#endif
