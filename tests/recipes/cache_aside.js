// Cache-aside with pginval's fill guard, for ioredis. The README's Node
// recipe ("Subscribers: pginval apply"), tested by test_recipes.py.
//
//   const cache = new GuardedCache(new Redis(), fs.readFileSync(".../fill.lua", "utf8"));
//   const user = await cache.get("user:42", () => dbReadUser(42));
"use strict";

const PREFIX = Buffer.from("pginval:m:");

function crc16(buf) {
  let crc = 0;
  for (const byte of buf) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++)
      crc = (crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1) & 0xffff;
  }
  return crc;
}

function hashTag(key) {
  const start = key.indexOf(0x7b); // '{'
  if (start >= 0) {
    const end = key.indexOf(0x7d, start + 1); // '}'
    if (end > start + 1) return key.subarray(start + 1, end);
  }
  return null;
}

const keySlot = (key) => crc16(hashTag(key) || key) & 16383;
const borrowed = new Map();

// The name of key's invalidation marker, in key's hash slot.
function markerKey(key) {
  key = Buffer.from(key);
  const tag = hashTag(key);
  if (tag) return Buffer.concat([PREFIX, Buffer.from("{"), tag, Buffer.from("}:"), key]);
  if (key.length > 0 && key.indexOf(0x7d) < 0)
    return Buffer.concat([PREFIX, Buffer.from("{"), key, Buffer.from("}")]);
  // A tag cannot hold '}' nor be empty: borrow the smallest number whose
  // slot is the key's.
  const slot = keySlot(key);
  if (!borrowed.has(slot)) {
    let n = 0;
    while ((crc16(Buffer.from(String(n))) & 16383) !== slot) n++;
    borrowed.set(slot, Buffer.from(String(n)));
  }
  return Buffer.concat([PREFIX, Buffer.from("{"), borrowed.get(slot), Buffer.from("}:"), key]);
}

class GuardedCache {
  constructor(redis, fillLua, { ttlMs = 60000, maxAgeMs = 10000 } = {}) {
    this.redis = redis;
    this.ttlMs = ttlMs;
    this.maxAgeMs = maxAgeMs;
    // EVALSHA, with EVAL when the script is not loaded.
    redis.defineCommand("pginvalFill", { numberOfKeys: 2, lua: fillLua });
    this.stats = { hits: 0, misses: 0, fills: 0, refused: 0 };
  }

  async get(key, load) {
    const cached = await this.redis.getBuffer(key);
    if (cached !== null) {
      this.stats.hits++;
      return cached;
    }
    this.stats.misses++;
    const [seconds, micros] = await this.redis.time(); // before the read
    const started = BigInt(seconds) * 1000000n + BigInt(micros);
    const value = await load(); // read PostgreSQL
    if (value !== null && value !== undefined) {
      const stored = await this.redis.pginvalFill(key, markerKey(key), value,
        this.ttlMs, started.toString(), this.maxAgeMs);
      this.stats[stored === 1 ? "fills" : "refused"]++;
    }
    return value;
  }
}

module.exports = { GuardedCache, markerKey, keySlot, crc16 };
