/*
 * The commands of the relay: `pginval run`, the daemon, on the shell
 * (shell.h), and `pginval check`, which validates a configuration the way
 * the shell loads it and, with --connect, the servers (check.h).
 */
#ifndef PGINVAL_RUN_MAIN_H
#define PGINVAL_RUN_MAIN_H

/* argv[0] is the command's name. Each returns the exit status. */
int run_main(int argc, char **argv);
int check_main(int argc, char **argv);

#endif
