import { ValidationError, type ValidationIssue } from '@fleetward/core';

/**
 * How long each simulated call takes: exactly `ms`, or log-normal with a median and a 99th
 * percentile (most calls near the median, a long tail, as commands over a network take).
 */
export type SimulatedLatency =
  | { kind: 'fixed'; ms: number }
  | { kind: 'log-normal'; medianMs: number; p99Ms: number };

/** How pending patches are drawn for each simulated server. */
export interface SimulatedPatches {
  /** Most patches pending on one server, 0–30 (the size of each package list). @default 12 */
  max?: number;
  /** Share of servers with nothing pending, 0–1. @default 0.25 */
  noneShare?: number;
  /** Share of pending patches that are security updates, 0–1. @default 0.3 */
  securityShare?: number;
}

/** Options of {@link createSimulatedFleet}. */
export interface SimulatedFleetOptions {
  /** How many servers, 1–1,000,000. */
  servers: number;
  /** Seeds every draw: the same seed gives the same servers, patches and per-server call outcomes. @default 1 */
  seed?: number;
  /** The adapter's registration name, which every server names as its `adapter`. @default 'sim' */
  adapterName?: string;
  /** The account the servers name (create it or not: nothing checks it). @default 'sim' */
  accountId?: string;
  /** Server ids and names are this prefix and a zero-padded number (`sim-00001`). @default 'sim-' */
  idPrefix?: string;
  /** How long each call (exec, scan, install) takes. @default `{ kind: 'fixed', ms: 0 }`: the next turn of the timers */
  latency?: SimulatedLatency;
  /** Share of calls that fail, 0–1: exec exits 1, scan and install throw `CommandFailedError`. @default 0 */
  failureRate?: number;
  /** Share of calls that cannot reach their server, 0–1: they throw the retryable `TransportError`. @default 0 */
  unreachableRate?: number;
  /** How pending patches are drawn. */
  patches?: SimulatedPatches;
}

export interface ParsedSimulatedFleetOptions {
  servers: number;
  seed: number;
  adapterName: string;
  accountId: string;
  idPrefix: string;
  latency: SimulatedLatency;
  failureRate: number;
  unreachableRate: number;
  patches: Required<SimulatedPatches>;
}

const ID_PREFIX = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,100}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Checks the options and fills in the defaults.
 * @throws ValidationError naming every field that is wrong.
 */
export function parseSimulatedFleetOptions(options: SimulatedFleetOptions): ParsedSimulatedFleetOptions {
  const issues: ValidationIssue[] = [];
  const given = (options ?? {}) as Partial<SimulatedFleetOptions>;
  const number = (path: (string | number)[], value: unknown, min: number, max: number, integer: boolean) => {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
      issues.push({ path, message: `must be a number from ${min} to ${max}` });
    } else if (integer && !Number.isInteger(value)) {
      issues.push({ path, message: 'must be an integer' });
    }
  };
  const text = (path: string, value: unknown, pattern: RegExp) => {
    if (value !== undefined && (typeof value !== 'string' || !pattern.test(value))) {
      issues.push({ path: [path], message: `must match ${pattern.source}` });
    }
  };
  const known = new Set([
    'servers',
    'seed',
    'adapterName',
    'accountId',
    'idPrefix',
    'latency',
    'failureRate',
    'unreachableRate',
    'patches',
  ]);
  for (const key of Object.keys(given)) {
    if (!known.has(key)) issues.push({ path: [key], message: 'is not an option' });
  }
  number(['servers'], given.servers, 1, 1_000_000, true);
  if (given.seed !== undefined) number(['seed'], given.seed, 0, 0xffffffff, true);
  text('adapterName', given.adapterName, NAME);
  text('accountId', given.accountId, NAME);
  text('idPrefix', given.idPrefix, ID_PREFIX);
  for (const key of ['failureRate', 'unreachableRate'] as const) {
    if (given[key] !== undefined) number([key], given[key], 0, 1, false);
  }
  const latency = given.latency ?? { kind: 'fixed', ms: 0 };
  if (latency.kind === 'fixed') {
    number(['latency', 'ms'], latency.ms, 0, 3_600_000, false);
  } else if (latency.kind === 'log-normal') {
    number(['latency', 'medianMs'], latency.medianMs, Number.MIN_VALUE, 3_600_000, false);
    number(['latency', 'p99Ms'], latency.p99Ms, Number.MIN_VALUE, 3_600_000, false);
    if (latency.p99Ms < latency.medianMs) {
      issues.push({ path: ['latency', 'p99Ms'], message: 'must be at least medianMs' });
    }
  } else {
    issues.push({ path: ['latency', 'kind'], message: "must be 'fixed' or 'log-normal'" });
  }
  const patches = { max: 12, noneShare: 0.25, securityShare: 0.3, ...given.patches };
  number(['patches', 'max'], patches.max, 0, 30, true);
  number(['patches', 'noneShare'], patches.noneShare, 0, 1, false);
  number(['patches', 'securityShare'], patches.securityShare, 0, 1, false);
  if (issues.length) throw new ValidationError('SimulatedFleetOptions', issues);
  return {
    servers: given.servers!,
    seed: given.seed ?? 1,
    adapterName: given.adapterName ?? 'sim',
    accountId: given.accountId ?? 'sim',
    idPrefix: given.idPrefix ?? 'sim-',
    latency,
    failureRate: given.failureRate ?? 0,
    unreachableRate: given.unreachableRate ?? 0,
    patches,
  };
}
