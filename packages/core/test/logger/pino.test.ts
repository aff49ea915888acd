import {
  type Adapter,
  createFleet,
  createMemoryStore,
  type Fleet,
  type Logger,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';

// The `logger` option takes a real pino logger (or one of its children) as it is: checked by the
// compiler below, and at run time by the JSON lines pino writes to its stream.

const T = 'acme';

/** Scans: s1 answers with nothing pending, s2 is unreachable. */
const adapter: Adapter = {
  name: 'fake',
  scan: {
    async scan(server) {
      if (server.id === 's2') throw new TransportError('connect ETIMEDOUT 192.0.2.2:22');
      return { patches: [], rebootRequired: false };
    },
  },
};

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
});

/** A pino child logger writing to memory; resolves the lines it wrote, parsed. */
function pinoInMemory(): { logger: ReturnType<typeof pino>; lines: () => Record<string, unknown>[] } {
  const written: string[] = [];
  const root = pino({ level: 'debug' }, { write: (line: string) => void written.push(line) });
  return {
    logger: root.child({ service: 'portal' }),
    lines: () =>
      written
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line)),
  };
}

describe('logger — pino', () => {
  it('createFleet({ logger: pino().child(…) }) — accepted as it is; writes one JSON line per record with its bindings', async () => {
    const { logger, lines } = pinoInMemory();
    const asPort: Logger = logger;
    fleet = createFleet({ store: createMemoryStore(), adapters: [adapter], logger: asPort });
    await fleet.bootstrapTenant({
      tenant: { id: T, name: 'Acme' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    for (const id of ['s1', 's2']) {
      await alice.servers.add({ id, name: id, accountId: 'dc', provider: 'ssh', adapter: 'fake' });
    }
    const { job } = await alice.scan({ serverIds: ['s1', 's2'] }, { concurrency: 1 });

    const records = lines();
    const bound = { service: 'portal', tenantId: T, jobId: job.id, kind: 'scan' };
    expect(records.map((r) => [r['level'], r['msg']])).toEqual([
      [30, 'scan started'],
      [40, 'server failed'],
      [40, 'scan finished'],
    ]);
    expect(records[0]).toMatchObject({ ...bound, servers: 2, time: expect.any(Number), pid: process.pid });
    expect(records[1]).toMatchObject({ ...bound, serverId: 's2', code: 'TRANSPORT_FAILED' });
    expect(records[2]).toMatchObject({ ...bound, status: 'partial', total: 2, succeeded: 1, failed: 1 });
  });

  it('createFleet — a logger without the four log methods is refused, naming the option', () => {
    const broken = { info: () => undefined, error: () => undefined } as unknown as Logger;
    let thrown: unknown;
    try {
      createFleet({ store: createMemoryStore(), adapters: [adapter], logger: broken });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ValidationError);
    expect((thrown as ValidationError).issues).toMatchObject([{ path: ['logger'] }]);
  });
});
