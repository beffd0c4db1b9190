/*
 * What Redis Sentinel says, parsed: the reply to SENTINEL
 * get-master-addr-by-name, and the payload of a +switch-master message.
 * Pure; knows nothing of pginval. Fuzzed (tests/fuzz/fuzz_redis_sentinel.c).
 */
#ifndef PGINVAL_REDIS_SENTINEL_REPLY_H
#define PGINVAL_REDIS_SENTINEL_REPLY_H

#include <stddef.h>

struct redisReply;

/*
 * ["host", "port"] (the port is a bulk string) into host (hostlen bytes,
 * NUL-terminated) and port: 0. -1 with why for nil (the sentinel does not
 * know the name), an error reply (its text) or anything else.
 */
int redis_sentinel_parse_addr(const struct redisReply *r, char *host,
    size_t hostlen, int *port, char *why, size_t whylen)
    __attribute__((warn_unused_result));
/*
 * "<name> <old-ip> <old-port> <new-ip> <new-port>" (p, len bytes; not
 * NUL-terminated): 0 with the new address when name is master, else -1
 * (another master's switch, or not such a payload).
 */
int redis_sentinel_parse_switch(const char *p, size_t len, const char *master,
    char *host, size_t hostlen, int *port)
    __attribute__((warn_unused_result));

#endif
