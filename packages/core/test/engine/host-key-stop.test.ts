import {
  type Adapter,
  type AuditRecord,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type Fleet,
  type FleetSession,
  generateEd25519KeyPair,
  HostKeyMismatchError,
  MemorySecretStore,
} from '@fleetward/core';
import { afterEach, describe, expect, it } from 'vitest';

// DESIGN safety rule 6 on every workflow that touches servers: a changed host key on one server
// stops the operation. Every server runs on this machine through the real local transport; a
// wrapper counts what each server is asked and answers for `s01` as the SSH adapter does when
// the host key changed (HostKeyMismatchError, nothing ran). `s01` comes first, so every server
// past the operation's concurrency must stay untouched, and the operation's record and audit
// trail must name the changed key.
//
// Servers that are already running when the key is found may finish. Their commands wait until
// `s01` has been refused, so that none of them can end (and free a slot for a later server)
// before the operation has seen the refusal.

const T = 'acme';
const BAD = 's01';
/** A login that does not exist on this machine: nothing here edits a real authorized_keys. */
const LOGIN = 'fwhostkeytest';

interface Counting {
  adapter: Adapter;
  calls: Map<string, number>;
  /** Turns the changed host key on (setup runs unarmed). */
  arm(): void;
}

function countingAdapter(inner: Adapter): Counting {
  const calls = new Map<string, number>();
  let armed = false;
  let release!: () => void;
  const refused = new Promise<void>((resolve) => {
    release = resolve;
  });
  const touch = async (serverId: string, name: string) => {
    if (!armed) return;
    calls.set(serverId, (calls.get(serverId) ?? 0) + 1);
    if (serverId === BAD) {
      setImmediate(release);
      throw new HostKeyMismatchError(`host key of ${name} is not the pinned one; nothing was run`);
    }
    await refused;
  };
  return {
    calls,
    arm: () => {
      armed = true;
    },
    adapter: {
      name: 'local',
      exec: {
        async exec(server, command, options) {
          await touch(server.id, server.name);
          return inner.exec!.exec(server, command, options);
        },
      },
      // The local transport cannot log in anywhere; rotation needs the capability to start at all.
      login: {
        async probe(server) {
          await touch(server.id, server.name);
          return { ok: false, refused: false, message: 'the local transport proves no logins' };
        },
      },
    },
  };
}

interface Fixture {
  fleet: Fleet;
  alice: FleetSession;
  bob: FleetSession;
  counting: Counting;
  ids: string[];
}

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
});

