import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Adapter,
  createFleet,
  createLocalAdapter,
  type Fleet,
  generateAuditSigningKey,
  generateEd25519KeyPair,
  MemorySecretStore,
  TENANT_ADMIN_ROLE_ID,
} from '@fleetward/core';
import { type FleetwardServer, issueApiToken, type ServeOptions, serveFleetwardApi } from '@fleetward/http';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { ManualClock, sampleInput } from '@fleetward/testkit';

/** Every id tenant `alpha` owns carries this, so that a leak shows up in any response text. */
export const ALPHA_MARK = 'zz-alpha';

/** Ids of alpha's entities, by the path parameter that names such an entity. */
export interface AlphaIds {
  serverId: string;
  projectId: string;
  policyId: string;
  planId: string;
  standardId: string;
  tokenId: string;
  principalId: string;
  /** A pending access request of alpha's admin. */
  requestId: string;
  /** An active grant (mode `actions`) of alpha's admin. */
  grantId: string;
  /** A managed key whose private key is in the SecretStore. */
  credentialId: string;
  scriptName: string;
  /** A script run awaiting its start. */
  runId: string;
  runbookName: string;
  /** A runbook run awaiting the approval of its first step. */
  runbookRunId: string;
}

/** A response, read. */
export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests read bodies loosely and assert their shape
  json: () => any;
}

export interface Harness {
  fleet: Fleet;
  clock: ManualClock;
  secrets: MemorySecretStore;
  /** The private key of alpha's credential, which must never leave the SecretStore. */
  alphaPrivateKey: string;
  server: FleetwardServer;
  url: string;
  /** Admin tokens of the two tenants. */
  tokens: { alpha: string; bravo: string };
  alpha: AlphaIds;
  call(
    method: string,
    path: string,
    options?: { token?: string; body?: unknown; headers?: Record<string, string>; raw?: string | Uint8Array },
  ): Promise<Reply>;
  close(): Promise<void>;
}

/**
 * Two tenants on a SQLite store in a temporary folder, served on an ephemeral loopback port, with an
 * in-memory SecretStore and an audit signing key. `alpha` is seeded with one entity of every kind a
 * route takes an id of; `bravo` only has its admin.
 */
