/*
 * sd_notify without libsystemd: the protocol is one AF_UNIX datagram, and
 * the socket may be in the abstract namespace (a leading '@'). One
 * non-blocking socket is opened at start; a datagram that finds the
 * queue full is not waited for but kept (see sd_notify.h), since a
 * blocked send would freeze the whole loop.
 */
#include "lib/sd_notify.h"
#include "lib/log.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SD_LINE_MAX 512

static struct sockaddr_un sd_addr;
static socklen_t sd_addrlen;
static int sd_fd = -1;
static double sd_watchdog;

/* Kept until sent: one state line (with its MONOTONIC_USEC=), the last
 * STATUS= and a watchdog ping. */
static char sd_state[SD_LINE_MAX], sd_status[SD_LINE_MAX];
static bool sd_ping;
static bool sd_stuck;		/* the last send failed; said so once */

void
sd_notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	size_t len;

	sd_notify_close();
	sd_addrlen = 0;
	sd_watchdog = 0;
	if (path != NULL && (path[0] == '/' || path[0] == '@') &&
	    (len = strlen(path)) < sizeof(sd_addr.sun_path)) {
		memset(&sd_addr, 0, sizeof(sd_addr));
		sd_addr.sun_family = AF_UNIX;
		memcpy(sd_addr.sun_path, path, len);
		if (path[0] == '@')
			sd_addr.sun_path[0] = '\0';
		sd_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
		    len + (path[0] == '/'));
		sd_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (sd_fd < 0)
			log_warn("systemd: cannot open a socket for NOTIFY_SOCKET");
	}
	if (usec != NULL && (pid == NULL || atol(pid) == (long)getpid()))
		sd_watchdog = atof(usec) / 1e6 / 2;
}

bool
sd_notify_enabled(void)
{
	return sd_addrlen > 0;
}

bool
sd_notify_pending(void)
{
	return sd_state[0] != '\0' || sd_status[0] != '\0' || sd_ping;
}

/* Adds the lines of msg to what is kept; later lines replace earlier. */
static void
sd_notify_merge(const char *msg)
{
	const char *p = msg, *nl;
	size_t n, have;

	for (; *p != '\0'; p = *nl ? nl + 1 : nl) {
		nl = strchr(p, '\n');
		if (nl == NULL)
			nl = p + strlen(p);
		n = (size_t)(nl - p);
		if (n == 0 || n >= SD_LINE_MAX)
			continue;
		if (strncmp(p, "WATCHDOG=1", n) == 0 && n == 10) {
			sd_ping = true;
		} else if (strncmp(p, "STATUS=", 7) == 0) {
			memcpy(sd_status, p, n);
			sd_status[n] = '\0';
		} else if (strncmp(p, "MONOTONIC_USEC=", 15) == 0) {
			/* Belongs to the RELOADING=1 before it. */
			have = strlen(sd_state);
			if (have + 1 + n < sizeof(sd_state))
				snprintf(sd_state + have, sizeof(sd_state) - have,
				    "\n%.*s", (int)n, p);
		} else {
			memcpy(sd_state, p, n);
			sd_state[n] = '\0';
		}
	}
}

int
sd_notify_flush(void)
{
	char dgram[3 * SD_LINE_MAX];

	if (sd_addrlen == 0 || !sd_notify_pending())
		return 0;
	if (sd_fd < 0)
		return -1;
	snprintf(dgram, sizeof(dgram), "%s%s%s%s%s", sd_state,
	    sd_state[0] && sd_status[0] ? "\n" : "", sd_status,
	    sd_ping && (sd_state[0] || sd_status[0]) ? "\n" : "",
	    sd_ping ? "WATCHDOG=1" : "");
	if (sendto(sd_fd, dgram, strlen(dgram), MSG_DONTWAIT | MSG_NOSIGNAL,
	    (struct sockaddr *)&sd_addr, sd_addrlen) < 0) {
		if (!sd_stuck)
			log_warn("systemd: cannot send to NOTIFY_SOCKET (is the "
			    "service manager busy?); keeping the latest state "
			    "to send again");
		sd_stuck = true;
		return -1;
	}
	if (sd_stuck)
		log_info("systemd: NOTIFY_SOCKET takes messages again; sent "
		    "the latest state");
	sd_stuck = false;
	sd_state[0] = sd_status[0] = '\0';
	sd_ping = false;
	return 0;
}

int
sd_notify_send(const char *msg)
{
	if (sd_addrlen == 0)
		return 0;
	sd_notify_merge(msg);
	return sd_notify_flush();
}

double
sd_notify_watchdog_interval(void)
{
	return sd_watchdog;
}

void
sd_notify_close(void)
{
	if (sd_fd >= 0)
		close(sd_fd);
	sd_fd = -1;
}
