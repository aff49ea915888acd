import { createHash } from 'node:crypto';
import { getEventListeners } from 'node:events';
import {
  AbortedError,
  type Adapter,
  type Command,
  CommandFailedError,
  type ExecOptions,
  type ExecResult,
  type InstallRequest,
  type InstallResult,
  type NativeScanResult,
  OutputCollector,
  type OutputSummary,
  type PendingPatch,
  type Server,
  type ServerInput,
  TimeoutError,
  TransportError,
} from '@fleetward/core';
import {
  type ParsedSimulatedFleetOptions,
  parseSimulatedFleetOptions,
  type SimulatedFleetOptions,
} from './options.js';
import { drawServer, type InitialServerState, needsReboot } from './patches.js';
import { logNormal, type Random, seededRandom, streamSeed } from './random.js';

/** A server to add to a Fleet: `fleet.as(…).servers.add(record)`, or the store with a `tenantId`. */
export type SimulatedServerInput = Omit<ServerInput, 'tenantId'> & { id: string };

/** What a simulated fleet has done so far. */
export interface SimulatedFleetStats {
  /** Calls made to each capability. */
  calls: { exec: number; scan: number; install: number };
  /** Calls that failed as `failureRate` drew: exec exited 1, scan or install threw `CommandFailedError`. */
  failed: number;
  /** Calls that threw `TransportError` as `unreachableRate` drew. */
  unreachable: number;
  /** Calls that ran past their `timeoutMs` and threw `TimeoutError`. */
  timedOut: number;
  /** Calls ended by their `signal`, with `AbortedError`. */
  aborted: number;
  /** Calls running now. */
  inFlight: number;
  /** The most calls that ran at once. */
  peakInFlight: number;
  /**
   * The most `'abort'` listeners seen on one `signal` passed to a call, counting the one the call
   * adds while it runs. A caller that hands every concurrent call the same signal drives it up to
   * its concurrency; one that gives each call a signal of its own keeps it at 1.
   */
  maxAbortListeners: number;
  /** Patches pending over the whole fleet now. */
  pendingPatches: number;
  /** Packages installed by `install` so far. */
  installedPackages: number;
}

/** A simulated fleet: its adapter, the servers to add, and what has happened. */
export interface SimulatedFleet {
  /** Register it with `createFleet({ adapters: [fleet.adapter] })`; it has `exec`, `scan` and `install`. */
  readonly adapter: Adapter;
  /** Every simulated server, in id order; each names the adapter, so add them as they are. */
  readonly servers: readonly SimulatedServerInput[];
  /** A snapshot of the counters. */
  stats(): SimulatedFleetStats;
  /**
   * What is pending on a server now (a copy): the back channel for checking what `install` did
   * without trusting the adapter's answer. Undefined for an id that is not one of this fleet's.
   */
  pendingPatches(serverId: string): PendingPatch[] | undefined;
}

interface ServerState {
  readonly random: Random;
  patches: PendingPatch[];
  rebootRequired: boolean;
  readonly os: InitialServerState['os'];
}

/** What the next call to a server will do, drawn from its own stream. */
interface CallDraw {
  latencyMs: number;
  unreachable: boolean;
  fails: boolean;
}

const DEFAULT_TIMEOUT_MS = 300_000;
const DEFAULT_MAX_OUTPUT = 1_048_576;

function describe(command: Command): string {
  return 'argv' in command ? command.argv.join(' ') : `${command.interpreter.join(' ')} <script>`;
}

/**
 * Creates a simulated fleet of `options.servers` servers for scale tests and benchmarks: an
 * {@link Adapter} with `exec`, `scan` and `install` that touches no network and no process, and the
 * server records to add. Every call waits its drawn latency on a real timer (never a busy loop),
 * then fails or succeeds as the configured rates draw.
 *
 * Deterministic for a seed: the servers, their OS and pending patches, and the outcome and latency
 * of the n-th call to each server come from that server's own pseudo-random stream, whatever order
 * the calls arrive in.
 *
 * - `scan` answers the server's pending patches natively (no command emulation), its reboot flag
 *   and OS facts.
 * - `install` installs the requested packages that are pending at exactly the requested version
 *   (they stop being pending; the others come back in `failed`), sets the reboot flag when a
 *   kernel, libc or systemd was among them, and reboots as `reboot` says.
 * - `exec` runs nothing: it answers exit 0 and one line that depends only on the server and the
 *   command (exit 1 and a line on stderr when the call draws a failure), honours `timeoutMs`,
 *   `maxOutputBytes`, `onOutput` and `signal`, and removes its abort listener when it ends.
 *
 * This is not a transport to deploy: it reaches no server. It exists so that thousands of servers
 * fit in one test process.
 *
 * @throws ValidationError when `options` are invalid.
 */
