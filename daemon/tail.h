/*
 * pginval tail: subscribe to the channel and print one line per message,
 * for operators. A small blocking client; it shares nothing with the
 * daemon but the configuration parser.
 */
#ifndef PGINVAL_TAIL_H
#define PGINVAL_TAIL_H

#include <stdio.h>

int tail_main(int argc, char **argv);
void tail_usage(FILE *f);

#endif
