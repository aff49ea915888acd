import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Action,
  type Adapter,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  ENTITY_KINDS,
  type Fleet,
  type FleetSession,
  generateAuditSigningKey,
  generateEd25519KeyPair,
  MemorySecretStore,
  TENANT_ADMIN_ROLE_ID,
} from '@fleetward/core';
import { ManualClock, sampleInput } from '@fleetward/testkit';

/** The tenant every walk acts in, and the one that must never be touched by it. */
export const T = 'walk-a';
export const OTHER = 'walk-b';

/** Ids of the walk tenant's seeded entities, one of every kind a facade method takes an id of. */
export interface WalkIds {
  serverId: string;
  serverVersion: number;
  projectId: string;
  projectVersion: number;
  policyId: string;
  planId: string;
  planHash: string;
  standardId: string;
  scheduleId: string;
  webhookId: string;
  outboxId: string;
  requestId: string;
  grantId: string;
  credentialId: string;
  newPublicKey: string;
  scriptName: string;
  scriptHash: string;
  runId: string;
  runbookName: string;
  runbookRunId: string;
  /** A principal with one role binding (`bindingId`), neither of them needed by anything else. */
  principalId: string;
  bindingId: string;
  /** A role no binding uses. */
  roleId: string;
  /** An account no server belongs to. */
  accountId: string;
  /** A folder a script repository was exported into. */
  repoDir: string;
  /** An empty folder for exports. */
  exportDir: string;
}

export interface WalkFixture {
  fleet: Fleet;
  clock: ManualClock;
  secrets: MemorySecretStore;
  /** Bound to the built-in tenant-admin role. */
  admin: FleetSession;
  /** A principal of the tenant with no role at all. */
  nobody: FleetSession;
  ids: WalkIds;
  close(): Promise<void>;
}

/**
 * Every command runs a real local process, but never the command asked for: `/bin/false` fails
 * as a host whose package manager errors would, so workflows end with an audited failure and
 * nothing on this machine is ever changed by a walk.
 */
function falseAdapter(): Adapter {
  const local = createLocalAdapter({ name: 'false-local' });
  return {
    name: 'fake',
    exec: {
      exec: (server, _command, options) => local.exec!.exec(server, { argv: ['/bin/false'] }, options),
    },
  };
}

