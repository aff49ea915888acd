import {
  AbortedError,
  type ChangeRequestPayload,
  TimeoutError,
  TransportError,
  ValidationError,
} from '@fleetward/core';
import {
  createServiceNowIntegration,
  IntegrationError,
  idempotencyTag,
  toServiceNowDateTime,
} from '@fleetward/integrations';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  closedPort,
  errorSurface,
  type FakeReply,
  type FakeServer,
  type RecordedRequest,
  startFakeHttp,
} from './fake-http.js';

const USER = 'fleetward.api';
const PASSWORD = 'S3cr3t-Pa55word!';
const BASIC = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
const TABLE = '/api/now/table/change_request';

const payload: ChangeRequestPayload = {
  title: 'Patch web: 2 updates on 1 server (1 security)',
  description: 'Fleetward requests a change.\n\nweb-1: 2 updates',
  projectId: 'proj-web',
  projectName: 'web',
  pendingPatches: [
    {
      serverName: 'web-1',
      name: 'openssl',
      installedVersion: '3.0.11-1',
      candidateVersion: '3.0.13-1',
      category: 'security',
      severity: 'important',
    },
    {
      serverName: 'web-1',
      name: 'curl',
      installedVersion: '7.88.1-10',
      candidateVersion: '7.88.1-11',
      category: 'bugfix',
      severity: 'unspecified',
    },
  ],
  windowStart: '2026-03-01T23:00:00+01:00',
  windowEnd: '2026-03-02T02:00:00Z',
};

interface SnRecord extends Record<string, unknown> {
  sys_id: string;
  number: string;
}

/** Plays a ServiceNow instance's Table API for change_request. */
class FakeServiceNow {
  records: SnRecord[] = [];
  /** Forced answers for the next requests of a method, before the normal behaviour. */
  forced: { method: string; reply: FakeReply; afterCreate?: boolean }[] = [];
  /** Acts like an instance that ignores a query on a field it cannot read. */
  ignoreQuery = false;
  /** Echo the Authorization header into a 401 body, like a careless proxy. */
  echoAuthOn401 = false;
  expectedAuth = BASIC;
  server!: FakeServer;

  async start() {
    this.server = await startFakeHttp((req) => this.handle(req));
    return this;
  }

  get requests(): RecordedRequest[] {
    return this.server.requests;
  }

  private create(body: Record<string, unknown>): SnRecord {
    const n = this.records.length + 1;
    const record: SnRecord = {
      ...body,
      sys_id: n.toString(16).padStart(32, 'a'),
      number: `CHG00300${String(n).padStart(2, '0')}`,
    };
    this.records.push(record);
    return record;
  }

  private handle(req: RecordedRequest): FakeReply | 'hang' {
    if (req.headers.authorization !== this.expectedAuth) {
      return {
        status: 401,
        body: {
          error: {
            message: 'User Not Authenticated',
            detail: this.echoAuthOn401
              ? `Required to provide Auth information; got ${req.headers.authorization}`
              : 'Required to provide Auth information',
          },
          status: 'failure',
        },
      };
    }
    if (req.headers.accept !== 'application/json')
      return { status: 406, body: { error: { message: 'Accept' } } };
    const i = this.forced.findIndex((f) => f.method === req.method);
    if (i >= 0) {
      const [forced] = this.forced.splice(i, 1);
      if (forced!.afterCreate) this.create(JSON.parse(req.body) as Record<string, unknown>);
      return forced!.reply;
    }
    if (req.url.pathname !== TABLE) return { status: 400, body: { error: { message: 'Invalid table' } } };
    if (req.method === 'GET') {
      const query = req.url.searchParams.get('sysparm_query') ?? '';
      const match = /^correlation_id=(.*)$/.exec(query);
      const rows = this.ignoreQuery
        ? this.records
        : this.records.filter((r) => r['correlation_id'] === match?.[1]);
      const limit = Number(req.url.searchParams.get('sysparm_limit') ?? '10000');
      const fields = (req.url.searchParams.get('sysparm_fields') ?? '').split(',');
      return {
        status: 200,
        body: {
          result: rows.slice(0, limit).map((r) => Object.fromEntries(fields.map((f) => [f, r[f] ?? '']))),
        },
      };
    }
    if (req.method === 'POST') {
      expect(req.headers['content-type']).toBe('application/json');
      const record = this.create(JSON.parse(req.body) as Record<string, unknown>);
      // Reference fields come back as {link, value} without sysparm_display_value.
      const shown: Record<string, unknown> = { ...record };
      for (const ref of ['assignment_group', 'cmdb_ci']) {
        if (typeof record[ref] === 'string') {
          shown[ref] = { link: `${this.server.baseUrl}/api/now/table/x/${record[ref]}`, value: record[ref] };
        }
      }
      return { status: 201, body: { result: shown } };
    }
    return { status: 405 };
  }
}

