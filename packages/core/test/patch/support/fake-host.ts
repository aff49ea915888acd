import { createHash } from 'node:crypto';
import {
  type Adapter,
  type Clock,
  type Command,
  CommandFailedError,
  createFleet,
  createMemoryStore,
  type ExecResult,
  type Fleet,
  type FleetSession,
  type PackageManagerDriver,
  type PatchCategory,
  type PatchPolicyInput,
  type PendingPatch,
  type Server,
} from '@fleetward/core';

/**
 * A package manager simulated in memory, for executor tests that must run whole patch runs fast
 * and deterministically: the driver is real driver code's contract (commands as data, parsers of
 * their output), the adapter answers those commands from a per-host package database. What real
 * package managers do is proven on the lab; this proves what the executor does with their answers.
 */

/** A package the host's repository offers. */
export interface RepoPackage {
  version: string;
  category?: PatchCategory;
  /** Installed with it when missing or older than the repository's. */
  depends?: string[];
  /** Installed packages it replaces: a transaction with it removes them. */
  replaces?: string[];
}

export interface FakeHost {
  installed: Map<string, string>;
  repo: Map<string, RepoPackage>;
  /** KiB free on `/` as the preflight's `df` reports it. */
  freeRootKiB: number;
  /** Whether `sudo -n true` works for the login. */
  sudo: boolean;
  /** Every command run, in order, as `argv[0..1]` or `script:<first line>`. */
  log: string[];
}

export function fakeHost(): FakeHost {
  return {
    installed: new Map([
      ['demo', '1.0'],
      ['tool', '2.0'],
    ]),
    repo: new Map<string, RepoPackage>([
      ['demo', { version: '1.1', category: 'security' }],
      ['tool', { version: '2.1', category: 'other' }],
    ]),
    freeRootKiB: 10 * 1024 * 1024,
    sudo: true,
    log: [],
  };
}

const pinsOf = (argv: readonly string[]) =>
  argv.slice(2).map((pin) => {
    const [name, version] = pin.split('=') as [string, string];
    return { name, version };
  });

/** Closure of `pins` over the repository's dependencies: what the transaction would install. */
function transaction(host: FakeHost, pins: { name: string; version: string }[]) {
  const install = new Map<string, { name: string; version: string; arch: string; isNew: boolean }>();
  const visit = (name: string, version: string) => {
    if (install.has(name)) return;
    install.set(name, { name, version, arch: 'all', isNew: !host.installed.has(name) });
    for (const dep of host.repo.get(name)?.depends ?? []) {
      const offered = host.repo.get(dep);
      if (offered && host.installed.get(dep) !== offered.version) visit(dep, offered.version);
    }
  };
  for (const p of pins) visit(p.name, p.version);
  const remove = [...install.keys()]
    .flatMap((n) => host.repo.get(n)?.replaces ?? [])
    .filter((n) => host.installed.has(n));
  return { install: [...install.values()], remove, warnings: [] as string[] };
}

export const fakeDriver: PackageManagerDriver = {
  manager: 'apt',
  supports: (os) => os.id === 'fakeos',
  scanCommand: () => ({ argv: ['fakepm', 'scan'] }),
  parseScan: () => {
    throw new Error('the fake adapter scans natively');
  },
  simulateInstallCommand: (packages) => ({
    argv: ['fakepm', 'simulate', ...packages.map((p) => `${p.name}=${p.version}`)],
  }),
  parseSimulateInstall: (output) => JSON.parse(output.stdout),
  installCommand: (packages) => ({
    argv: ['fakepm', 'install', ...packages.map((p) => `${p.name}=${p.version}`)],
    sudo: true,
  }),
  parseInstall: (output) => {
    if (output.exitCode !== 0) throw new CommandFailedError(`fakepm install exited ${output.exitCode}`);
    return { rebootRequired: false, warnings: [] };
  },
  installedVersionsCommand: (names) => ({ argv: ['fakepm', 'versions', ...names] }),
  parseInstalledVersions: (output) =>
    new Map(Object.entries(JSON.parse(output.stdout) as Record<string, string>)),
};

const summary = (text: string) => ({
  text,
  bytes: Buffer.byteLength(text),
  sha256: createHash('sha256').update(text).digest('hex'),
  truncated: false,
});

const result = (stdout: string, exitCode = 0, stderr = ''): ExecResult => ({
  exitCode,
  signal: null,
  stdout: summary(stdout),
  stderr: summary(stderr),
  durationMs: 1,
});

export interface FakeAdapterOptions {
  hosts: Record<string, FakeHost>;
  /**
   * Runs before every command (and scan) on a host: throw to fail it as the transport would,
   * or return a promise to hold the command there.
   */
  before?: (server: Server, what: string) => void | Promise<void>;
}