/** A fresh fleet on the in-memory store with tenant `walk-a` seeded with one entity of each kind. */
export async function createWalkFixture(): Promise<WalkFixture> {
  const clock = new ManualClock('2026-06-01T10:00:00.000Z');
  const secrets = new MemorySecretStore();
  const fleet = createFleet({
    store: createMemoryStore({ clock }),
    adapters: [falseAdapter()],
    clock,
    secrets,
    auditSigningKey: generateAuditSigningKey().privateKeyPem,
  });
  await fleet.bootstrapTenant({
    tenant: { id: T, name: 'Walk' },
    admin: { id: 'admin', name: 'Admin', kind: 'human', affiliation: 'employee' },
  });
  await fleet.bootstrapTenant({
    tenant: { id: OTHER, name: 'Other' },
    admin: { id: 'b-admin', name: 'B admin', kind: 'human', affiliation: 'employee' },
  });
  const admin = fleet.as({ tenantId: T, principalId: 'admin' });
  await admin.iam.addPrincipal({ id: 'approver', name: 'Approver', kind: 'human', affiliation: 'employee' });
  await admin.iam.bindRole('approver', TENANT_ADMIN_ROLE_ID);
  await admin.iam.addPrincipal({ id: 'nobody', name: 'Nobody', kind: 'human', affiliation: 'employee' });
  await admin.iam.addPrincipal({ id: 'leaver', name: 'Leaver', kind: 'human', affiliation: 'contractor' });
  await admin.iam.addRole({
    id: 'viewer',
    name: 'Viewer',
    rules: [{ effect: 'allow', actions: ['inventory.read'] }],
  });
  const unused = await admin.iam.addRole({
    id: 'unused',
    name: 'Unused',
    rules: [{ effect: 'deny', actions: ['patch.*'] }],
  });
  const approver = fleet.as({ tenantId: T, principalId: 'approver' });

  await admin.accounts.add({ id: 'dc', name: 'dc', provider: 'ssh' });
  const spare = await admin.accounts.add({ id: 'spare', name: 'spare', provider: 'ssh' });
  const server = await admin.servers.add({
    id: 'web-1',
    name: 'web-1',
    accountId: 'dc',
    provider: 'ssh',
    address: '10.250.0.1',
    adapter: 'fake',
    labels: { tier: 'web' },
  });
  const project = await admin.projects.add({ id: 'web', name: 'web', selector: { labels: { tier: 'web' } } });
  const leaverBinding = await admin.iam.bindRole('leaver', 'viewer', { projectIds: [project.id] });
  const policy = await admin.patch.policies.add({ id: 'pol', name: 'Policy', projectId: project.id });
  // A real plan needs a successful install simulation; its record is all the methods need.
  const plan = await fleet.store.patchPlans.create({
    ...sampleInput('patchPlans', T),
    id: 'plan-1',
    policyId: policy.id,
    projectId: project.id,
    requestedBy: 'admin',
    servers: [{ ...sampleInput('patchPlans', T).servers[0]!, serverId: server.id }],
    waves: [{ name: 'all', serverIds: [server.id] }],
  });
  const standard = await admin.compliance.standards.add({
    id: 'sec7',
    name: 'sec7',
    rule: { kind: 'max-pending-age', maxAgeDays: 7 },
  });
  const schedule = await admin.schedules.add({
    id: 'sched-1',
    projectId: project.id,
    runAs: 'admin',
    intervalMinutes: 60,
  });
  const { endpoint } = await admin.notify.webhooks.add({
    url: 'http://127.0.0.1:9/hooks',
    events: ['scan.*'],
  });
  const outbox = await fleet.store.outbox.create({
    ...sampleInput('outbox', T),
    destinationId: endpoint.id,
    status: 'parked',
  });
  const access = {
    servers: { serverIds: [server.id] },
    mode: 'actions' as const,
    actions: ['inventory.read'],
    durationMinutes: 240,
    reason: 'needs to read the inventory',
    ticket: 'INC-1',
  };
  const granted = await admin.access.request(access);
  const { grant } = await approver.access.approve(granted.id);
  const pending = await admin.access.request(access);
  const key = generateEd25519KeyPair('walk-key');
  const credential = await admin.keys.register({
    id: 'cred-1',
    login: 'deploy',
    publicKey: key.publicKey,
    privateKey: key.privateKey,
    caretakerId: 'admin',
    serverIds: [server.id],
  });
  await admin.keys.policies.set({ projectId: project.id, intervalHours: 720 });
  const script = await admin.scripts.add({ name: 'hello', interpreter: 'sh', body: 'echo hello\n' });
  const run = await admin.scripts.planRun({ script: script.name, targets: { serverIds: [server.id] } });
  const runbook = await admin.runbooks.define({
    name: 'greet',
    steps: [
      { id: 'sign-off', kind: 'approval' },
      { id: 'greet', kind: 'script', script: script.name },
    ],
  });
  // The approval step comes first: the run pauses before it reaches the server.
  const runbookRun = await admin.runbooks.start({
    runbook: runbook.name,
    targets: { serverIds: [server.id] },
  });
  const repoDir = await mkdtemp(join(tmpdir(), 'fleetward-walk-repo-'));
  const exportDir = await mkdtemp(join(tmpdir(), 'fleetward-walk-export-'));
  await admin.scripts.exportRepository(repoDir);

  const current = await fleet.store.servers.require(T, server.id);
  const currentProject = await fleet.store.projects.require(T, project.id);
  return {
    fleet,
    clock,
    secrets,
    admin,
    nobody: fleet.as({ tenantId: T, principalId: 'nobody' }),
    ids: {
      serverId: server.id,
      serverVersion: current.version,
      projectId: project.id,
      projectVersion: currentProject.version,
      policyId: policy.id,
      planId: plan.id,
      planHash: plan.hash,
      standardId: standard.id,
      scheduleId: schedule.id,
      webhookId: endpoint.id,
      outboxId: outbox.id,
      requestId: pending.id,
      grantId: grant!.id,
      credentialId: credential.id,
      newPublicKey: generateEd25519KeyPair('walk-key-2').publicKey,
      scriptName: script.name,
      scriptHash: script.contentHash,
      runId: run.id,
      runbookName: runbook.name,
      runbookRunId: runbookRun.id,
      principalId: 'leaver',
      bindingId: leaverBinding.id,
      roleId: unused.id,
      accountId: spare.id,
      repoDir,
      exportDir,
    },
    async close() {
      await fleet.close();
      await rm(repoDir, { recursive: true, force: true });
      await rm(exportDir, { recursive: true, force: true });
    },
  };
}

