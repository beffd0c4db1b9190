/*
 * sd_notify without libsystemd: the protocol is one AF_UNIX datagram, and
 * the socket may be in the abstract namespace (a leading '@').
 */
#include "sd_notify.h"
#include "log.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct sockaddr_un sd_addr;
static socklen_t sd_addrlen;
static double sd_watchdog;

void
sd_notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	size_t len;

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
	}
	if (usec != NULL && (pid == NULL || atol(pid) == (long)getpid()))
		sd_watchdog = atof(usec) / 1e6 / 2;
}

bool
sd_notify_enabled(void)
{
	return sd_addrlen > 0;
}

int
sd_notify_send(const char *msg)
{
	int fd, rc = 0;

	if (sd_addrlen == 0)
		return 0;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, msg, strlen(msg), MSG_NOSIGNAL,
	    (struct sockaddr *)&sd_addr, sd_addrlen) < 0) {
		log_warn("systemd notify socket");
		rc = -1;
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

double
sd_notify_watchdog_interval(void)
{
	return sd_watchdog;
}
