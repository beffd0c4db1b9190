/*
 * Socket options (sock.h).
 */
#include "lib/sock.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

void
sock_keepalive(int fd, double interval)
{
	int on = 1, idle = interval >= 2 ? (int)interval : 2;
	int intvl = idle / 3 > 0 ? idle / 3 : 1, cnt = 3;
	unsigned timeout = (unsigned)(idle + intvl * cnt) * 1000;

	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout,
	    sizeof(timeout));
}