/** One facade method, as the walks call it. */
export interface WalkRow {
  /** Valid sample arguments: the tenant admin's call reaches authorization with them. */
  args(ids: WalkIds): unknown[];
  /** The action a principal without roles is refused, named in its deny record. */
  action: Action;
  /** Who calls it allowed, when the admin may not (it started or requested the thing approved). */
  allowedAs?: 'approver';
  /** The action of the allowed call's record, when it is not `action`. */
  allowAction?: string;
  /**
   * Known breaks of rule 1, left for the owners of the method to fix: their test is expected to
   * fail (`it.fails`) until the fix lands, and then fails itself so that the entry is removed.
   */
  gaps?: { deny?: string; allow?: string };
  /** Arguments that are folders on this machine: the embedder's choice, never walked with hostile strings. */
  pathArgs?: number[];
}

/**
 * A row for every method of the session facade. A method without a row fails the walks: adding
 * one to the facade means saying here how it is called and what it is authorized as.
 */
export const WALK_TABLE: Record<string, WalkRow> = {
  // ---- the session itself
  scan: { args: (i) => [{ serverIds: [i.serverId] }, {}], action: 'patch.scan' },
  latestScans: { args: (i) => [{ serverIds: [i.serverId] }], action: 'patch.read' },
  auditLog: { args: () => [{}], action: 'audit.read' },
  verifyAuditLog: { args: () => [{}], action: 'audit.read' },
  selectServers: { args: () => [{ labels: { tier: 'web' } }], action: 'inventory.read' },

  // ---- inventory
  'servers.add': {
    args: () => [
      {
        id: 'web-2',
        name: 'web-2',
        accountId: 'dc',
        provider: 'ssh',
        address: '10.250.0.2',
        adapter: 'fake',
        labels: { tier: 'web' },
      },
    ],
    action: 'inventory.write',
  },
  'servers.update': {
    args: (i) => [i.serverId, { labels: { tier: 'web', rack: 'r1' } }, { expectedVersion: i.serverVersion }],
    action: 'inventory.write',
  },
  'inventory.discover': { args: (i) => [{ accountIds: [i.accountId] }], action: 'inventory.discover' },
  'servers.remove': { args: (i) => [i.serverId, {}], action: 'inventory.write' },
  'servers.get': { args: (i) => [i.serverId], action: 'inventory.read' },
  'servers.list': { args: () => [{}], action: 'inventory.read' },
  'accounts.add': { args: () => [{ id: 'dc2', name: 'dc2', provider: 'ssh' }], action: 'inventory.write' },
  'accounts.list': { args: () => [], action: 'inventory.read' },
  'accounts.get': { args: (i) => [i.accountId], action: 'inventory.read' },
  'accounts.remove': { args: (i) => [i.accountId, {}], action: 'inventory.write' },
  'projects.add': {
    args: () => [{ id: 'db', name: 'db', selector: { labels: { tier: 'db' } } }],
    action: 'inventory.write',
  },
  'projects.update': {
    args: (i) => [i.projectId, { name: 'Web' }, { expectedVersion: i.projectVersion }],
    action: 'inventory.write',
  },
  'projects.remove': { args: (i) => [i.projectId, {}], action: 'inventory.write' },
  'projects.get': { args: (i) => [i.projectId], action: 'inventory.read' },
  'projects.list': { args: () => [], action: 'inventory.read' },
  'projects.servers': { args: (i) => [i.projectId], action: 'inventory.read' },

  // ---- principals, roles and bindings
  'iam.addPrincipal': {
    args: () => [{ id: 'new-p', name: 'New', kind: 'human', affiliation: 'employee' }],
    action: 'iam.write',
  },
  'iam.bindRole': {
    args: (i) => ['nobody', TENANT_ADMIN_ROLE_ID, { projectIds: [i.projectId] }],
    action: 'iam.write',
  },
  'iam.listPrincipals': { args: () => [], action: 'iam.read' },
  'iam.getPrincipal': { args: (i) => [i.principalId], action: 'iam.read' },
  'iam.removePrincipal': { args: (i) => [i.principalId], action: 'iam.write' },
  'iam.listBindings': { args: (i) => [{ principalId: i.principalId }], action: 'iam.read' },
  'iam.unbindRole': { args: (i) => [i.bindingId], action: 'iam.write' },
  'iam.addRole': {
    args: () => [{ id: 'role-2', name: 'Role 2', rules: [{ effect: 'allow', actions: ['inventory.read'] }] }],
    action: 'iam.write',
  },
  'iam.getRole': { args: (i) => [i.roleId], action: 'iam.read' },
  'iam.listRoles': { args: () => [], action: 'iam.read' },
  'iam.removeRole': { args: (i) => [i.roleId], action: 'iam.write' },

  // ---- reports
  'reports.compliance': {
    args: (i) => [{ kind: 'project', id: i.projectId }, { title: 'Walk' }],
    action: 'patch.read',
  },
  'reports.emailCompliance': {
    args: (i) => [
      { kind: 'project', id: i.projectId },
      { integrationId: 'mail', to: ['cio@acme.test'] },
    ],
    action: 'patch.read',
  },

  // ---- schedules
  'schedules.add': {
    args: (i) => [{ id: 'sched-2', projectId: i.projectId, runAs: 'admin', intervalMinutes: 30 }],
    action: 'patch.policy',
  },
  'schedules.list': {
    args: () => [],
    action: 'patch.read',
  },
  'schedules.remove': { args: (i) => [i.scheduleId], action: 'patch.policy' },

  // ---- patching
  'patch.policies.add': {
    args: (i) => [{ id: 'pol-2', name: 'Policy 2', projectId: i.projectId }],
    action: 'patch.policy',
  },
  'patch.policies.update': {
    args: (i) => [i.policyId, { name: 'Renamed' }, { expectedVersion: 1 }],
    action: 'patch.policy',
  },
  'patch.policies.get': { args: (i) => [i.policyId], action: 'patch.read' },
  'patch.policies.remove': { args: (i) => [i.policyId, {}], action: 'patch.policy' },
  'patch.policies.list': {
    args: () => [],
    action: 'patch.read',
  },
  'patch.planPatchRun': { args: (i) => [{ policyId: i.policyId }], action: 'patch.plan' },
  'patch.getPlan': { args: (i) => [i.planId], action: 'patch.read' },
  'patch.approvePlan': {
    args: (i) => [i.planId, { hash: i.planHash }],
    action: 'patch.approve',
    allowedAs: 'approver',
  },
  'patch.executePlan': {
    args: (i) => [i.planId, {}],
    action: 'patch.execute',
  },
  'patch.approveExclusions': {
    args: (i) => [i.planId, ['openssl']],
    action: 'patch.approve',
    allowedAs: 'approver',
  },

  // ---- notifications
  'notify.webhooks.add': {
    args: () => [{ url: 'http://127.0.0.1:9/other', events: ['patch.*'] }],
    action: 'patch.policy',
  },
  'notify.webhooks.list': { args: () => [], action: 'patch.read' },
  'notify.webhooks.remove': { args: (i) => [i.webhookId], action: 'patch.policy' },
  'notify.webhooks.enable': { args: (i) => [i.webhookId], action: 'patch.policy' },
  'notify.webhooks.rotateSecret': { args: (i) => [i.webhookId, {}], action: 'patch.policy' },
  'notify.outbox.listParked': { args: () => [], action: 'patch.read' },
  'notify.outbox.replay': { args: (i) => [i.outboxId], action: 'patch.policy' },

  // ---- compliance
  'compliance.standards.add': {
    args: () => [{ id: 'std-2', name: 'weekly', rule: { kind: 'scanned-within', days: 7 } }],
    action: 'patch.policy',
  },
  'compliance.standards.update': {
    args: (i) => [i.standardId, { name: 'renamed' }, { expectedVersion: 1 }],
    action: 'patch.policy',
  },
  'compliance.standards.remove': { args: (i) => [i.standardId, {}], action: 'patch.policy' },
  'compliance.standards.list': { args: () => [{}], action: 'patch.read' },
  'compliance.standards.get': { args: (i) => [i.standardId], action: 'patch.read' },
  'compliance.evaluate': { args: (i) => [{ serverIds: [i.serverId] }], action: 'patch.read' },
  'compliance.summary': { args: (i) => [{ projectId: i.projectId }], action: 'patch.read' },

  // ---- scripts
  'scripts.add': {
    args: () => [{ name: 'hello-2', interpreter: 'sh', body: 'echo hi\n' }],
    action: 'script.write',
  },
  'scripts.get': { args: (i) => [i.scriptName, {}], action: 'script.read' },
  'scripts.versions': { args: (i) => [i.scriptName], action: 'script.read' },
  'scripts.list': { args: () => [{}], action: 'script.read' },
  'scripts.approve': {
    args: (i) => [i.scriptName, { hash: i.scriptHash }],
    action: 'script.approve',
    allowedAs: 'approver',
  },
  'scripts.approval': { args: (i) => [i.scriptName, {}], action: 'script.read' },
  'scripts.exportRepository': { args: (i) => [i.exportDir, {}], action: 'script.read', pathArgs: [0] },
  'scripts.importRepository': { args: (i) => [i.repoDir], action: 'script.write', pathArgs: [0] },
  'scripts.planRun': {
    args: (i) => [{ script: i.scriptName, targets: { serverIds: [i.serverId] } }],
    action: 'script.run',
  },
  'scripts.startRun': { args: (i) => [i.runId, {}], action: 'script.run' },
  'scripts.runScript': {
    args: (i) => [{ script: i.scriptName, targets: { serverIds: [i.serverId] } }],
    action: 'script.run',
  },
  'scripts.resumeRun': {
    args: (i) => [i.runId, {}],
    action: 'script.run',
  },
  'scripts.cancelRun': { args: (i) => [i.runId, { reason: 'not needed' }], action: 'script.run' },
  'scripts.getRun': { args: (i) => [i.runId], action: 'script.read' },
  'scripts.listRuns': { args: () => [{}], action: 'script.read' },

  // ---- runbooks
  'runbooks.define': {
    args: () => [{ name: 'pause', steps: [{ id: 'w', kind: 'wait', durationSeconds: 1 }] }],
    action: 'script.write',
  },
  'runbooks.get': { args: (i) => [i.runbookName, {}], action: 'script.read' },
  'runbooks.list': { args: () => [], action: 'script.read' },
  'runbooks.start': {
    args: (i) => [{ runbook: i.runbookName, targets: { serverIds: [i.serverId] } }, {}],
    action: 'script.run',
    allowAction: 'runbook.run',
  },
  'runbooks.resume': {
    args: (i) => [i.runbookRunId, {}],
    action: 'script.run',
    allowAction: 'runbook.run',
  },
  'runbooks.approveStep': {
    args: (i) => [i.runbookRunId, {}, {}],
    action: 'runbook.approve',
    allowedAs: 'approver',
  },
  'runbooks.cancel': {
    args: (i) => [i.runbookRunId, { reason: 'not needed' }],
    action: 'script.run',
    allowAction: 'runbook.run',
  },
  'runbooks.getRun': { args: (i) => [i.runbookRunId], action: 'script.read' },
  'runbooks.listRuns': { args: () => [{}], action: 'script.read' },

  // ---- access
  'access.request': {
    args: (i) => [
      {
        servers: { serverIds: [i.serverId] },
        mode: 'actions',
        actions: ['inventory.read'],
        durationMinutes: 60,
        reason: 'needs to read the inventory',
        ticket: 'INC-2',
      },
    ],
    action: 'access.request',
  },
  'access.approve': { args: (i) => [i.requestId, {}], action: 'access.approve', allowedAs: 'approver' },
  'access.reject': {
    args: (i) => [i.requestId, {}],
    action: 'access.approve',
    allowedAs: 'approver',
    allowAction: 'access.reject',
  },
  'access.cancel': {
    args: (i) => [i.requestId],
    action: 'access.request',
  },
  'access.revoke': {
    args: (i) => [i.grantId, { reason: 'done' }],
    action: 'access.approve',
    allowAction: 'access.request',
  },
  'access.getRequest': {
    args: (i) => [i.requestId],
    action: 'access.approve',
    allowAction: 'access.request',
  },
  'access.listRequests': { args: () => [{}], action: 'audit.read' },
  'access.listGrants': { args: () => [{}], action: 'audit.read' },
  'access.getGrant': { args: (i) => [i.grantId], action: 'audit.read', allowAction: 'access.request' },
  // The seeded grant is of mode `actions`: the admin (its grantee) is allowed, and refused for the mode.
  'access.connect': {
    args: (i) => [{ grantId: i.grantId, serverId: i.serverId, publicKey: i.newPublicKey }],
    action: 'access.request',
    allowAction: 'access.connect',
  },
  'access.sweep': {
    args: () => [],
    action: 'access.approve',
  },

  // ---- keys
  'keys.register': {
    args: (i) => [
      {
        id: 'cred-2',
        login: 'deploy',
        publicKey: i.newPublicKey,
        caretakerId: 'admin',
        serverIds: [i.serverId],
      },
    ],
    action: 'keys.rotate',
  },
  'keys.setCaretaker': { args: (i) => [i.credentialId, 'approver'], action: 'keys.rotate' },
  'keys.list': { args: () => [], action: 'keys.read' },
  'keys.rotate': {
    args: (i) => [i.credentialId, {}],
    action: 'keys.rotate',
  },
  'keys.policies.set': {
    args: (i) => [{ projectId: i.projectId, intervalHours: 24 }],
    action: 'keys.rotate',
  },
  'keys.policies.list': { args: () => [], action: 'keys.read' },
  'keys.due': { args: () => [], action: 'keys.read' },
  'keys.rotateDue': {
    args: () => [{}],
    action: 'keys.rotate',
  },
  'keys.inventory': { args: (i) => [{ serverIds: [i.serverId] }, {}], action: 'keys.read' },
  'keys.latestInventory': { args: () => [], action: 'keys.read' },

  // ---- audit
  'audit.list': { args: () => [{}], action: 'audit.read' },
  'audit.verify': { args: () => [{}], action: 'audit.read' },
  'audit.export': { args: () => [{}], action: 'audit.read' },
  'audit.accessReport': { args: () => [{}], action: 'audit.read' },
  'audit.checkpoint': { args: () => [], action: 'audit.read' },
};

