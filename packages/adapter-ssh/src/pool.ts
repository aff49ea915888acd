import { TransportError } from '@fleetward/core';
import type { Client } from 'ssh2';

/** How many channels and connections one pool entry may use. */
export interface PoolLimits {
  /** Channels open at once on one connection. */
  maxChannels: number;
  /** Connections (dialing or open) to the same destination with the same login. */
  maxConnections: number;
  /** An unused connection is closed after this long. */
  idleTimeoutMs: number;
}

/** One SSH connection owned by the pool. */
export interface PooledConnection {
  /** Set once the connection is ready; `undefined` while dialing. */
  client: Client | undefined;
  state: 'dialing' | 'ready' | 'closed';
  /** Channels reserved or open on it. */
  active: number;
  /** False once something went wrong on it: it takes no new channels and closes when unused. */
  reusable: boolean;
  /** The last error the connection reported, to say why it closed. */
  lastError: Error | undefined;
  /** Called once when the connection closes, whoever closed it. */
  readonly closeListeners: Set<() => void>;
}

/** A channel slot on a ready connection. Exactly one of `release` and `discard` must be called. */
export interface Lease {
  readonly connection: PooledConnection;
  readonly client: Client;
  /** Gives the slot back; the connection stays for the next command. */
  release(): void;
  /** Gives the slot back and retires the connection: no new channels, closed once unused. */
  discard(): void;
}

interface Waiter {
  resolve(lease: Lease): void;
  reject(error: unknown): void;
}

interface Entry {
  readonly limits: PoolLimits;
  readonly dial: () => Promise<Client>;
  readonly connections: Set<PooledConnection>;
  readonly waiters: Waiter[];
  readonly ready: Map<PooledConnection, Promise<Client>>;
  readonly idleTimers: Map<PooledConnection, NodeJS.Timeout>;
}

/** How long `close()` waits for connections to say goodbye before cutting them. */
const CLOSE_GRACE_MS = 2_000;

/**
 * Connections kept per destination (host, port, login, bastion), shared by the commands for that
 * destination up to a number of channels each. A connection that drops is forgotten at once, so the
 * next command dials a fresh one; a command that was running on it is never re-run here.
 */
export class ConnectionPool {
  readonly #entries = new Map<string, Entry>();
  #closed = false;

  /**
   * A channel slot on a connection for `key`, dialing with `dial` when every connection is busy
   * and the limit allows one more; otherwise waits for a slot. Rejects with the dial's error when
   * the connection reserved for this call could not be made.
   */
  acquire(key: string, limits: PoolLimits, dial: () => Promise<Client>): Promise<Lease> {
    if (this.#closed)
      return Promise.reject(new TransportError('The SSH adapter is closed', { retryable: false }));
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = {
        limits,
        dial,
        connections: new Set(),
        waiters: [],
        ready: new Map(),
        idleTimers: new Map(),
      };
      this.#entries.set(key, entry);
    }
    const target = entry;
    return new Promise<Lease>((resolve, reject) => {
      target.waiters.push({ resolve, reject });
      this.#serve(key, target);
    });
  }