async function setup(servers: number): Promise<Fixture> {
  const counting = countingAdapter(createLocalAdapter());
  fleet = createFleet({
    store: createMemoryStore(),
    adapters: [counting.adapter],
    secrets: new MemorySecretStore(),
    // The runbook scan step scans at the fleet's concurrency.
    scanConcurrency: 2,
    // Its login deliberately does not exist on the servers: the request-time check would refuse.
    access: { checkServers: false },
  });
  await fleet.bootstrapTenant({
    tenant: { id: T, name: 'Acme' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  await fleet.store.principals.create({
    tenantId: T,
    id: 'bob',
    name: 'Bob',
    kind: 'human',
    affiliation: 'employee',
  });
  await fleet.store.roleBindings.create({ tenantId: T, principalId: 'bob', roleId: 'tenant-admin' });
  const alice = fleet.as({ tenantId: T, principalId: 'alice' });
  const ids = Array.from({ length: servers }, (_, i) => `s${String(i + 1).padStart(2, '0')}`);
  for (const id of ids) {
    await alice.servers.add({ id, name: id, accountId: 'local', provider: 'local', labels: { env: 'prod' } });
  }
  return { fleet, alice, bob: fleet.as({ tenantId: T, principalId: 'bob' }), counting, ids };
}

const RECORD_SCRIPT = { name: 'noop', interpreter: 'sh' as const, body: 'true\n' };

interface Workflow {
  name: string;
  /** At most this many servers (s01 included) may be touched: those running when s01 is refused. */
  concurrency: number;
  /** Setup that must not count (runs before the wrapper is armed). */
  prepare?: (f: Fixture) => Promise<unknown>;
  /** Runs the operation; resolves with what it recorded (job, run, grant, report, …). */
  run: (f: Fixture, prepared: unknown) => Promise<unknown>;
  /** The audit action whose records must name the changed host key. */
  audit: string;
}

const workflows: Workflow[] = [
  {
    name: 'scan',
    concurrency: 2,
    run: async (f) => {
      const outcome = await f.alice.scan({ serverIds: f.ids }, { concurrency: 2 });
      const tasks = await f.fleet.store.taskResults.listAll(T, { where: { jobId: outcome.job.id } });
      return { outcome, tasks };
    },
    audit: 'patch.scan',
  },
  {
    name: 'script run',
    concurrency: 2,
    prepare: (f) => f.alice.scripts.add(RECORD_SCRIPT),
    run: (f) =>
      f.alice.scripts.runScript({
        script: 'noop',
        targets: { serverIds: f.ids },
        rollout: { maxConcurrency: 2, errorBudget: { percent: 100 } },
      }),
    audit: 'script.run',
  },
  {
    name: 'runbook step',
    concurrency: 2,
    prepare: async (f) => {
      await f.alice.scripts.add(RECORD_SCRIPT);
      await f.alice.runbooks.define({
        name: 'two-steps',
        steps: [
          {
            id: 'first',
            kind: 'script',
            script: 'noop',
            rollout: { maxConcurrency: 2, errorBudget: { percent: 100 } },
            onFailure: 'continue',
          },
          { id: 'second', kind: 'script', script: 'noop' },
        ],
      });
    },
    run: (f) => f.alice.runbooks.start({ runbook: 'two-steps', targets: { serverIds: f.ids } }),
    audit: 'runbook.step',
  },
  {
    name: 'runbook scan step',
    concurrency: 2,
    prepare: (f) =>
      f.alice.runbooks.define({
        name: 'scan-then-run',
        steps: [
          { id: 'scan', kind: 'scan', failWhen: 'all' },
          { id: 'wait', kind: 'wait', durationSeconds: 1 },
        ],
      }),
    run: (f) => f.alice.runbooks.start({ runbook: 'scan-then-run', targets: { serverIds: f.ids } }),
    audit: 'runbook.step',
  },
  {
    name: 'grant installation',
    concurrency: 16,
    prepare: (f) =>
      f.alice.access.request({
        servers: { serverIds: f.ids },
        login: LOGIN,
        publicKey: generateEd25519KeyPair('carol@laptop').publicKey,
        durationMinutes: 30,
        reason: 'read the logs',
        ticket: 'INC-1',
      }),
    run: async (f, request) => {
      const { grant } = await f.bob.access.approve((request as { id: string }).id);
      // The next sweep must not carry on where the stop left off.
      await f.bob.access.sweep();
      return f.fleet.store.accessGrants.require(T, grant!.id);
    },
    audit: 'access.grant.install',
  },
  {
    name: 'grant removal (revoke and sweep)',
    concurrency: 16,
    prepare: async (f) => {
      const request = await f.alice.access.request({
        servers: { serverIds: f.ids },
        login: LOGIN,
        publicKey: generateEd25519KeyPair('carol@laptop').publicKey,
        durationMinutes: 30,
        reason: 'read the logs',
        ticket: 'INC-2',
      });
      return (await f.bob.access.approve(request.id)).grant;
    },
    run: (f, grant) => f.alice.access.revoke((grant as { id: string }).id),
    audit: 'access.grant.remove',
  },
  {
    name: 'key rotation',
    concurrency: 1,
    prepare: async (f) => {
      const pair = generateEd25519KeyPair('managed');
      return f.alice.keys.register({
        login: LOGIN,
        publicKey: pair.publicKey,
        privateKey: pair.privateKey,
        caretakerId: 'alice',
        serverIds: f.ids,
      });
    },
    run: (f, credential) => f.alice.keys.rotate((credential as { id: string }).id),
    audit: 'keys.rotate',
  },
  {
    name: 'key inventory',
    concurrency: 2,
    run: (f) => f.alice.keys.inventory({ serverIds: f.ids }, { concurrency: 2 }),
    audit: 'keys.read',
  },
];

describe('host-key stop', () => {
  it.each(workflows)(
    '$name — a changed host key on one server stops the operation: no later server is touched, the record and the audit name it',
    async (workflow) => {
      const f = await setup(workflow.concurrency + 3);
      const prepared = await workflow.prepare?.(f);
      const auditBefore = (await f.fleet.store.audit.list(T)).length;
      f.counting.arm();
      const record = await workflow.run(f, prepared);

      expect(f.counting.calls.get(BAD) ?? 0).toBeGreaterThan(0);
      const later = f.ids.slice(workflow.concurrency);
      expect(Object.fromEntries(later.map((id) => [id, f.counting.calls.get(id) ?? 0]))).toEqual(
        Object.fromEntries(later.map((id) => [id, 0])),
      );

      const recorded = JSON.stringify(record);
      expect(recorded).toContain('HOST_KEY_MISMATCH');
      expect(recorded).toContain(`host key of ${BAD}`);

      const audit: AuditRecord[] = (await f.fleet.store.audit.list(T)).slice(auditBefore);
      const naming = audit.filter(
        (r) => r.action === workflow.audit && JSON.stringify(r).includes('HOST_KEY_MISMATCH'),
      );
      expect(
        naming.length,
        `${workflow.audit} records: ${JSON.stringify(audit.map((r) => r.action))}`,
      ).toBeGreaterThan(0);
    },
  );
});
