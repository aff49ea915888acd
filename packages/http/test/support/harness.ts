import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFleet, createLocalAdapter, type Fleet } from '@fleetward/core';
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
 * Two tenants on a SQLite store in a temporary folder, served on an ephemeral loopback port.
 * `alpha` is seeded with one entity of every kind a route takes an id of; `bravo` only has its admin.
 */
export async function startHarness(options: Omit<ServeOptions, 'port' | 'hostname'> = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetward-http-'));
  const clock = new ManualClock(new Date());
  const store = createSqliteStore({ path: join(dir, 'fleetward.db'), synchronous: 'normal', clock });
  const fleet = createFleet({ store, adapters: [createLocalAdapter()], clock });
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

  const served = await serveFleetwardApi(fleet, { port: 0, ...options });
  return {
    fleet,
    clock,
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