  /** Closes every connection and rejects every waiting call. Commands still running lose their channel. */
  async close(): Promise<void> {
    this.#closed = true;
    const closing: Promise<void>[] = [];
    for (const entry of this.#entries.values()) {
      for (const waiter of entry.waiters.splice(0)) {
        waiter.reject(new TransportError('The SSH adapter was closed', { retryable: false }));
      }
      for (const timer of entry.idleTimers.values()) clearTimeout(timer);
      entry.idleTimers.clear();
      for (const connection of entry.connections) closing.push(this.#end(connection));
    }
    await Promise.all(closing);
  }

  #serve(key: string, entry: Entry): void {
    while (entry.waiters.length > 0) {
      let chosen: PooledConnection | undefined;
      for (const connection of entry.connections) {
        if (
          connection.state !== 'closed' &&
          connection.reusable &&
          connection.active < entry.limits.maxChannels
        ) {
          chosen = connection;
          break;
        }
      }
      if (!chosen) {
        if (this.#closed || entry.connections.size >= entry.limits.maxConnections) return;
        chosen = this.#open(key, entry);
      }
      const waiter = entry.waiters.shift();
      if (!waiter) return;
      this.#reserve(key, entry, chosen, waiter);
    }
  }

  #reserve(key: string, entry: Entry, connection: PooledConnection, waiter: Waiter): void {
    connection.active++;
    const timer = entry.idleTimers.get(connection);
    if (timer) {
      clearTimeout(timer);
      entry.idleTimers.delete(connection);
    }
    const ready = entry.ready.get(connection);
    if (!ready) {
      connection.active--;
      waiter.reject(
        new TransportError('Internal error: pooled connection has no dial', { retryable: false }),
      );
      return;
    }
    ready.then(
      (client) => {
        let done = false;
        const give = (retire: boolean) => {
          if (done) return;
          done = true;
          if (retire) connection.reusable = false;
          this.#release(key, entry, connection);
        };
        waiter.resolve({
          connection,
          client,
          release: () => give(false),
          discard: () => give(true),
        });
      },
      (error: unknown) => {
        connection.active--;
        waiter.reject(error);
      },
    );
  }

  #open(key: string, entry: Entry): PooledConnection {
    const connection: PooledConnection = {
      client: undefined,
      state: 'dialing',
      active: 0,
      reusable: true,
      lastError: undefined,
      closeListeners: new Set(),
    };
    entry.connections.add(connection);
    const ready = entry.dial().then(
      (client) => {
        connection.client = client;
        connection.state = 'ready';
        client.on('error', (error: Error) => {
          connection.lastError = error;
        });
        client.once('close', () => this.#closedConnection(key, entry, connection));
        if (this.#closed) void this.#end(connection);
        return client;
      },
      (error: unknown) => {
        connection.state = 'closed';
        entry.connections.delete(connection);
        entry.ready.delete(connection);
        // Those still waiting get a dial of their own rather than this failure, as they would have
        // had they come a moment later; an entry nobody waits on is forgotten (unreachable hosts
        // must not pile up).
        queueMicrotask(() => {
          if (entry.connections.size > 0 || entry.waiters.length > 0) this.#serve(key, entry);
          else if (this.#entries.get(key) === entry) this.#entries.delete(key);
        });
        throw error;
      },
    );
    // Callers see the failure through their reservation; an unreserved failure is not unhandled.
    ready.catch(() => undefined);
    entry.ready.set(connection, ready);
    return connection;
  }

  #release(key: string, entry: Entry, connection: PooledConnection): void {
    connection.active = Math.max(0, connection.active - 1);
    if (connection.state === 'ready' && connection.active === 0) {
      if (!connection.reusable || this.#closed) {
        void this.#end(connection);
      } else {
        const timer = setTimeout(() => {
          entry.idleTimers.delete(connection);
          if (connection.active === 0) void this.#end(connection);
        }, entry.limits.idleTimeoutMs);
        // An idle connection alone must not keep the process alive.
        timer.unref();
        entry.idleTimers.set(connection, timer);
      }
    }
    this.#serve(key, entry);
  }

  #closedConnection(key: string, entry: Entry, connection: PooledConnection): void {
    if (connection.state === 'closed') return;
    connection.state = 'closed';
    entry.connections.delete(connection);
    entry.ready.delete(connection);
    const timer = entry.idleTimers.get(connection);
    if (timer) clearTimeout(timer);
    entry.idleTimers.delete(connection);
    for (const listener of connection.closeListeners) {
      try {
        listener();
      } catch {
        // One listener's failure must not keep the others from learning the connection is gone.
      }
    }
    connection.closeListeners.clear();
    if (entry.connections.size === 0 && entry.waiters.length === 0) {
      if (this.#entries.get(key) === entry) this.#entries.delete(key);
    } else this.#serve(key, entry);
  }

  #end(connection: PooledConnection): Promise<void> {
    const client = connection.client;
    if (!client || connection.state === 'closed') return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        // A peer that never answers the goodbye must not hold close() up.
        (client as unknown as { destroy?: () => void }).destroy?.();
        resolve();
      }, CLOSE_GRACE_MS);
      timer.unref();
      client.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      client.end();
    });
  }
}
