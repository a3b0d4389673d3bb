'use strict';
// count_primes: the primes up to `limit` by a segmented sieve of Eratosthenes, one progress
// message per segment (watch it live with delay_ms), optionally the list itself (a large result).

const { Plugin, PluginError } = require('../../lib/sdk');

const MAX_LIMIT = 100_000_000;
const MAX_LISTED = 10_000_000; // primes up to 10^7 are 664,579 numbers: about 5 MB of JSON
const SEGMENTS = 10;

const inputSchema = {
  type: 'object',
  properties: {
    limit: { type: 'integer', minimum: 2, maximum: MAX_LIMIT, default: 1000000 },
    list: { type: 'boolean', default: false, description: `return the primes too (limit up to ${MAX_LISTED})` },
    delay_ms: { type: 'integer', minimum: 0, maximum: 2000, default: 0, description: 'pause after each segment' },
  },
  additionalProperties: false,
};

const outputSchema = {
  type: 'object',
  properties: {
    count: { type: 'integer' },
    largest: { type: 'integer' },
    primes: { type: 'array', items: { type: 'integer' } },
    elapsed_ms: { type: 'number' },
  },
  required: ['count', 'largest', 'elapsed_ms'],
};

function integer(args, name, fallback, minimum, maximum) {
  const value = args[name] ?? fallback;
  if (!Number.isInteger(value) || value < minimum || value > maximum) {
    throw new PluginError(`'${name}' must be an integer from ${minimum} to ${maximum}, got ${JSON.stringify(value)}`,
      'invalid_input');
  }
  return value;
}

/** The primes up to sqrt(limit), by a plain sieve: the segments are sieved with them. */
function basePrimes(limit) {
  const root = Math.floor(Math.sqrt(limit));
  const composite = new Uint8Array(root + 1);
  const primes = [];
  for (let n = 2; n <= root; n += 1) {
    if (!composite[n]) {
      primes.push(n);
      for (let m = n * n; m <= root; m += n) composite[m] = 1;
    }
  }
  return primes;
}

const pause = (ms) => new Promise((resolve) => (ms ? setTimeout(resolve, ms) : setImmediate(resolve)));

async function countPrimes(args, ctx) {
  const limit = integer(args, 'limit', 1000000, 2, MAX_LIMIT);
  const delayMs = integer(args, 'delay_ms', 0, 0, 2000);
  const list = args.list ?? false;
  if (typeof list !== 'boolean') throw new PluginError("'list' must be true or false", 'invalid_input');
  if (list && limit > MAX_LISTED) {
    throw new PluginError(`'list' is allowed up to limit ${MAX_LISTED} (the result would be too large)`,
      'invalid_input');
  }
  const started = performance.now();
  ctx.log(`sieving 2..${limit} in ${SEGMENTS} segments`);
  const base = basePrimes(limit);
  const size = Math.ceil((limit - 1) / SEGMENTS);
  const listed = [];
  let count = 0;
  let largest = 0;
  for (let segment = 0, low = 2; low <= limit; segment += 1, low += size) {
    const high = Math.min(low + size - 1, limit);
    const composite = new Uint8Array(high - low + 1);
    for (const p of base) {
      if (p * p > high) break;
      for (let m = Math.max(p * p, Math.ceil(low / p) * p); m <= high; m += p) composite[m - low] = 1;
    }
    for (let i = 0; i < composite.length; i += 1) {
      if (!composite[i]) {
        count += 1;
        largest = low + i;
        if (list) listed.push(low + i);
      }
    }
    const percent = Math.round((1000 * (high - 1)) / (limit - 1)) / 10;
    ctx.progress(percent, `Sieved up to ${high}: ${count} primes so far`);
    if (ctx.signal.aborted) throw new PluginError('the caller went away', 'cancelled');
    // Yield to the event loop: progress goes out now, and Health and other calls are answered.
    await pause(delayMs);
  }
  const result = { count, largest, elapsed_ms: Math.round((performance.now() - started) * 10) / 10 };
  if (list) result.primes = listed;
  return result;
}

module.exports = new Plugin({
  primitive: 'count_primes',
  description: 'Count the primes up to limit (segmented sieve), with a progress message per segment.',
  inputSchema,
  outputSchema,
  readyMessage: 'Prime counter ready',
  handler: countPrimes,
});