type Callable = (...args: unknown[]) => Promise<unknown>;

/** The dotted names of every method of a session, found by reflection (own APIs and prototype). */
export function facadeMethods(session: FleetSession): string[] {
  const out: string[] = [];
  const walk = (value: object, prefix: string) => {
    for (const name of Object.keys(value)) {
      const member = (value as Record<string, unknown>)[name];
      const path = prefix ? `${prefix}.${name}` : name;
      if (typeof member === 'function') out.push(path);
      else if (member && typeof member === 'object' && !Array.isArray(member)) walk(member, path);
    }
  };
  walk(session, '');
  for (const name of Object.getOwnPropertyNames(Object.getPrototypeOf(session))) {
    if (name === 'constructor' || name === 'internals') continue;
    if (typeof (session as unknown as Record<string, unknown>)[name] === 'function') out.push(name);
  }
  return out.filter((name) => name !== 'actor' && !name.startsWith('actor.')).sort();
}

/** Calls the method `name` (dotted) of `session` with `args`, bound to its API object. */
export function callMethod(session: FleetSession, name: string, args: unknown[]): Promise<unknown> {
  const parts = name.split('.');
  let owner: unknown = session;
  for (const part of parts.slice(0, -1)) owner = (owner as Record<string, unknown>)[part];
  const method = (owner as Record<string, Callable>)[parts.at(-1)!];
  if (typeof method !== 'function') throw new Error(`no facade method ${name}`);
  // Synchronous throws are part of the method's behaviour, so they become rejections here.
  return Promise.resolve().then(() => method.apply(owner, args));
}