export function createSimulatedFleet(options: SimulatedFleetOptions): SimulatedFleet {
  const config = parseSimulatedFleetOptions(options);
  const width = String(config.servers).length;
  const states = new Map<string, ServerState>();
  const servers: SimulatedServerInput[] = [];
  const stats: SimulatedFleetStats = {
    calls: { exec: 0, scan: 0, install: 0 },
    failed: 0,
    unreachable: 0,
    timedOut: 0,
    aborted: 0,
    inFlight: 0,
    peakInFlight: 0,
    maxAbortListeners: 0,
    pendingPatches: 0,
    installedPackages: 0,
  };
  for (let index = 0; index < config.servers; index++) {
    const random = seededRandom(streamSeed(config.seed, index));
    const initial = drawServer(random, config.patches);
    const id = `${config.idPrefix}${String(index + 1).padStart(width, '0')}`;
    states.set(id, { random, ...initial });
    stats.pendingPatches += initial.patches.length;
    servers.push(serverRecord(config, id, index, initial, random));
  }

  const stateOf = (server: Server): ServerState => {
    const state = states.get(server.id);
    if (!state) {
      throw new TransportError(`${server.id} is not a server of this simulated fleet`, {
        retryable: false,
        details: { serverId: server.id, commandMayHaveRun: false },
      });
    }
    return state;
  };

  const draw = (state: ServerState): CallDraw => {
    const unreachable = state.random() < config.unreachableRate;
    const fails = state.random() < config.failureRate;
    const latency = config.latency;
    const latencyMs =
      latency.kind === 'fixed' ? latency.ms : logNormal(state.random, latency.medianMs, latency.p99Ms);
    return { latencyMs, unreachable, fails };
  };

  /**
   * Waits the call's latency (capped at its timeout), then throws what the draw says: the shared
   * life of every call, counted in `stats`.
   */
  const call = async <T>(
    server: Server,
    capability: keyof SimulatedFleetStats['calls'],
    signal: AbortSignal | undefined,
    timeoutMs: number,
    body: (state: ServerState, fails: boolean) => T,
  ): Promise<T> => {
    stats.calls[capability]++;
    const state = stateOf(server);
    const drawn = draw(state);
    stats.inFlight++;
    stats.peakInFlight = Math.max(stats.peakInFlight, stats.inFlight);
    try {
      await wait(Math.min(drawn.latencyMs, timeoutMs), signal, server, stats);
      if (drawn.latencyMs > timeoutMs) {
        stats.timedOut++;
        throw new TimeoutError(
          `${capability} on ${server.name} timed out after ${timeoutMs} ms (simulated)`,
          {
            details: { serverId: server.id, commandMayHaveRun: !drawn.unreachable },
          },
        );
      }
      if (drawn.unreachable) {
        stats.unreachable++;
        throw new TransportError(`${server.name} is unreachable (simulated)`, {
          details: { serverId: server.id, commandMayHaveRun: false },
        });
      }
      if (drawn.fails) stats.failed++;
      return body(state, drawn.fails);
    } finally {
      stats.inFlight--;
    }
  };

  const adapter: Adapter = {
    name: config.adapterName,
    exec: {
      exec: async (server: Server, command: Command, opts: ExecOptions = {}): Promise<ExecResult> => {
        const started = performance.now();
        // Exec changes nothing on a simulated server: only the draw matters.
        return call(server, 'exec', opts.signal, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, (_state, fails) => {
          const digest = createHash('sha256').update(describe(command)).digest('hex').slice(0, 16);
          const stdout = fails ? '' : `${server.id} ran ${digest}\n`;
          const stderr = fails ? `${server.id}: simulated failure of ${digest}\n` : '';
          return {
            exitCode: fails ? 1 : 0,
            signal: null,
            stdout: summarize('stdout', stdout, opts),
            stderr: summarize('stderr', stderr, opts),
            durationMs: Math.round(performance.now() - started),
          };
        });
      },
    },
    scan: {
      scan: (server, opts = {}): Promise<NativeScanResult> =>
        call(server, 'scan', opts.signal, DEFAULT_TIMEOUT_MS, (state, fails) => {
          if (fails) throw new CommandFailedError(`scan of ${server.name} failed (simulated)`);
          return {
            patches: state.patches.map((p) => ({ ...p, origins: p.origins.map((o) => ({ ...o })) })),
            rebootRequired: state.rebootRequired,
            os: { ...state.os },
          };
        }),
    },
    install: {
      install: (server, request: InstallRequest, opts = {}): Promise<InstallResult> =>
        call(server, 'install', opts.signal, DEFAULT_TIMEOUT_MS, (state, fails) => {
          if (fails) throw new CommandFailedError(`install on ${server.name} failed (simulated)`);
          return install(state, request, stats);
        }),
    },
  };

  return {
    adapter,
    servers,
    stats: () => ({ ...stats, calls: { ...stats.calls } }),
    pendingPatches: (serverId) => states.get(serverId)?.patches.map((p) => ({ ...p })),
  };
}

