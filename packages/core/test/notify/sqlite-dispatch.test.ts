import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type Clock,
  createDispatcher,
  generateWebhookSecret,
  MemorySecretStore,
  type Store,
} from '@fleetward/core';
import { createSqliteStore } from '@fleetward/store-sqlite';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { enqueueEvent } from '../../src/kernel/outbox.js';
import { freePort, Receiver } from './receiver.js';

const root = fileURLToPath(new URL('../../../..', import.meta.url));
const T = 'tenant-a';
const REF = 'tenant-a/webhooks/main';

let dir: string;
let secret: string;
let secrets: MemorySecretStore;
const open: (Store | Receiver)[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetward-outbox-'));
  secret = generateWebhookSecret();
  secrets = new MemorySecretStore();
  await secrets.set(REF, secret);
});
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
  rmSync(dir, { recursive: true, force: true });
});

function sqlite(path: string, clock?: Clock): Store {
  const store = createSqliteStore({ path, ...(clock ? { clock } : {}) });
  open.push(store);
  return store;
}

async function setUp(store: Store, url: string): Promise<void> {
  await store.tenants.create({ tenantId: T, id: T, name: 'A' });
  await store.webhookEndpoints.create({ tenantId: T, url, secretRef: REF, events: ['*'] });
}

describe('outbox on SQLite', () => {
  it('runOnce — two dispatchers on one SQLite file, running concurrently, deliver every message exactly once here', async () => {
    const receiver = await Receiver.start({ secrets: () => [secret] });
    open.push(receiver);
    const path = join(dir, 'two.sqlite');
    const first = sqlite(path);
    await setUp(first, receiver.url);
    for (let i = 0; i < 40; i++) {
      await first.transaction((tx) =>
        enqueueEvent(tx, { tenantId: T, eventType: 'scan.completed', payload: { n: i }, now: new Date() }),
      );
    }
    // A second connection to the same file stands in for a second process.
    const second = sqlite(path);
    const a = createDispatcher({ store: first, secrets, concurrency: 4, batchSize: 15, holder: 'a' });
    const b = createDispatcher({ store: second, secrets, concurrency: 4, batchSize: 15, holder: 'b' });
    let recorded = 0;
    for (let round = 0; round < 10; round++) {
      for (const summary of await Promise.all([a.runOnce(), b.runOnce()])) recorded += summary.delivered;
      if ((await first.outbox.list(T, { where: { status: 'pending' }, limit: 1 })).length === 0) break;
    }

    const messages = await first.outbox.listAll(T);
    expect(messages).toHaveLength(40);
    expect(recorded, 'each delivery is recorded by exactly one dispatcher').toBe(40);
    expect(messages.every((m) => m.status === 'delivered' && m.attempts === 1)).toBe(true);
    const counts = receiver.countsById();
    for (const m of messages) expect(counts.get(m.deliveryId) ?? 0).toBeGreaterThanOrEqual(1);
    expect(receiver.received.every((r) => r.verified === true)).toBe(true);
    // The contract is at-least-once. A duplicate needs a claim to outlive its lease (a dispatcher
    // stalled past leaseTtlMs or killed after sending); neither happens here, so there are none.
    const duplicates = receiver.received.length - counts.size;
    expect(duplicates).toBe(0);
  });

  it('runOnce — after a dispatcher is SIGKILLed mid-dispatch, a new one delivers all 50 messages, each signed', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/hooks`;
    const path = join(dir, 'crash.sqlite');
    const setup = createSqliteStore({ path });
    await setUp(setup, url);
    await setup.close();

    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(root, 'packages/core/test/notify/fixtures/crash-dispatcher.ts'),
        path,
        T,
        REF,
        '50',
      ],
      {
        cwd: root,
        env: { ...process.env, TSX_TSCONFIG_PATH: join(root, 'tsconfig.json'), WEBHOOK_SECRET: secret },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const attempts = await new Promise<number>((resolve, reject) => {
      let buffer = '';
      let seen = 0;
      child.stdout.on('data', (chunk: Buffer) => {
        buffer += chunk.toString();
        const lines = buffer.split('\n');
        buffer = lines.pop()!;
        for (const line of lines) if (line.startsWith('attempt ')) seen++;
        // Killed while it keeps retrying: claims (leases) are held and attempts are in flight.
        if (seen >= 60) {
          child.kill('SIGKILL');
          resolve(seen);
        }
      });
      child.on('exit', (code, signal) => {
        if (signal !== 'SIGKILL') reject(new Error(`dispatcher exited early (${code}): ${stderr}`));
      });
    });
    await new Promise((r) => child.once('close', r));
    expect(attempts).toBeGreaterThanOrEqual(60);

    const raw = new Database(path);
    expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
    raw.close();

    // The restarted process comes up later: an hour on, leases of the dead one have expired.
    const later: Clock = { now: () => new Date(Date.now() + 3_600_000) };
    const store = sqlite(path, later);
    const before = await store.outbox.listAll(T);
    expect(before).toHaveLength(50);
    expect(before.every((m) => m.status === 'pending')).toBe(true);
    expect(before.some((m) => m.attempts > 0)).toBe(true);

    const receiver = await Receiver.start({ secrets: () => [secret], now: () => later.now(), port });
    open.push(receiver);
    const dispatcher = createDispatcher({ store, secrets, clock: later, concurrency: 8 });
    for (let round = 0; round < 10; round++) {
      await dispatcher.runOnce();
      if ((await store.outbox.list(T, { where: { status: 'pending' }, limit: 1 })).length === 0) break;
    }

    const after = await store.outbox.listAll(T);
    expect(after.every((m) => m.status === 'delivered')).toBe(true);
    expect(receiver.received.every((r) => r.verified === true)).toBe(true);
    const seen = receiver.countsById();
    expect(new Set(seen.keys())).toEqual(new Set(before.map((m) => m.deliveryId)));
    expect(seen.size).toBe(50);
  });
});
