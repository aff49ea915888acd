// Benchmark: what a Fleetward scan costs lab hosts, against the bare package-manager listing
// (`apt-get -s dist-upgrade`, `dnf -C check-update`, `zypper --no-refresh list-updates`) run over
// the same SSH adapter, to the same hosts, with the same concurrency, in the same run.
// Run (as root, on a machine that can run the lab):
//   node --import tsx bench/scan-cost.ts [--debian 8] [--rhel 1] [--suse 1] [--rounds 7]
//
// Both sides reuse the adapter's pooled connections (warmed up first), so the figures compare
// what runs on the servers plus the commands' round trips, not SSH handshakes.
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createSshAdapter } from '@fleetward/adapter-ssh';
import { type ArgvCommand, type Command, createFleet, createMemoryStore, type Server } from '@fleetward/core';
import { aptDriver, dnfDriver, type PackageManagerDriver, zypperDriver } from '@fleetward/core/os';
import { type LabFlavour, type LabHostSpec, startLab } from '@fleetward/testkit/lab';
// The OS facts script a scan runs before the driver's (not part of the public API).
import { OS_FACTS_SCRIPT } from '../packages/core/src/os/os-release.js';

const TENANT = 'bench';

const { values: args } = parseArgs({
  options: {
    debian: { type: 'string', default: '8' },
    rhel: { type: 'string', default: '1' },
    suse: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '7' },
  },
});

const C_LOCALE = { LC_ALL: 'C', LANG: 'C', LANGUAGE: 'C' };
/** The bare listing per flavour: what a user would fan out with pssh instead of a scan. */
const BARE: Record<LabFlavour, { manager: string; driver: PackageManagerDriver; command: ArgvCommand }> = {
  debian: {
    manager: 'apt',
    driver: aptDriver,
    command: { argv: ['apt-get', '-s', 'dist-upgrade'], env: C_LOCALE },
  },
  // -C as in the scan: both read the metadata cache the last refresh left, neither downloads.
  rhel: {
    manager: 'dnf',
    driver: dnfDriver,
    command: { argv: ['dnf', '-C', 'check-update'], env: C_LOCALE },
  },
  suse: {
    manager: 'zypper',
    driver: zypperDriver,
    command: { argv: ['zypper', '--no-refresh', 'list-updates'], env: C_LOCALE },
  },
};

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const ms = (x: number) => `${x.toFixed(0)} ms`;

