/*
 * A minimal HTTP/1.0 responder on the daemon's loop, for /metrics and
 * /healthz: one GET per connection, answered and closed. It is not a web
 * server; requests larger than 8 KiB or slower than 5 s are dropped. Idle
 * clients cannot lock a probe out: one address holds at most 8
 * connections, and at the limit the oldest silent one makes room. Running
 * out of descriptors pauses accepting instead of spinning.
 */
#ifndef PGINVAL_HTTP_H
#define PGINVAL_HTTP_H

#include <stddef.h>

#include "lib/buf.h"

struct ev_loop;
struct http_server;

struct http_response {
	int status;			/* 200 unless the handler says otherwise */
	const char *content_type;	/* static string */
	struct buf body;
};

/* Fills res for a GET of path (without the query string). */
typedef void http_handler(void *arg, const char *path,
    struct http_response *res);

struct http_server *http_server_new(struct ev_loop *loop,
    http_handler *handler, void *arg);
/* Listens on "host:port" ("[v6]:port"). Returns -1 with err on failure. */
int http_server_listen(struct http_server *s, const char *addr, char *err,
    size_t errlen) __attribute__((warn_unused_result));
void http_server_free(struct http_server *s);

/* Splits "host:port" or "[host]:port"; -1 if malformed. Pure. */
int http_split_addr(const char *addr, char *host, size_t hostlen,
    char *port, size_t portlen) __attribute__((warn_unused_result));

#endif
