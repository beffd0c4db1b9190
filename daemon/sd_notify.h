/*
 * The systemd notification protocol, spoken directly: one datagram per
 * message to the socket in $NOTIFY_SOCKET. Without that variable every
 * call does nothing, so the daemon runs the same under any supervisor.
 */
#ifndef PGINVAL_SD_NOTIFY_H
#define PGINVAL_SD_NOTIFY_H

#include <stdbool.h>

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. */
void sd_notify_init(void);
bool sd_notify_enabled(void);
/* Sends msg, e.g. "READY=1\nSTATUS=listening". Returns -1 on error. */
int sd_notify_send(const char *msg);
/* Seconds between WATCHDOG=1 pings (half the watchdog timeout), or 0 when
 * systemd does not watch this process. */
double sd_notify_watchdog_interval(void);

#endif