async function main() {
  const counts: [LabFlavour, number][] = [
    ['debian', Number(args.debian)],
    ['rhel', Number(args.rhel)],
    ['suse', Number(args.suse)],
  ];
  const rounds = Number(args.rounds);
  const hosts: LabHostSpec[] = counts.flatMap(([flavour, n]) =>
    Array.from({ length: n }, (_, i) => ({ name: `${flavour.slice(0, 4)}${i + 1}`, flavour })),
  );
  console.log(
    `starting a lab of ${hosts.length} hosts (${counts.map(([f, n]) => `${n} ${f}`).join(', ')})...`,
  );
  const lab = await startLab({ hosts });
  const ssh = createSshAdapter({
    credentials: { username: 'root', privateKey: lab.hosts[0]!.users.root.privateKey },
    credentialsFor: async (server) => {
      const host = lab.hosts.find((h) => h.address === server.address);
      return host && { username: 'root', privateKey: host.users.root.privateKey };
    },
    hostKeyPolicy: 'pinned',
    pinnedHostKeys: Object.fromEntries(
      lab.hosts.map((h) => [
        h.address,
        [h.hostKeys.ed25519.fingerprint, ...(h.hostKeys.rsa ? [h.hostKeys.rsa.fingerprint] : [])],
      ]),
    ),
    connectTimeoutMs: 5000,
  });
  const fleet = createFleet({ store: createMemoryStore(), adapters: [ssh] });
  try {
    await fleet.bootstrapTenant({
      tenant: { id: TENANT, name: 'Bench' },
      admin: { id: 'admin', name: 'Admin', kind: 'human', affiliation: 'employee' },
    });
    const admin = fleet.as({ tenantId: TENANT, principalId: 'admin' });
    for (const h of lab.hosts) {
      await admin.servers.add({
        id: h.name,
        name: h.name,
        accountId: 'lab',
        provider: 'ssh',
        address: h.address,
        labels: { flavour: h.flavour },
      });
    }

    const scan = async (ids: string[]) => {
      const outcome = await admin.scan({ serverIds: ids }, { concurrency: ids.length });
      const failed = outcome.results.filter((r) => r.status !== 'succeeded');
      if (failed.length > 0) throw new Error(`scan failed: ${JSON.stringify(failed.map((r) => r.error))}`);
      return outcome.results;
    };
    const bare = async (servers: Server[], command: Command) => {
      const results = await Promise.all(servers.map((s) => ssh.exec!.exec(s, command)));
      // check-update exits 100 when updates are pending; zypper lu 0; apt-get -s 0.
      const failed = results.filter((r) => r.exitCode !== 0 && r.exitCode !== 100);
      if (failed.length > 0)
        throw new Error(`bare listing failed: ${failed.map((r) => r.stderr.text).join(' | ')}`);
    };

    // The first scan has no stored OS facts: detection, then the scan (two round trips).
    const all = lab.hosts.map((h) => h.name);
    const first = performance.now();
    const firstResults = await scan(all);
    const firstMs = performance.now() - first;
    const expected = new Map(
      firstResults.map((r) => [
        r.serverId,
        r.patches.map((p) => `${p.name}=${p.candidateVersion}`).join(' '),
      ]),
    );

    const rows: string[][] = [];
    for (const [flavour, n] of counts) {
      if (n === 0) continue;
      const { manager, driver, command } = BARE[flavour];
      // The one command a scan sends a server whose OS is known, sent alone: what the scan costs
      // the server and the transport, without the Fleet's bookkeeping.
      const own = driver.scanCommand();
      if (!('script' in own)) throw new Error(`${manager} scan is not a script`);
      const script: Command = { ...own, script: `${OS_FACTS_SCRIPT}${own.script}` };
      const servers = await Promise.all(
        lab.hosts
          .filter((h) => h.flavour === flavour)
          .map((h) => fleet.store.servers.require(TENANT, h.name)),
      );
      const ids = servers.map((s) => s.id);
      // Warm-up: connections, page cache, the tools' own caches.
      await bare(servers, command);
      await scan(ids);
      const fleetMs: number[] = [];
      const bareMs: number[] = [];
      const scriptMs: number[] = [];
      for (let round = 0; round < rounds; round++) {
        // Alternate the order so neither side always runs on a cache the other just warmed.
        const order = round % 2 === 0 ? ['fleet', 'bare', 'script'] : ['script', 'bare', 'fleet'];
        for (const side of order) {
          const t0 = performance.now();
          if (side === 'fleet') {
            const results = await scan(ids);
            for (const r of results) {
              const got = r.patches.map((p) => `${p.name}=${p.candidateVersion}`).join(' ');
              if (got !== expected.get(r.serverId))
                throw new Error(`${r.serverId} scanned differently: ${got}`);
            }
            fleetMs.push(performance.now() - t0);
          } else if (side === 'bare') {
            await bare(servers, command);
            bareMs.push(performance.now() - t0);
          } else {
            await bare(servers, script);
            scriptMs.push(performance.now() - t0);
          }
        }
      }
      const f = median(fleetMs);
      const b = median(bareMs);
      const c = median(scriptMs);
      rows.push([
        manager,
        String(n),
        command.argv.join(' '),
        ms(b),
        `${ms(c)} (${(c / b).toFixed(2)}×)`,
        ms(f),
        `${(f / b).toFixed(2)}×`,
      ]);
    }

    console.log(`\nfirst scan of all ${all.length} hosts (OS detection, then the scan): ${ms(firstMs)}`);
    console.log(`median of ${rounds} rounds per package manager, all hosts of a manager at once:\n`);
    const header = ['manager', 'hosts', 'bare command', 'bare', 'scan command alone', 'fleet scan', 'ratio'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
    console.log(line(header));
    for (const r of rows) console.log(line(r));
  } finally {
    await fleet.close();
    await lab.stop();
  }
}

await main();
