import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  type Adapter,
  CredentialSchema,
  createFleet,
  createMemoryStore,
  credentialSecretRef,
  TransportError,
} from '@fleetward/core';
import { createFleetwardApi, issueApiToken } from '@fleetward/http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, principalWithToken, problemOf, type Reply, startHarness } from './support/harness.js';

const run = promisify(execFile);

/** A key pair made by ssh-keygen, the way an operator makes one. */
async function sshKeygen(comment: string): Promise<{ publicKey: string; privateKey: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetward-http-key-'));
  try {
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', join(dir, 'key')]);
    return {
      publicKey: (await readFile(join(dir, 'key.pub'), 'utf8')).trim(),
      privateKey: await readFile(join(dir, 'key'), 'utf8'),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// A server whose every command hangs until the test lets it fail: a rotation on it takes as long as
// the test wants.
let release!: () => void;
const gate = new Promise<void>((resolve) => {
  release = resolve;
});
const gated: Adapter = {
  name: 'gated',
  exec: {
    exec: async () => {
      await gate;
      throw new TransportError('connection refused');
    },
  },
  login: {
    probe: async () => {
      await gate;
      throw new TransportError('connection refused');
    },
  },
};

// A server that is never reached: a rotation on it fails at once and is rolled back. (An adapter
// without `login` is refused before anything starts, so this one has both capabilities.)
const unreachable: Adapter = {
  name: 'unreachable',
  exec: {
    exec: async () => {
      throw new TransportError('connect ECONNREFUSED');
    },
  },
  login: {
    probe: async () => {
      throw new TransportError('connect ECONNREFUSED');
    },
  },
};

let h: Harness;
const failures: unknown[] = [];
let caretaker: string;

beforeAll(async () => {
  h = await startHarness({ adapters: [gated, unreachable], onError: (error) => failures.push(error) });
  const admin = h.fleet.as({ tenantId: 'bravo', principalId: 'bravo-admin' });
  await admin.servers.add({
    id: 'db-1',
    name: 'db-1',
    accountId: 'dc',
    provider: 'ssh',
    address: '10.9.0.2',
  });
  await admin.servers.add({
    id: 'slow-1',
    name: 'slow-1',
    accountId: 'dc',
    provider: 'ssh',
    adapter: 'gated',
  });
  await admin.servers.add({
    id: 'far-1',
    name: 'far-1',
    accountId: 'dc',
    provider: 'ssh',
    adapter: 'unreachable',
  });
  await admin.projects.add({ id: 'db', name: 'db', selector: { ids: ['db-1'] } });
  caretaker = await principalWithToken(h, { tenantId: 'bravo', id: 'carol' });
});
afterAll(async () => {
  release();
  await h.close();
});

const bravo = () => h.tokens.bravo;

/** Every form in which a private key could leak: whole, or any line of its base64 body. */
function leaksKey(text: string, privateKey: string): boolean {
  const lines = privateKey.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'));
  return text.includes(privateKey.trim()) || lines.some((line) => text.includes(line));
}

function expectNoKey(privateKey: string, ...texts: string[]) {
  for (const text of texts) expect(leaksKey(text, privateKey), text.slice(0, 300)).toBe(false);
}

async function auditText(): Promise<string> {
  return JSON.stringify(await h.fleet.store.audit.list('bravo', { limit: 10_000 }));
}

function errorText(error: unknown): string {
  const parts: string[] = [];
  for (let e = error; e; e = e instanceof Error ? e.cause : undefined) {
    parts.push(String(e), e instanceof Error ? (e.stack ?? '') : '', JSON.stringify(e));
  }
  return parts.join('\n');
}

async function register(body: object): Promise<Reply> {
  return h.call('POST', '/v1/keys/credentials', { token: bravo(), body });
}

describe('credentials', () => {
  it('POST /v1/keys/credentials — keeps the private key in the SecretStore only: never in an answer, the audit log or onError', async () => {
    const key = await sshKeygen('deploy@db');
    const created = await register({
      id: 'db-deploy',
      login: 'deploy',
      publicKey: key.publicKey,
      privateKey: key.privateKey,
      caretakerId: 'carol',
      serverIds: ['db-1'],
    });
    expect(created.status, created.text).toBe(201);
    expect(created.headers.get('location')).toBe('/v1/keys/credentials/db-deploy');
    const credential = CredentialSchema.parse(created.json());
    expect(credential).toMatchObject({
      caretakerId: 'carol',
      secretRef: credentialSecretRef('bravo', 'db-deploy'),
    });
    expect(await h.secrets.get(credentialSecretRef('bravo', 'db-deploy'))).toBe(key.privateKey);

    // Refused registrations, after and before the body's schema, carry the key too.
    const duplicate = await register({
      login: 'deploy',
      publicKey: key.publicKey,
      privateKey: key.privateKey,
      caretakerId: 'carol',
      serverIds: ['db-1'],
    });
    expect(duplicate.status).toBe(409);
    const malformed = await register({
      login: 'Deploy!',
      publicKey: key.publicKey,
      privateKey: key.privateKey,
      caretakerId: 'carol',
      serverIds: ['db-1'],
      colour: 'red',
    });
    expect(malformed.status).toBe(400);
    const unknownServer = await register({
      login: 'deploy',
      publicKey: (await sshKeygen('other')).publicKey,
      privateKey: key.privateKey,
      caretakerId: 'carol',
      serverIds: ['nowhere-1'],
    });
    expect(unknownServer.status).toBe(422);
    const listed = await h.call('GET', '/v1/keys/credentials', { token: bravo() });
    expect(listed.json().items.map((c: { id: string }) => c.id)).toContain('db-deploy');

    expectNoKey(
      key.privateKey,
      created.text,
      duplicate.text,
      malformed.text,
      unknownServer.text,
      listed.text,
      await auditText(),
      ...failures.map(errorText),
    );
  });

  it('POST /v1/keys/credentials — a SecretStore that fails, and names the key in its error, still leaks it nowhere', async () => {
    const key = await sshKeygen('leaky');
    const set = h.secrets.set.bind(h.secrets);
    h.secrets.set = async (_ref: string, value: string) => {
      throw new Error(`vault refused to store ${value}`);
    };
    try {
      const before = failures.length;
      const response = await register({
        login: 'deploy',
        publicKey: key.publicKey,
        privateKey: key.privateKey,
        caretakerId: 'carol',
        serverIds: ['db-1'],
      });
      expect(response.status).toBe(500);
      expect(problemOf(response).code).toBe('INTERNAL');
      expect(failures.length).toBe(before + 1);
      expectNoKey(key.privateKey, response.text, await auditText(), ...failures.map(errorText));
      expect(errorText(failures.at(-1))).toMatch(/vault refused to store/);
    } finally {
      h.secrets.set = set;
    }
  });

  it('PUT /v1/keys/credentials/{credentialId}/caretaker — hands the key to exactly one other principal', async () => {
    const key = await sshKeygen('handover');
    await register({
      id: 'handover',
      login: 'deploy',
      publicKey: key.publicKey,
      caretakerId: 'carol',
      serverIds: ['db-1'],
    });
    const moved = await h.call('PUT', '/v1/keys/credentials/handover/caretaker', {
      token: caretaker,
      body: { caretakerId: 'bravo-admin' },
    });
    expect(moved.status, moved.text).toBe(200);
    expect(moved.json()).toMatchObject({ id: 'handover', caretakerId: 'bravo-admin' });
    const nobody = await h.call('PUT', '/v1/keys/credentials/handover/caretaker', {
      token: caretaker,
      body: { caretakerId: 'nobody' },
    });
    expect(nobody.status).toBe(404);
  });
});

describe('rotation', () => {
  it('POST /v1/keys/credentials/{credentialId}/rotation — answers with the report when the rotation ends in time: a server it cannot reach rolls it back', async () => {
    const key = await sshKeygen('rotate-me');
    await register({
      id: 'rotate-me',
      login: 'deploy',
      publicKey: key.publicKey,
      privateKey: key.privateKey,
      caretakerId: 'carol',
      serverIds: ['far-1'],
    });
    const response = await h.call('POST', '/v1/keys/credentials/rotate-me/rotation', {
      token: bravo(),
      body: { graceMinutes: 2 },
    });
    expect(response.status, response.text).toBe(200);
    const report = response.json();
    expect(report).toMatchObject({
      credentialId: 'rotate-me',
      status: 'rolled-back',
      jobId: expect.any(String),
    });
    expect(report.oldFingerprint).not.toBe(report.newFingerprint);
    expect(report.servers).toEqual([
      expect.objectContaining({ serverId: 'far-1', error: expect.any(Object) }),
    ]);
    expect(response.text).not.toMatch(/PRIVATE KEY/);
    expectNoKey(key.privateKey, response.text);
    const after = (await h.call('GET', '/v1/keys/credentials', { token: bravo() })).json().items;
    expect(after.find((c: { id: string }) => c.id === 'rotate-me')).toMatchObject({
      status: 'active',
      fingerprint: report.oldFingerprint,
    });
    // The old key is still the one in the SecretStore, and the unused new one is gone.
    expect(await h.secrets.get(credentialSecretRef('bravo', 'rotate-me'))).toBe(key.privateKey);
    expect(await h.secrets.get(`${credentialSecretRef('bravo', 'rotate-me')}.next`)).toBeUndefined();
  });

  it('POST /v1/keys/credentials/{credentialId}/rotation — answers 202 when the rotation outlasts waitMs, and the rotation still ends', async () => {
    const key = await sshKeygen('slow');
    await register({
      id: 'slow-key',
      login: 'deploy',
      publicKey: key.publicKey,
      privateKey: key.privateKey,
      caretakerId: 'carol',
      serverIds: ['slow-1'],
    });
    const before = failures.length;
    const response = await h.call('POST', '/v1/keys/credentials/slow-key/rotation', {
      token: bravo(),
      body: { waitMs: 100 },
    });
    expect(response.status, response.text).toBe(202);
    expect(response.json()).toEqual({ credentialId: 'slow-key', status: 'running' });
    const status = async () => (await h.fleet.store.credentials.get('bravo', 'slow-key'))?.status;
    expect(await status()).toBe('rotating');
    // Rotating it again meanwhile is refused: the running rotation holds the credential.
    const again = await h.call('POST', '/v1/keys/credentials/slow-key/rotation', { token: bravo() });
    expect(again.status).toBe(409);

    release();
    // The rotation's last word is its audit record; the credential is active again just before it.
    const ended = async () =>
      (await h.fleet.store.audit.list('bravo', { action: 'keys.rotate', limit: 10_000 })).find(
        (r) =>
          r.target?.type === 'credential' &&
          r.target.id === 'slow-key' &&
          r.details?.['step'] === 'rolled-back',
      );
    for (let i = 0; i < 200 && !(await ended()); i++) await new Promise((r) => setTimeout(r, 25));
    expect(await ended()).toMatchObject({
      result: 'failure',
      reason: expect.stringMatching(/connection refused/),
    });
    expect(await status()).toBe('active');
    expect(failures.length).toBe(before);
  });

  it('POST /v1/keys/credentials/{credentialId}/rotation — a Fleet without a SecretStore answers 501 CAPABILITY_MISSING', async () => {
    const fleet = createFleet({ store: createMemoryStore(), adapters: [gated] });
    await fleet.bootstrapTenant({
      tenant: { id: 'acme', name: 'Acme' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    const alice = fleet.as({ tenantId: 'acme', principalId: 'alice' });
    await alice.servers.add({ id: 's1', name: 's1', accountId: 'dc', provider: 'ssh', adapter: 'gated' });
    await alice.keys.register({
      id: 'k1',
      login: 'deploy',
      publicKey: (await sshKeygen('k1')).publicKey,
      caretakerId: 'alice',
      serverIds: ['s1'],
    });
    const { token } = await issueApiToken(fleet, { tenantId: 'acme', principalId: 'alice', name: 't' });
    const reported: unknown[] = [];
    const api = createFleetwardApi(fleet, { onError: (error) => reported.push(error) });
    const response = await api.request('/v1/keys/credentials/k1/rotation', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(501);
    expect(((await response.json()) as { code: string }).code).toBe('CAPABILITY_MISSING');
    expect(String(reported[0])).toMatch(/needs a SecretStore/);
    await fleet.close();
  });
});

describe('rotation policies and inventory', () => {
  it('PUT /v1/keys/rotation-policies/{projectId} and GET /v1/keys/due — a key older than its project’s interval is due', async () => {
    const key = await sshKeygen('aging');
    await register({
      id: 'aging',
      login: 'deploy',
      publicKey: key.publicKey,
      caretakerId: 'carol',
      serverIds: ['db-1'],
    });
    const set = await h.call('PUT', '/v1/keys/rotation-policies/db', {
      token: bravo(),
      body: { intervalHours: 24, graceMinutes: 10 },
    });
    expect(set.status, set.text).toBe(200);
    expect(set.json()).toMatchObject({ projectId: 'db', intervalHours: 24, graceMinutes: 10, enabled: true });
    const updated = await h.call('PUT', '/v1/keys/rotation-policies/db', {
      token: bravo(),
      body: { intervalHours: 48 },
    });
    expect(updated.json()).toMatchObject({ intervalHours: 48, version: set.json().version + 1 });
    expect(
      (await h.call('GET', '/v1/keys/rotation-policies/db', { token: bravo() })).json().intervalHours,
    ).toBe(48);
    expect((await h.call('GET', '/v1/keys/rotation-policies/web', { token: bravo() })).status).toBe(404);
    expect(
      (await h.call('PUT', '/v1/keys/rotation-policies/nope', { token: bravo(), body: { intervalHours: 1 } }))
        .status,
    ).toBe(404);

    const notYet = await h.call('GET', '/v1/keys/due', { token: bravo() });
    expect(notYet.json().items.map((d: { credential: { id: string } }) => d.credential.id)).not.toContain(
      'aging',
    );
    h.clock.advance(49 * 3_600_000);
    const due = await h.call('GET', '/v1/keys/due', { token: bravo() });
    expect(due.status).toBe(200);
    expect(due.json().items).toContainEqual(
      expect.objectContaining({
        credential: expect.objectContaining({ id: 'aging' }),
        policy: expect.objectContaining({ projectId: 'db' }),
        dueAt: expect.any(String),
      }),
    );
  });

  it('POST /v1/keys/inventories — records what it could read per server, and GET …/latest returns the newest', async () => {
    const response = await h.call('POST', '/v1/keys/inventories', {
      token: bravo(),
      body: { targets: { serverIds: ['db-1'] } },
    });
    expect(response.status, response.text).toBe(200);
    expect(response.json().inventories).toEqual([
      expect.objectContaining({
        serverId: 'db-1',
        status: 'failed',
        error: expect.objectContaining({ code: 'CAPABILITY_MISSING' }),
      }),
    ]);
    const latest = await h.call('GET', '/v1/keys/inventories/latest', { token: bravo() });
    expect(latest.json().items.map((i: { id: string }) => i.id)).toContain(response.json().inventories[0].id);
    const reader = await principalWithToken(h, {
      tenantId: 'bravo',
      id: 'reader',
      rules: [{ effect: 'allow', actions: ['inventory.read'] }],
    });
    expect((await h.call('GET', '/v1/keys/inventories/latest', { token: reader })).status).toBe(403);
  });
});