export async function startHarness(
  options: Omit<ServeOptions, 'port' | 'hostname'> & { adapters?: Adapter[] } = {},
): Promise<Harness> {
  const { adapters = [], ...serveOptions } = options;
  const dir = mkdtempSync(join(tmpdir(), 'fleetward-http-'));
  const clock = new ManualClock(new Date());
  const store = createSqliteStore({ path: join(dir, 'fleetward.db'), synchronous: 'normal', clock });
  const secrets = new MemorySecretStore();
  const fleet = createFleet({
    store,
    adapters: [createLocalAdapter(), ...adapters],
    clock,
    secrets,
    auditSigningKey: generateAuditSigningKey().privateKeyPem,
    // No adapter reaches the harness's servers: requests are not checked against them.
    access: { checkServers: false },
  });
  await fleet.bootstrapTenant({
    tenant: { id: 'alpha', name: 'Alpha' },
    admin: { id: `${ALPHA_MARK}-admin`, name: 'Alpha admin', kind: 'human', affiliation: 'employee' },
  });
  await fleet.bootstrapTenant({
    tenant: { id: 'bravo', name: 'Bravo' },
    admin: { id: 'bravo-admin', name: 'Bravo admin', kind: 'human', affiliation: 'employee' },
  });
  const alphaToken = await issueApiToken(fleet, {
    tenantId: 'alpha',
    principalId: `${ALPHA_MARK}-admin`,
    name: 'alpha admin',
  });
  const bravoToken = await issueApiToken(fleet, {
    tenantId: 'bravo',
    principalId: 'bravo-admin',
    name: 'bravo admin',
  });

  const admin = fleet.as({ tenantId: 'alpha', principalId: `${ALPHA_MARK}-admin` });
  const server = await admin.servers.add({
    id: `${ALPHA_MARK}-web-1`,
    name: `${ALPHA_MARK}-web-1`,
    accountId: `${ALPHA_MARK}-dc`,
    provider: 'ssh',
    address: '10.250.0.1',
    labels: { tier: 'web' },
  });
  const project = await admin.projects.add({
    id: `${ALPHA_MARK}-web`,
    name: `${ALPHA_MARK} web`,
    selector: { labels: { tier: 'web' } },
  });
  const policy = await admin.patch.policies.add({
    id: `${ALPHA_MARK}-policy`,
    name: `${ALPHA_MARK} policy`,
    projectId: project.id,
  });
  // A plan needs a scan and an install simulation on a real host; its record is all the routes need.
  const plan = await fleet.store.patchPlans.create({
    ...sampleInput('patchPlans', 'alpha'),
    id: `${ALPHA_MARK}-plan`,
    policyId: policy.id,
    projectId: project.id,
    requestedBy: `${ALPHA_MARK}-admin`,
  });
  const standard = await admin.compliance.standards.add({
    id: `${ALPHA_MARK}-sec7`,
    name: `${ALPHA_MARK} sec7`,
    rule: { kind: 'max-pending-age', maxAgeDays: 7 },
  });
  await admin.accounts.add({ id: `${ALPHA_MARK}-dc`, name: `${ALPHA_MARK} dc`, provider: 'ssh' });

  await admin.iam.addPrincipal({
    id: `${ALPHA_MARK}-approver`,
    name: 'Alpha approver',
    kind: 'human',
    affiliation: 'employee',
  });
  await admin.iam.bindRole(`${ALPHA_MARK}-approver`, TENANT_ADMIN_ROLE_ID);
  const approver = fleet.as({ tenantId: 'alpha', principalId: `${ALPHA_MARK}-approver` });
  // Mode `actions` touches no server, so the grant is active as soon as it is approved.
  const access = {
    servers: { serverIds: [server.id] },
    mode: 'actions' as const,
    actions: ['inventory.read'],
    durationMinutes: 240,
    reason: `${ALPHA_MARK} needs to read the inventory`,
    ticket: `${ALPHA_MARK}-INC-1`,
  };
  const granted = await admin.access.request(access);
  const { grant } = await approver.access.approve(granted.id);
  const pending = await admin.access.request(access);
  const alphaKey = generateEd25519KeyPair(`${ALPHA_MARK}-key`);
  const credential = await admin.keys.register({
    id: `${ALPHA_MARK}-cred`,
    login: 'deploy',
    publicKey: alphaKey.publicKey,
    privateKey: alphaKey.privateKey,
    caretakerId: `${ALPHA_MARK}-admin`,
    serverIds: [server.id],
  });
  await admin.keys.policies.set({ projectId: project.id, intervalHours: 720 });
  const script = await admin.scripts.add({
    name: `${ALPHA_MARK}-hello`,
    interpreter: 'sh',
    body: 'echo hello\n',
  });
  const run = await admin.scripts.planRun({ script: script.name, targets: { serverIds: [server.id] } });
  const runbook = await admin.runbooks.define({
    name: `${ALPHA_MARK}-greet`,
    steps: [
      { id: 'sign-off', kind: 'approval' },
      { id: 'greet', kind: 'script', script: script.name },
    ],
  });
  // The approval step comes first: the run pauses before it could reach the (unreachable) server.
  const runbookRun = await admin.runbooks.start({
    runbook: runbook.name,
    targets: { serverIds: [server.id] },
  });

  const served = await serveFleetwardApi(fleet, { port: 0, ...serveOptions });
  return {
    fleet,
    clock,
    secrets,
    alphaPrivateKey: alphaKey.privateKey,
    server: served,
    url: served.url,
    tokens: { alpha: alphaToken.token, bravo: bravoToken.token },
    alpha: {
      serverId: server.id,
      projectId: project.id,
      policyId: policy.id,
      planId: plan.id,
      standardId: standard.id,
      tokenId: alphaToken.apiToken.id,
      principalId: `${ALPHA_MARK}-admin`,
      requestId: pending.id,
      grantId: grant!.id,
      credentialId: credential.id,
      scriptName: script.name,
      runId: run.id,
      runbookName: runbook.name,
      runbookRunId: runbookRun.id,
    },
    async call(method, path, opts = {}) {
      const headers: Record<string, string> = { ...opts.headers };
      if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
      let body: string | Uint8Array | undefined = opts.raw;
      if (opts.body !== undefined) {
        body = JSON.stringify(opts.body);
        headers['content-type'] ??= 'application/json';
      }
      const response = await fetch(`${served.url}${path}`, { method, headers, ...(body ? { body } : {}) });
      const text = await response.text();
      return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) };
    },
    async close() {
      await served.close();
      await fleet.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Expects an RFC 9457 problem with this status and code. */
export function problemOf(response: Reply) {
  const problem = response.json();
  return { contentType: response.headers.get('content-type'), ...problem } as {
    contentType: string | null;
    type: string;
    title: string;
    status: number;
    detail: string;
    instance: string;
    code: string;
    retryable: boolean;
    errors?: { in?: string; path: (string | number)[]; pointer?: string; message: string }[];
  };
}

/**
 * Adds a principal to `tenantId` (as its admin), bound to the built-in tenant-admin role or to a new
 * role with `rules`, and issues it a token.
 */
export async function principalWithToken(
  h: Harness,
  options: {
    tenantId: 'alpha' | 'bravo';
    id: string;
    rules?: { effect: 'allow' | 'deny'; actions: string[]; mfaWithinMinutes?: number; servers?: object }[];
  },
): Promise<string> {
  const adminId = options.tenantId === 'alpha' ? `${ALPHA_MARK}-admin` : 'bravo-admin';
  const admin = h.fleet.as({ tenantId: options.tenantId, principalId: adminId });
  await admin.iam.addPrincipal({ id: options.id, name: options.id, kind: 'human', affiliation: 'employee' });
  let roleId = TENANT_ADMIN_ROLE_ID;
  if (options.rules) {
    roleId = `${options.id}-role`;
    await h.fleet.store.roles.create({
      tenantId: options.tenantId,
      id: roleId,
      name: `${options.id} role`,
      rules: options.rules,
    } as never);
  }
  await admin.iam.bindRole(options.id, roleId);
  return (
    await issueApiToken(h.fleet, { tenantId: options.tenantId, principalId: options.id, name: options.id })
  ).token;
}