/** Every entity of `tenantId`, by kind, and its audit head: a walk compares these before and after. */
export async function snapshotTenant(fleet: Fleet, tenantId: string) {
  const entities: Record<string, unknown[]> = {};
  for (const kind of ENTITY_KINDS) entities[kind] = await fleet.store[kind].listAll(tenantId);
  const head = await fleet.store.audit.head(tenantId);
  return { entities, auditSeq: head?.seq ?? 0 };
}

/** What an awaited call did: its value or the error it threw. */
export async function outcomeOf(
  promise: Promise<unknown>,
): Promise<{ ok: true; value: unknown } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Strings an attacker or a careless integrator sends: shell, SQL, NUL, traversal, size, bidi. */
export const HOSTILE_STRINGS: readonly string[] = [
  '$(reboot)',
  "'; rm -rf /",
  'a\u0000b',
  '../../../etc/passwd',
  'x'.repeat(100_000),
  'evil\u202etxt.sh',
];

/**
 * What a mutation breaks: `shape` (a wrong type, an unknown field, a reserved key, a number out of
 * range) must be refused; `hostile` (a string that is well-typed but malicious) and `missing` (a
 * field left out, which may be optional) may be accepted as data, but never crash or half-write.
 */
export type MutationKind = 'shape' | 'hostile' | 'missing';

