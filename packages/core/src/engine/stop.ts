import type { Server } from '../domain/index.js';

/**
 * Failures that stop a whole operation over several servers, not only the server they happened
 * on. A changed host key (DESIGN safety rule 6) means the machine answering may not be the server
 * it claims to be, and it can be the first sign of an attack on more than one: nothing further is
 * done anywhere until someone has looked. Servers already being worked on may finish.
 */

/** Why an operation stopped: the failure's code, the server, and a sentence naming it. */
export interface OperationStop {
  code: 'HOST_KEY_MISMATCH';
  serverId: string;
  serverName: string;
  /** For a job's `reason`, a record's error and the audit trail. */
  reason: string;
}

/**
 * Whether a failure on `server` stops the operation it is part of. Takes a thrown error or a
 * recorded `{ code }`, and decides on the stable code rather than the class, so an error that
 * crossed a copy of the package or was stored and read back still counts.
 */
export function stopsOperation(
  failure: unknown,
  server: Pick<Server, 'id' | 'name'>,
): OperationStop | undefined {
  if (typeof failure !== 'object' || failure === null) return undefined;
  if ((failure as { code?: unknown }).code !== 'HOST_KEY_MISMATCH') return undefined;
  return {
    code: 'HOST_KEY_MISMATCH',
    serverId: server.id,
    serverName: server.name,
    reason: `the host key of ${server.name} changed`,
  };
}

/**
 * The first stop of one operation. Workers `note` each failure; the scheduler asks `stopped`
 * before it starts another server, so a stop seen on one server keeps every later one untouched.
 */
export class OperationStopLatch {
  #stop: OperationStop | undefined;

  /** The stop, once a failure has stopped the operation. */
  get stopped(): OperationStop | undefined {
    return this.#stop;
  }

  /** Looks at a failure on `server`; returns the stop it caused, if any (the first one is kept). */
  note(failure: unknown, server: Pick<Server, 'id' | 'name'>): OperationStop | undefined {
    const stop = stopsOperation(failure, server);
    if (stop) this.#stop ??= stop;
    return stop;
  }

  /** What audit records and job details carry about the stop (nothing when there was none). */
  details(): { stoppedBy?: { code: string; serverId: string; reason: string } } {
    const stop = this.#stop;
    return stop ? { stoppedBy: { code: stop.code, serverId: stop.serverId, reason: stop.reason } } : {};
  }
}