function serverRecord(
  config: ParsedSimulatedFleetOptions,
  id: string,
  index: number,
  initial: InitialServerState,
  random: Random,
): SimulatedServerInput {
  const env = random() < 0.6 ? 'prod' : random() < 0.5 ? 'staging' : 'dev';
  const roles = ['web', 'api', 'db', 'cache', 'worker'] as const;
  const role = roles[Math.floor(random() * roles.length)]!;
  return {
    id,
    name: id,
    accountId: config.accountId,
    provider: 'ssh',
    adapter: config.adapterName,
    address: `10.${(index >> 16) & 255}.${(index >> 8) & 255}.${index & 255}`,
    os: { ...initial.os },
    labels: { env, role, dc: index % 2 === 0 ? 'dc-a' : 'dc-b' },
  };
}

/**
 * Waits `ms` on a real timer, or rejects with `AbortedError` as soon as `signal` aborts. The
 * listener is removed whichever way the wait ends.
 */
function wait(ms: number, signal: AbortSignal | undefined, server: Server, stats: SimulatedFleetStats) {
  return new Promise<void>((resolve, reject) => {
    const aborted = () => {
      stats.aborted++;
      reject(new AbortedError(`the call to ${server.name} was aborted (simulated)`));
    };
    if (signal?.aborted) return aborted();
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    function onAbort() {
      clearTimeout(timer);
      aborted();
    }
    if (signal) {
      signal.addEventListener('abort', onAbort, { once: true });
      stats.maxAbortListeners = Math.max(stats.maxAbortListeners, getEventListeners(signal, 'abort').length);
    }
  });
}

function summarize(stream: 'stdout' | 'stderr', text: string, opts: ExecOptions): OutputSummary {
  const collector = new OutputCollector(opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT);
  if (text) {
    const chunk = Buffer.from(text, 'utf8');
    opts.onOutput?.(stream, chunk);
    collector.push(chunk);
  }
  return collector.summary();
}

function install(state: ServerState, request: InstallRequest, stats: SimulatedFleetStats): InstallResult {
  const installed: InstallResult['installed'] = [];
  const failed: InstallResult['failed'] = [];
  for (const wanted of request.packages) {
    const at = state.patches.findIndex((p) => p.name === wanted.name);
    const pending = state.patches[at];
    if (!pending) {
      failed.push({ name: wanted.name, reason: 'not pending on this server' });
    } else if (pending.candidateVersion !== wanted.version) {
      failed.push({
        name: wanted.name,
        reason: `pending at ${pending.candidateVersion}, not ${wanted.version}`,
      });
    } else {
      state.patches.splice(at, 1);
      installed.push({ name: wanted.name, version: wanted.version });
      if (needsReboot(wanted.name)) state.rebootRequired = true;
    }
  }
  stats.pendingPatches -= installed.length;
  stats.installedPackages += installed.length;
  const rebooted = request.reboot === 'always' || (request.reboot === 'if-required' && state.rebootRequired);
  if (rebooted) state.rebootRequired = false;
  return { installed, failed, rebootRequired: state.rebootRequired, rebooted };
}