export interface Mutation {
  kind: MutationKind;
  /** Where the bad value is, e.g. `arg0.labels.__proto__`. */
  where: string;
  /** The field path a ValidationError should name, relative to the argument. */
  path: (string | number)[];
  args: unknown[];
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A value of another type than `value`'s. */
function wrongType(value: unknown): unknown {
  if (typeof value === 'string') return 42;
  if (typeof value === 'number' || typeof value === 'boolean') return 'not-a-number';
  if (Array.isArray(value)) return 'not-a-list';
  return 'not-an-object';
}

/** An own `__proto__` key, as `JSON.parse` makes one from a request body. */
const withProtoKey = (obj: Record<string, unknown>) => ({
  ...obj,
  ...(JSON.parse('{"__proto__":{"polluted":"yes"}}') as Record<string, unknown>),
});

/** Bad variants of valid sample arguments: each breaks one place and leaves the rest valid. */
export function mutations(args: readonly unknown[], pathArgs: readonly number[] = []): Mutation[] {
  const out: Mutation[] = [];
  const replaced = (i: number, value: unknown) => args.map((a, j) => (j === i ? value : a));
  for (const [i, arg] of args.entries()) {
    const at = `arg${i}`;
    out.push({ kind: 'shape', where: at, path: [], args: replaced(i, wrongType(arg)) });
    if (typeof arg === 'string' && !pathArgs.includes(i)) {
      for (const s of HOSTILE_STRINGS)
        out.push({ kind: 'hostile', where: at, path: [], args: replaced(i, s) });
    }
    if (Array.isArray(arg) && typeof arg[0] === 'string') {
      out.push({ kind: 'shape', where: `${at}.0`, path: [0], args: replaced(i, [42]) });
      for (const s of HOSTILE_STRINGS)
        out.push({ kind: 'hostile', where: `${at}.0`, path: [0], args: replaced(i, [s]) });
    }
    if (!isPlainObject(arg)) continue;
    out.push({
      kind: 'shape',
      where: `${at}.zzUnknown`,
      path: ['zzUnknown'],
      args: replaced(i, { ...arg, zzUnknown: 'x' }),
    });
    out.push({
      kind: 'shape',
      where: `${at}.__proto__`,
      path: ['__proto__'],
      args: replaced(i, withProtoKey(arg)),
    });
    for (const [key, value] of Object.entries(arg)) {
      const field = (v: unknown) => replaced(i, { ...arg, [key]: v });
      const where = `${at}.${key}`;
      const { [key]: _, ...rest } = arg;
      out.push({ kind: 'missing', where, path: [key], args: replaced(i, rest) });
      out.push({ kind: 'shape', where, path: [key], args: field(wrongType(value)) });
      if (typeof value === 'string') {
        for (const s of HOSTILE_STRINGS) out.push({ kind: 'hostile', where, path: [key], args: field(s) });
      }
      if (typeof value === 'number') {
        for (const n of [-1, Number.NaN, Number.POSITIVE_INFINITY, 1.5]) {
          out.push({ kind: 'shape', where: `${where}=${n}`, path: [key], args: field(n) });
        }
      }
      if (isPlainObject(value)) {
        out.push({
          kind: 'shape',
          where: `${where}.__proto__`,
          path: [key, '__proto__'],
          args: field(withProtoKey(value)),
        });
        out.push({
          kind: 'shape',
          where: `${where}.zzUnknown`,
          path: [key],
          args: field({ ...value, zzUnknown: 'x' }),
        });
      }
    }
  }
  return out;
}

/**
 * Hands out a walk fixture, made anew only when the last user changed an entity: refused calls
 * and reads leave the entities as they were, so most rows share one fixture and the walks stay fast.
 */
export class WalkFixtures {
  #current: WalkFixture | undefined;
  #pristine = '';

  async get(): Promise<WalkFixture> {
    if (this.#current) {
      const now = JSON.stringify((await snapshotTenant(this.#current.fleet, T)).entities);
      if (now === this.#pristine) return this.#current;
      await this.#current.close();
    }
    this.#current = await createWalkFixture();
    this.#pristine = JSON.stringify((await snapshotTenant(this.#current.fleet, T)).entities);
    return this.#current;
  }

  async close(): Promise<void> {
    await this.#current?.close();
    this.#current = undefined;
  }
}
