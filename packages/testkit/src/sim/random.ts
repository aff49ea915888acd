/** A pseudo-random source of floats in [0, 1): the same seed gives the same sequence. */
export type Random = () => number;

/** mulberry32: small, fast and good enough for test data (not for anything secret). */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The seed of stream `index` under `seed`. Each simulated server draws from a stream of its own,
 * so what happens to one server does not depend on the order in which servers are called.
 */
export function streamSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** z of the 99th percentile of the standard normal distribution. */
const Z99 = 2.3263478740408408;

/** A standard normal draw (Box–Muller); always takes two draws from `random`. */
function normal(random: Random): number {
  const u = 1 - random();
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/**
 * A log-normal draw with the given median and 99th percentile (`p99 >= median > 0`): command
 * latencies have this shape, most calls near the median and a long tail.
 */
export function logNormal(random: Random, median: number, p99: number): number {
  const sigma = Math.log(p99 / median) / Z99;
  return median * Math.exp(sigma * normal(random));
}

/** One of `choices`, each with its weight (weights need not sum to 1). */
export function weighted<T>(random: Random, choices: readonly (readonly [T, number])[]): T {
  const total = choices.reduce((sum, [, weight]) => sum + weight, 0);
  let at = random() * total;
  for (const [value, weight] of choices) {
    at -= weight;
    if (at < 0) return value;
  }
  return choices[choices.length - 1]![0];
}

/** `count` distinct items of `items`, in a random order. */
export function sample<T>(random: Random, items: readonly T[], count: number): T[] {
  const pool = [...items];
  const out: T[] = [];
  while (out.length < count && pool.length > 0) {
    out.push(pool.splice(Math.floor(random() * pool.length), 1)[0]!);
  }
  return out;
}