let sn: FakeServiceNow | undefined;
afterEach(async () => {
  await sn?.server.close();
  sn = undefined;
});

async function fake() {
  sn = await new FakeServiceNow().start();
  return sn;
}

function integration(fakeSn: FakeServiceNow, extra: Record<string, unknown> = {}) {
  return createServiceNowIntegration({
    baseUrl: `${fakeSn.server.baseUrl}/`,
    username: USER,
    password: PASSWORD,
    assignmentGroup: '0a52d3dcd7011200f2d224837e6103f2',
    cmdbCi: 'b4fd7c8437201000deeabfc8bcbe5dc1',
    ...extra,
  });
}

describe('ServiceNow change requests', () => {
  it('createServiceNowIntegration — looks up the correlation id, then POSTs the exact Table API payload', async () => {
    const s = await fake();
    const key = 'delivery-01HZX';
    const tag = idempotencyTag(key);
    const receipt = await integration(s).openChangeRequest(payload, { idempotencyKey: key });

    expect(s.requests).toHaveLength(2);
    const [lookup, create] = s.requests as [RecordedRequest, RecordedRequest];
    expect(lookup.method).toBe('GET');
    expect(lookup.url.pathname).toBe(TABLE);
    expect(lookup.rawUrl).toContain(`sysparm_query=correlation_id%3D${tag}&`);
    expect(Object.fromEntries(lookup.url.searchParams)).toEqual({
      sysparm_query: `correlation_id=${tag}`,
      sysparm_limit: '1',
      sysparm_fields: 'sys_id,number,correlation_id',
    });
    expect(lookup.headers.authorization).toBe(BASIC);

    expect(create.method).toBe('POST');
    expect(create.rawUrl).toBe(TABLE);
    expect(create.headers.authorization).toBe(BASIC);
    expect(create.headers.accept).toBe('application/json');
    expect(create.headers['content-type']).toBe('application/json');
    expect(JSON.parse(create.body)).toEqual({
      short_description: payload.title,
      description: `${payload.description}\n\nFleetward idempotency key: ${key}`,
      type: 'normal',
      correlation_id: tag,
      correlation_display: 'Fleetward',
      assignment_group: '0a52d3dcd7011200f2d224837e6103f2',
      cmdb_ci: 'b4fd7c8437201000deeabfc8bcbe5dc1',
      start_date: '2026-03-01 22:00:00',
      end_date: '2026-03-02 02:00:00',
    });

    const sysId = s.records[0]!.sys_id;
    expect(receipt).toEqual({
      externalId: sysId,
      number: 'CHG0030001',
      externalUrl: `${s.server.baseUrl}/nav_to.do?uri=change_request.do%3Fsys_id%3D${sysId}`,
      reused: false,
    });
    expect(tag).toMatch(/^fleetward-[0-9a-f]{16}$/);
  });

  it('createServiceNowIntegration — sends a Bearer token and the configured change type, omitting unset fields', async () => {
    const s = await fake();
    s.expectedAuth = 'Bearer oauth-access-token-123';
    const sn2 = createServiceNowIntegration({
      baseUrl: s.server.baseUrl,
      token: 'oauth-access-token-123',
      type: 'emergency',
    });
    const { windowStart: _s, windowEnd: _e, ...noWindow } = payload;
    await sn2.openChangeRequest(noWindow, { idempotencyKey: 'k-bearer' });
    const body = JSON.parse(s.requests[1]!.body) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual([
      'correlation_display',
      'correlation_id',
      'description',
      'short_description',
      'type',
    ]);
    expect(body['type']).toBe('emergency');
    expect(sn2.kind).toBe('servicenow');
  });

  it('createServiceNowIntegration — a second call with the same key returns the first change without a second POST', async () => {
    const s = await fake();
    const sn1 = integration(s);
    const first = await sn1.openChangeRequest(payload, { idempotencyKey: 'same-key' });
    // A fresh instance, as after a process restart: the state is in ServiceNow, not in memory.
    const second = await integration(s).openChangeRequest(payload, { idempotencyKey: 'same-key' });
    expect(second).toEqual({ ...first, reused: true });
    expect(s.requests.filter((r) => r.method === 'POST')).toHaveLength(1);
    expect(s.records).toHaveLength(1);

    const other = await sn1.openChangeRequest(payload, { idempotencyKey: 'another-key' });
    expect(other.externalId).not.toBe(first.externalId);
    expect(s.records).toHaveLength(2);
  });

  it('createServiceNowIntegration — reads sys_id and number given as {link, value} reference shapes', async () => {
    const s = await fake();
    s.forced.push({
      method: 'POST',
      reply: {
        status: 201,
        body: {
          result: {
            sys_id: { link: 'https://x/sys', value: 'c0ffee00c0ffee00c0ffee00c0ffee00' },
            number: { display_value: 'CHG0040001', value: 'CHG0040001' },
          },
        },
      },
    });
    const receipt = await integration(s).openChangeRequest(payload, { idempotencyKey: 'ref-shape' });
    expect(receipt.externalId).toBe('c0ffee00c0ffee00c0ffee00c0ffee00');
    expect(receipt.number).toBe('CHG0040001');
  });

  it('createServiceNowIntegration — does not trust a lookup whose query the instance ignored', async () => {
    const s = await fake();
    await integration(s).openChangeRequest(payload, { idempotencyKey: 'unrelated' });
    s.ignoreQuery = true;
    const receipt = await integration(s).openChangeRequest(payload, { idempotencyKey: 'mine' });
    expect(receipt.reused).toBe(false);
    expect(s.records).toHaveLength(2);
    expect(s.records[1]!['correlation_id']).toBe(idempotencyTag('mine'));
  });

  it('createServiceNowIntegration — a 500 is a retryable TransportError and the caller’s retry succeeds once', async () => {
    const s = await fake();
    s.forced.push({
      method: 'POST',
      reply: { status: 500, body: { error: { message: 'Transaction cancelled' } } },
    });
    const sn1 = integration(s);
    const error = await sn1.openChangeRequest(payload, { idempotencyKey: 'k500' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect(error).toMatchObject({
      code: 'TRANSPORT_FAILED',
      retryable: true,
      details: { integration: 'servicenow', status: 500 },
    });
    expect((error as Error).message).toContain('Transaction cancelled');

    const receipt = await sn1.openChangeRequest(payload, { idempotencyKey: 'k500' });
    expect(receipt.reused).toBe(false);
    expect(s.records).toHaveLength(1);
  });

  it('createServiceNowIntegration — a create whose reply was lost is found by the retry, not opened twice', async () => {
    const s = await fake();
    s.forced.push({ method: 'POST', reply: { status: 502, body: 'Bad gateway' }, afterCreate: true });
    const sn1 = integration(s);
    await expect(sn1.openChangeRequest(payload, { idempotencyKey: 'lost' })).rejects.toMatchObject({
      retryable: true,
    });
    const receipt = await sn1.openChangeRequest(payload, { idempotencyKey: 'lost' });
    expect(receipt).toMatchObject({ reused: true, number: 'CHG0030001' });
    expect(s.records).toHaveLength(1);
  });

  it('createServiceNowIntegration — a 401 is not retryable and no error surface carries the credentials', async () => {
    const s = await fake();
    s.echoAuthOn401 = true;
    s.expectedAuth = 'Basic something-else';
    const error = await integration(s)
      .openChangeRequest(payload, { idempotencyKey: 'k401' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrationError);
    expect(error).toMatchObject({
      code: 'UNAUTHORIZED',
      retryable: false,
      status: 401,
      integration: 'servicenow',
    });
    expect((error as Error).message).toContain('401');
    expect((error as Error).message).toContain('User Not Authenticated');
    const surface = errorSurface(error);
    expect(surface).not.toContain(PASSWORD);
    expect(surface).not.toContain(BASIC.slice(6));
    expect((error as IntegrationError).bodyExcerpt).toContain('Basic [REDACTED]');
    expect(s.requests).toHaveLength(1);
  });

  it('createServiceNowIntegration — a redirect (SSO login page) is not followed and not retryable', async () => {
    const s = await fake();
    s.forced.push({
      method: 'GET',
      reply: { status: 302, headers: { Location: 'http://127.0.0.1:1/login' } },
    });
    const error = await integration(s)
      .openChangeRequest(payload, { idempotencyKey: 'k302' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrationError);
    expect(error).toMatchObject({ code: 'COMMAND_FAILED', retryable: false, status: 302 });
    expect(s.requests).toHaveLength(1);
  });

  it('createServiceNowIntegration — carries hostile text as plain JSON strings, with a one-line summary', async () => {
    const s = await fake();
    const hostile = {
      ...payload,
      title: 'x\r\nBcc: evil@x </td><script>alert(1)</script>',
      description: 'line 1 </td><script>alert(1)</script>\r\nX-Injected: yes "quoted" \\ back',
    };
    await integration(s).openChangeRequest(hostile, { idempotencyKey: 'hostile' });
    const body = JSON.parse(s.requests[1]!.body) as Record<string, string>;
    expect(body['short_description']).toBe('x Bcc: evil@x </td><script>alert(1)</script>');
    expect(body['description']).toBe(`${hostile.description}\n\nFleetward idempotency key: hostile`);
  });

  it('createServiceNowIntegration — keeps the idempotency line when the description is too long', async () => {
    const s = await fake();
    await integration(s).openChangeRequest(
      { ...payload, title: 't'.repeat(300), description: 'd'.repeat(10_000) },
      { idempotencyKey: 'long' },
    );
    const body = JSON.parse(s.requests[1]!.body) as Record<string, string>;
    expect(body['short_description']).toHaveLength(160);
    expect(body['description']).toHaveLength(4000);
    expect(body['description']!.endsWith('Fleetward idempotency key: long')).toBe(true);
  });

  it('createServiceNowIntegration — network failures and time-outs are retryable, an abort is not', async () => {
    const port = await closedPort();
    const down = createServiceNowIntegration({
      baseUrl: `http://127.0.0.1:${port}`,
      username: USER,
      password: PASSWORD,
    });
    const refused = await down.openChangeRequest(payload, { idempotencyKey: 'k' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TransportError);
    expect(refused).toMatchObject({ retryable: true });
    expect(errorSurface(refused)).not.toContain(PASSWORD);

    const hanging = await startFakeHttp(() => 'hang');
    try {
      const slow = createServiceNowIntegration({
        baseUrl: hanging.baseUrl,
        username: USER,
        password: PASSWORD,
        timeoutMs: 150,
      });
      const timedOut = await slow
        .openChangeRequest(payload, { idempotencyKey: 'k' })
        .catch((e: unknown) => e);
      expect(timedOut).toBeInstanceOf(TimeoutError);
      expect(timedOut).toMatchObject({ retryable: true });

      const controller = new AbortController();
      const sent = hanging.requests.length;
      // A deadline far away, so only the abort can end this call.
      const patient = createServiceNowIntegration({
        baseUrl: hanging.baseUrl,
        username: USER,
        password: PASSWORD,
        timeoutMs: 60_000,
      });
      const pending = patient.openChangeRequest(payload, { idempotencyKey: 'k', signal: controller.signal });
      // Abort while the request is out (the server has it and never answers), not before it is sent.
      await vi.waitFor(() => expect(hanging.requests.length).toBeGreaterThan(sent), { interval: 5 });
      controller.abort();
      const aborted = await pending.catch((e: unknown) => e);
      expect(aborted).toBeInstanceOf(AbortedError);
      expect(aborted).toMatchObject({ retryable: false });
    } finally {
      await hanging.close();
    }
  });

  it('createServiceNowIntegration — refuses bad configuration before any request', () => {
    const ok = { username: USER, password: PASSWORD };
    expect(() => createServiceNowIntegration({ baseUrl: 'http://sn.example.com', ...ok })).toThrow(
      ValidationError,
    );
    expect(() => createServiceNowIntegration({ baseUrl: 'https://u:p@sn.example.com', ...ok })).toThrow(
      ValidationError,
    );
    expect(() => createServiceNowIntegration({ baseUrl: 'https://sn.example.com?x=1', ...ok })).toThrow(
      ValidationError,
    );
    expect(() => createServiceNowIntegration({ baseUrl: 'https://sn.example.com', username: USER })).toThrow(
      ValidationError,
    );
    expect(() =>
      createServiceNowIntegration({ baseUrl: 'https://sn.example.com', ...ok, token: 'also-a-token' }),
    ).toThrow(ValidationError);
    expect(() =>
      createServiceNowIntegration({ baseUrl: 'http://sn.example.com', ...ok, allowInsecureHttp: true }),
    ).not.toThrow();
    try {
      createServiceNowIntegration({ baseUrl: 'ftp://sn.example.com', username: USER, password: PASSWORD });
    } catch (error) {
      expect(errorSurface(error)).not.toContain(PASSWORD);
    }
  });

  it('createServiceNowIntegration — keeps no credential on the object it returns', () => {
    const sn1 = createServiceNowIntegration({
      baseUrl: 'https://sn.example.com',
      username: USER,
      password: PASSWORD,
    });
    expect(JSON.stringify(sn1)).not.toContain(PASSWORD);
    expect(Object.values(sn1).join(' ')).not.toContain(PASSWORD);
  });

  it('createServiceNowIntegration — rejects an unusable idempotency key without calling out', async () => {
    const s = await fake();
    await expect(integration(s).openChangeRequest(payload, { idempotencyKey: '' })).rejects.toBeInstanceOf(
      ValidationError,
    );
    await expect(
      integration(s).openChangeRequest(payload, { idempotencyKey: 'a\nb' }),
    ).rejects.toBeInstanceOf(ValidationError);
    expect(s.requests).toHaveLength(0);
  });

  it('toServiceNowDateTime — writes UTC as YYYY-MM-DD HH:mm:ss', () => {
    expect(toServiceNowDateTime('2026-03-01T23:30:05+01:00')).toBe('2026-03-01 22:30:05');
    expect(toServiceNowDateTime(new Date('2026-12-31T23:59:59.999Z'))).toBe('2026-12-31 23:59:59');
    expect(() => toServiceNowDateTime('not a date')).toThrow(ValidationError);
  });
});
