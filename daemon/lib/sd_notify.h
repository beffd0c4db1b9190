/*
 * The systemd notification protocol, spoken directly: one datagram per
 * message to the socket in $NOTIFY_SOCKET. Without that variable every
 * call does nothing, so the daemon runs the same under any supervisor.
 *
 * Sending never blocks: when the socket's queue is full (a busy PID 1),
 * what could not be sent is kept, merged, and sent by the next call or
 * sd_notify_flush(). What is kept is the latest state (READY=1,
 * RELOADING=1 or STOPPING=1: systemd acts on the last one it reads), the
 * latest STATUS= line and a WATCHDOG=1, so nothing systemd needs is lost.
 */
#ifndef PGINVAL_SD_NOTIFY_H
#define PGINVAL_SD_NOTIFY_H

#include <stdbool.h>

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. */
void sd_notify_init(void);
bool sd_notify_enabled(void);
/* Sends msg, e.g. "READY=1\nSTATUS=listening", with whatever was kept
 * from earlier calls. Returns 0 when sent, -1 when kept for later. */
int sd_notify_send(const char *msg);
/* Sends what was kept; 0 when nothing is left. */
int sd_notify_flush(void);
bool sd_notify_pending(void);
/* Seconds between WATCHDOG=1 pings (half the watchdog timeout), or 0 when
 * systemd does not watch this process. */
double sd_notify_watchdog_interval(void);
/* Closes the socket. */
void sd_notify_close(void);

#endif
