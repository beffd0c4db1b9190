"""Cache-aside with pginval's fill guard, for redis-py (Debian: python3-redis).

This is the recipe of the README ("Subscribers: pginval apply"), tested
end to end by tests/recipes/test_recipes.py and used by the readers of
tests/consistency/run.py.

    cache = GuardedCache(redis.Redis(), open(".../fill.lua").read())
    user = cache.get(b"user:42", lambda: db_read_user(42))
"""

MARKER_PREFIX = b"pginval:m:"


def crc16(data):
    """CRC16-CCITT (XMODEM), the checksum of Redis Cluster slots."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def hash_tag(key):
    """The bytes between the first '{' and the next '}', or None."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return None


def key_slot(key):
    tag = hash_tag(key)
    return crc16(key if tag is None else tag) & 16383


_borrowed = {}


def marker_key(key):
    """The name of key's invalidation marker, in key's hash slot."""
    if isinstance(key, str):
        key = key.encode()
    tag = hash_tag(key)
    if tag is not None:
        return MARKER_PREFIX + b"{" + tag + b"}:" + key
    if key and b"}" not in key:
        return MARKER_PREFIX + b"{" + key + b"}"
    # A tag cannot hold '}' nor be empty: borrow the smallest number
    # whose slot is the key's.
    slot = key_slot(key)
    if slot not in _borrowed:
        n = 0
        while crc16(str(n).encode()) & 16383 != slot:
            n += 1
        _borrowed[slot] = str(n).encode()
    return MARKER_PREFIX + b"{" + _borrowed[slot] + b"}:" + key


class GuardedCache:
    """Reads through Redis; fills only when no invalidation overtook the
    read (pginval_fill). ``stats`` counts hits, misses, fills, refusals."""

    def __init__(self, r, fill_lua, ttl_ms=60000, max_age_ms=10000):
        self.r = r
        self.fill = r.register_script(fill_lua)   # EVALSHA, loads on NOSCRIPT
        self.ttl_ms = ttl_ms
        self.max_age_ms = max_age_ms
        self.stats = {"hits": 0, "misses": 0, "fills": 0, "refused": 0}

    def get(self, key, load):
        value = self.r.get(key)
        if value is not None:
            self.stats["hits"] += 1
            return value
        self.stats["misses"] += 1
        seconds, micros = self.r.time()        # before the read, Redis's clock
        started = seconds * 1000000 + micros
        value = load()                         # read PostgreSQL
        if value is not None:
            stored = self.fill(keys=[key, marker_key(key)],
                               args=[value, self.ttl_ms, started,
                                     self.max_age_ms])
            self.stats["fills" if stored == 1 else "refused"] += 1
        return value


class PlainCache(GuardedCache):
    """The classic cache-aside without the guard (plain SET), for
    comparison: it stores whatever it read, however late."""

    def get(self, key, load):
        value = self.r.get(key)
        if value is not None:
            self.stats["hits"] += 1
            return value
        self.stats["misses"] += 1
        value = load()
        if value is not None:
            self.r.set(key, value, px=self.ttl_ms)
            self.stats["fills"] += 1
        return value
