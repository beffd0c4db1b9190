// The race of cache-aside, played with the Node recipe against a running
// daemon and pginval apply (driven by test_recipes.py):
//   1. a reader misses and reads the row (the old value);
//   2. a writer commits a change, and apply invalidates the key;
//   3. the reader tries to fill with what it read: the guard refuses.
// Then a later read fills normally. Prints one JSON object.
"use strict";

const fs = require("fs");
const { execFileSync } = require("child_process");
const Redis = require("ioredis");
const { GuardedCache, markerKey } = require("./cache_aside.js");

const env = process.env;
const redis = new Redis({ host: "127.0.0.1", port: Number(env.REDIS_PORT) });
const cache = new GuardedCache(redis, fs.readFileSync(env.FILL_LUA, "utf8"));
const key = env.KEY;
const id = Number(env.ROW_ID);

const psql = (sql) =>
  execFileSync(env.PSQL, ["-X", "-qAt", "-d", env.PG_DSN, "-c", sql],
    { encoding: "utf8" }).trim();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function markerChanged(before) {
  for (let i = 0; i < 500; i++) {
    if ((await redis.get(markerKey(key))) !== before) return true;
    await sleep(10);
  }
  return false;
}

async function main() {
  const out = {};
  out.raced = (await cache.get(key, async () => {
    const old = psql(`SELECT name FROM users WHERE id = ${id}`);
    const before = await redis.get(markerKey(key));
    psql(`UPDATE users SET name = 'node-new' WHERE id = ${id}`);
    out.invalidated = await markerChanged(before);
    return old;
  })).toString();
  out.cachedAfterRace = await redis.get(key);
  out.statsAfterRace = { ...cache.stats };
  await sleep(200); // past [apply] marker_margin
  out.fresh = (await cache.get(key, async () =>
    psql(`SELECT name FROM users WHERE id = ${id}`))).toString();
  out.cachedAfterFresh = await redis.get(key);
  out.hit = (await cache.get(key, async () => "not called")).toString();
  out.stats = cache.stats;
  console.log(JSON.stringify(out));
  redis.disconnect();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
