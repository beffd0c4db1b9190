/*
 * Socket options shared by the links to servers. Knows nothing of
 * pginval.
 */
#ifndef PGINVAL_SOCK_H
#define PGINVAL_SOCK_H

/*
 * TCP keepalive after interval seconds idle (at least 2), probing three
 * times a third of that apart, and TCP_USER_TIMEOUT to match, so that a
 * peer that vanished is found on an idle link, and on one whose writes
 * go unacknowledged. Failures are ignored: it only speeds up detection.
 */
void sock_keepalive(int fd, double interval);

#endif
