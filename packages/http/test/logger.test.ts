import {
  type Adapter,
  createFleet,
  createMemoryStore,
  type Fleet,
  type Logger,
  type Store,
  StoreError,
} from '@fleetward/core';
import { createFleetwardApi, issueApiToken, serveFleetwardApi } from '@fleetward/http';
import { afterEach, describe, expect, it, vi } from 'vitest';

// The HTTP API logs what an operator needs of a request that failed on the server's side (5xx):
// method, path, status, code and message, to its `logger` or else the Fleet's. Never the body, the
// query or a header: each request below carries markers there, and no record may show one.

const T = 'acme';

interface Captured {
  level: string;
  fields: Record<string, unknown>;
  msg: string | undefined;
}

function capture(): Logger & { records: Captured[] } {
  const records: Captured[] = [];
  const make = (bindings: Record<string, unknown>): Logger => {
    const at = (level: string) => (first: object | string, second?: string) => {
      const [fields, msg] = typeof first === 'string' ? [{}, first] : [first, second];
      records.push({ level, fields: { ...bindings, ...(fields as Record<string, unknown>) }, msg });
    };
    return {
      error: at('error'),
      warn: at('warn'),
      info: at('info'),
      debug: at('debug'),
      child: (more) => make({ ...bindings, ...more }),
    };
  };
  return Object.assign(make({}), { records });
}

/** The store, except that every call on its servers fails as a broken database would. */
function brokenServers(store: Store): Store {
  const failing = new Proxy(
    {},
    {
      get: () => async () => {
        throw new StoreError('the database closed the connection');
      },
    },
  );
  return new Proxy(store, {
    get(target, property) {
      if (property === 'servers') return failing;
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const adapter: Adapter = {
  name: 'fake',
  scan: { scan: async () => ({ patches: [], rebootRequired: false }) },
};

let fleet: Fleet | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await fleet?.close();
  fleet = undefined;
});

async function setup(fleetLogger?: Logger): Promise<{ fleet: Fleet; token: string }> {
  fleet = createFleet({
    store: brokenServers(createMemoryStore()),
    adapters: [adapter],
    ...(fleetLogger ? { logger: fleetLogger } : {}),
  });
  await fleet.bootstrapTenant({
    tenant: { id: T, name: 'Acme' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  const { token } = await issueApiToken(fleet, { tenantId: T, principalId: 'alice', name: 'ops' });
  return { fleet, token };
}

const MARKERS = ['query-mark-7f3a', 'header-mark-91bc', 'body-mark-c0de'];

function request(method: string, path: string, token: string, body?: unknown): Request {
  // A label filter is the one query a listing takes; the other routes get none.
  const query = method === 'GET' ? `?label=note=${MARKERS[0]}` : '';
  return new Request(`http://api.test${path}${query}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      'x-request-note': MARKERS[1]!,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
}

describe('HTTP API — logger', () => {
  it('createFleetwardApi — a 5xx is logged (error) to the Fleet’s logger with method, path, status and code; never the body, query or headers', async () => {
    const logger = capture();
    const { fleet, token } = await setup(logger);
    const stderr = vi.spyOn(process.stderr, 'write');
    const app = createFleetwardApi(fleet);

    const listed = await app.fetch(request('GET', '/v1/servers', token));
    expect(listed.status).toBe(500);
    const scanned = await app.fetch(
      request('POST', '/v1/scans', token, { targets: { serverIds: [MARKERS[2]] } }),
    );
    expect(scanned.status).toBe(500);

    const failed = logger.records.filter((r) => r.msg === 'request failed');
    expect(failed).toEqual([
      {
        level: 'error',
        msg: 'request failed',
        fields: {
          component: 'http',
          method: 'GET',
          path: '/v1/servers',
          status: 500,
          code: 'STORE_FAILED',
          error: 'the database closed the connection',
        },
      },
      {
        level: 'error',
        msg: 'request failed',
        fields: expect.objectContaining({
          method: 'POST',
          path: '/v1/scans',
          status: 500,
          code: 'STORE_FAILED',
        }),
      },
    ]);
    const text = JSON.stringify(logger.records);
    for (const marker of [...MARKERS, token]) expect(text).not.toContain(marker);
    // With a logger, the default onError stays quiet instead of writing to stderr as well.
    expect(stderr.mock.calls.filter(([chunk]) => String(chunk).includes('fleetward http'))).toEqual([]);
  });

  it('createFleetwardApi — a 4xx is the caller’s business: nothing is logged', async () => {
    const logger = capture();
    const { fleet, token } = await setup(logger);
    const app = createFleetwardApi(fleet);
    expect((await app.fetch(request('GET', '/v1/projects/none', token))).status).toBe(404);
    expect((await app.fetch(request('GET', '/v1/servers', 'fwt_wrong'))).status).toBe(401);
    expect(logger.records.filter((r) => r.level === 'error' || r.level === 'warn')).toEqual([]);
  });

  it('serveFleetwardApi({ logger }) — its own logger gets the failures and the server’s start and close; the Fleet’s gets none of them', async () => {
    const fleetLogger = capture();
    const apiLogger = capture();
    const { fleet, token } = await setup(fleetLogger);
    const server = await serveFleetwardApi(fleet, { port: 0, logger: apiLogger });
    try {
      const answer = await fetch(`${server.url}/v1/servers`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(answer.status).toBe(500);
      await answer.body?.cancel();
    } finally {
      await server.close();
    }
    expect(apiLogger.records.map((r) => [r.level, r.msg])).toEqual([
      ['info', 'Fleetward API listening'],
      ['error', 'request failed'],
      ['info', 'Fleetward API closed'],
    ]);
    expect(apiLogger.records[0]!.fields).toEqual({ component: 'http', url: server.url });
    expect(fleetLogger.records.filter((r) => r.fields['component'] === 'http')).toEqual([]);
  });

  it('createFleetwardApi — a logger without the four log methods is refused as a bad option', async () => {
    const { fleet } = await setup();
    expect(() =>
      createFleetwardApi(fleet, { logger: { info: () => undefined } as unknown as Logger }),
    ).toThrow(/logger/);
  });
});
