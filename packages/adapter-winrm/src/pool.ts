import { createHmac, randomBytes } from 'node:crypto';
import { type ConnectionOptions, WsmanConnection } from './http.js';

/** Idle connections kept per endpoint and login. */
const MAX_IDLE_PER_KEY = 4;

interface Idle {
  conn: WsmanConnection;
  timer: NodeJS.Timeout;
}

/**
 * Keeps connections that ended a command cleanly, so the next command to the same endpoint with
 * the same login reuses the connection NTLM already authenticated instead of a new handshake.
 * Keyed by everything that decides who the connection talks to and as whom (the password by its
 * hash), so a changed password or pin never reuses an old connection.
 */
export class ConnectionPool {
  readonly #idleMs: number;
  readonly #idle = new Map<string, Idle[]>();

  constructor(idleMs: number) {
    this.#idleMs = idleMs;
  }

  /** An idle connection for `options`, or a new one. */
  acquire(options: ConnectionOptions): WsmanConnection {
    const key = keyOf(options);
    const idle = this.#idle.get(key)?.pop();
    if (idle) {
      clearTimeout(idle.timer);
      idle.conn.markReused();
      return idle.conn;
    }
    const conn = new WsmanConnection(options);
    keys.set(conn, key);
    return conn;
  }

  /** Gives `conn` back: kept for reuse when `reusable`, closed otherwise. */
  release(conn: WsmanConnection, reusable: boolean): void {
    const key = keys.get(conn);
    const list = key === undefined ? undefined : (this.#idle.get(key) ?? []);
    if (
      !reusable ||
      conn.closed ||
      key === undefined ||
      list === undefined ||
      this.#idleMs === 0 ||
      list.length >= MAX_IDLE_PER_KEY
    ) {
      conn.close();
      return;
    }
    const entry: Idle = {
      conn,
      timer: setTimeout(() => {
        const at = list.indexOf(entry);
        if (at >= 0) list.splice(at, 1);
        if (list.length === 0) this.#idle.delete(key);
        conn.close();
      }, this.#idleMs),
    };
    entry.timer.unref();
    list.push(entry);
    this.#idle.set(key, list);
  }

  /** Closes every idle connection. */
  close(): void {
    for (const list of this.#idle.values()) {
      for (const { conn, timer } of list) {
        clearTimeout(timer);
        conn.close();
      }
    }
    this.#idle.clear();
  }
}

const keys = new WeakMap<WsmanConnection, string>();
/** Pool keys hold an HMAC of the password under this process-local key, never a plain hash. */
const KEY_SECRET = randomBytes(32);

function keyOf(o: ConnectionOptions): string {
  const secret = createHmac('sha256', KEY_SECRET)
    .update(JSON.stringify([o.login.password, o.ca === undefined ? null : o.ca.toString()]))
    .digest('hex');
  return JSON.stringify([
    o.host,
    o.port,
    o.https,
    o.path,
    o.auth,
    o.login.username.toLowerCase(),
    o.login.domain?.toLowerCase() ?? null,
    o.certificateFingerprint ?? null,
    o.connectTimeoutMs,
    o.requestTimeoutMs,
    secret,
  ]);
}