/** An adapter over fake hosts: native scan, and exec answering the executor's and the driver's commands. */
export function fakeAdapter(options: FakeAdapterOptions): Adapter {
  const hostOf = (server: Server) => {
    const host = options.hosts[server.id];
    if (!host) throw new Error(`no fake host ${server.id}`);
    return host;
  };
  const run = (host: FakeHost, command: Command): ExecResult => {
    if ('script' in command) {
      if (command.script.includes('df -Pk')) return result(`root ${host.freeRootKiB} /\n`);
      return result('');
    }
    const [tool, verb] = command.argv;
    if (tool === 'true') {
      return host.sudo || !command.sudo ? result('') : result('', 1, 'sudo: a password is required\n');
    }
    if (tool !== 'fakepm') return result('', 127, `${tool}: not found\n`);
    if (verb === 'simulate') return result(JSON.stringify(transaction(host, pinsOf(command.argv))));
    if (verb === 'install') {
      const tx = transaction(host, pinsOf(command.argv));
      if (tx.remove.length)
        return result('', 100, 'E: Packages need to be removed but remove is disabled.\n');
      for (const p of tx.install) host.installed.set(p.name, p.version);
      return result('installed\n');
    }
    if (verb === 'versions') {
      const names = command.argv.slice(2);
      return result(
        JSON.stringify(
          Object.fromEntries(
            names.flatMap((n) => {
              const v = host.installed.get(n);
              return v ? [[n, v]] : [];
            }),
          ),
        ),
      );
    }
    return result('', 2, `fakepm: unknown verb ${verb}\n`);
  };
  return {
    name: 'fake',
    scan: {
      scan: async (server) => {
        await options.before?.(server, 'scan');
        const host = hostOf(server);
        const patches: PendingPatch[] = [...host.repo]
          .filter(([name, p]) => host.installed.has(name) && host.installed.get(name) !== p.version)
          .map(([name, p]) => ({
            name,
            arch: 'all',
            installedVersion: host.installed.get(name)!,
            candidateVersion: p.version,
            origins: [],
            category: p.category ?? 'other',
            severity: 'unspecified',
            advisories: [],
            held: false,
            keptBack: false,
            isNew: false,
          }));
        return {
          patches,
          rebootRequired: false,
          os: {
            family: 'debian',
            id: 'fakeos',
            versionId: '1',
            prettyName: 'Fake OS',
            packageManager: 'apt',
          },
        };
      },
    },
    exec: {
      exec: async (server, command) => {
        const what =
          'script' in command
            ? `script:${command.script.split('\n')[0]}`
            : command.argv.slice(0, 2).join(' ');
        await options.before?.(server, what);
        const host = hostOf(server);
        host.log.push(what);
        return run(host, command);
      },
    },
  };
}

export const TENANT = 'acme';

/** A patch policy's fields a test may change; the rest are `testPolicy`'s. */
export type TestPolicyOptions = Partial<Omit<PatchPolicyInput, 'tenantId' | 'id' | 'projectId' | 'name'>>;

/**
 * Policy `pol` over project `p`: security and other patches, one wave, one server at a time, a
 * budget of 10, unreachable hosts counted; `options` override any of it.
 */
export function testPolicy(options: TestPolicyOptions = {}): Omit<PatchPolicyInput, 'tenantId'> {
  return {
    id: 'pol',
    name: 'Policy',
    projectId: 'p',
    categories: ['security', 'other'],
    rollout: {
      waves: [],
      maxConcurrency: 1,
      errorBudget: { count: 10 },
      unreachableCountsAsError: true,
      onBudgetSpent: 'stop',
    },
    ...options,
  } as Omit<PatchPolicyInput, 'tenantId'>;
}

/**
 * Seeds tenant `acme` through `fleet`: admins alice (plans) and bob (approves), the servers `ids`
 * on the fake adapter (one transaction), project `p` over all of them and, with `policy`, policy
 * `pol` (see {@link testPolicy}).
 */
export async function seedPatchTenant(
  fleet: Fleet,
  ids: readonly string[],
  policy?: TestPolicyOptions,
): Promise<{ alice: FleetSession; bob: FleetSession }> {
  await fleet.bootstrapTenant({
    tenant: { id: TENANT, name: 'Acme' },
    admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
  });
  await fleet.store.principals.create({
    tenantId: TENANT,
    id: 'bob',
    name: 'Bob',
    kind: 'human',
    affiliation: 'employee',
  });
  await fleet.store.roleBindings.create({ tenantId: TENANT, principalId: 'bob', roleId: 'tenant-admin' });
  await fleet.store.transaction(async (tx) => {
    for (const id of ids) {
      await tx.servers.create({
        tenantId: TENANT,
        id,
        name: id,
        accountId: 'dc',
        provider: 'ssh',
        adapter: 'fake',
        labels: {},
      });
    }
  });
  const alice = fleet.as({ tenantId: TENANT, principalId: 'alice' });
  await alice.projects.add({ id: 'p', name: 'P', selector: { all: true } });
  if (policy) await alice.patch.policies.add(testPolicy(policy));
  return { alice, bob: fleet.as({ tenantId: TENANT, principalId: 'bob' }) };
}

/** A fleet of fake hosts `ids`, two admins (alice plans, bob approves) and project `p` over them. */
export async function fakeFleet(
  ids: string[],
  options: { clock?: Clock; before?: FakeAdapterOptions['before'] } = {},
): Promise<{ fleet: Fleet; hosts: Record<string, FakeHost> }> {
  const hosts = Object.fromEntries(ids.map((id) => [id, fakeHost()]));
  const fleet = createFleet({
    store: createMemoryStore(options.clock ? { clock: options.clock } : {}),
    adapters: [fakeAdapter({ hosts, ...(options.before ? { before: options.before } : {}) })],
    drivers: [fakeDriver],
    ...(options.clock ? { clock: options.clock } : {}),
  });
  await seedPatchTenant(fleet, ids);
  return { fleet, hosts };
}
