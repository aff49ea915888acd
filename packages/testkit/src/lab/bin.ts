#!/usr/bin/env node
/**
 * `fleetward-lab`: remove what dead labs left behind, or start a lab by hand to explore it.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startLab } from './lab.js';
import { labPrerequisites } from './prerequisites.js';
import { cleanupLabs, LAB_CACHE_DIR, LAB_RUN_DIR, liveLabIds } from './state.js';
import { LAB_FLAVOURS, type LabFlavour, type LabHostSpec } from './types.js';

const USAGE = `Usage: fleetward-lab <command> [options]

Commands:
  cleanup [--all] [--cache] [--json]
      Remove every leftover of labs whose owner process is dead: processes, network
      namespaces, veths and bridges, mounts, state dirs, subnet claims.
      --all    also tear down labs that are still running
      --cache  also delete the package build cache (${LAB_CACHE_DIR})
  start [--hosts debian,rhel,suse]
      Start a lab, print addresses, host keys and credentials, and wait for Ctrl-C.
      Hosts are flavours (named deb1, rhel1, suse1, deb2, ...) or name=flavour pairs.
  status
      List the labs on this machine.
  check
      Print what this machine lacks to run a lab.
`;

const SHORT: Record<LabFlavour, string> = { debian: 'deb', rhel: 'rhel', suse: 'suse' };

function parseHosts(list: string): LabHostSpec[] {
  const counts = new Map<string, number>();
  return list
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)
    .map((item) => {
      const [left, right] = item.includes('=') ? item.split('=', 2) : [undefined, item];
      const flavour = right as LabFlavour;
      if (!LAB_FLAVOURS.includes(flavour))
        throw new Error(`unknown flavour ${right} (use ${LAB_FLAVOURS.join(', ')})`);
      const n = (counts.get(flavour) ?? 0) + 1;
      counts.set(flavour, n);
      return { name: left ?? `${SHORT[flavour]}${n}`, flavour };
    });
}

async function cleanup(options: { all: boolean; cache: boolean; json: boolean }): Promise<void> {
  const report = await cleanupLabs({ all: options.all });
  if (options.cache) rmSync(LAB_CACHE_DIR, { recursive: true, force: true });
  if (options.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  const lines = [
    `labs removed: ${report.labs.join(', ') || 'none'}`,
    `processes killed: ${report.processes.length}`,
    `network namespaces: ${report.netns.join(', ') || 'none'}`,
    `links: ${report.links.join(', ') || 'none'}`,
    `mounts: ${report.mounts.join(', ') || 'none'}`,
    `state dirs: ${report.stateDirs.join(', ') || 'none'}`,
  ];
  if (options.cache) lines.push(`cache: removed ${LAB_CACHE_DIR}`);
  const live = liveLabIds();
  if (live.size > 0 && !options.all)
    lines.push(`still running (use --all to stop them): ${[...live].join(', ')}`);
  console.log(lines.join('\n'));
}

function status(): void {
  const dir = join(LAB_RUN_DIR, 'labs');
  const ids = existsSync(dir) ? readdirSync(dir).filter((e) => /^[0-9a-f]{6}$/.test(e)) : [];
  if (ids.length === 0) {
    console.log('no labs');
    return;
  }
  const live = liveLabIds();
  for (const id of ids) {
    let owner = '?';
    try {
      owner = String((JSON.parse(readFileSync(join(dir, id, 'owner.json'), 'utf8')) as { pid: number }).pid);
    } catch {
      // No owner record: a leftover.
    }
    const hosts = existsSync(join(dir, id, 'hosts')) ? readdirSync(join(dir, id, 'hosts')).join(', ') : '';
    console.log(
      `${id}  ${live.has(id) ? 'running' : 'dead (run cleanup)'}  owner pid ${owner}  hosts: ${hosts}`,
    );
  }
}

async function start(hostList: string): Promise<void> {
  const hosts = parseHosts(hostList);
  let interrupted = false;
  let wake: () => void = () => {};
  const stopRequested = new Promise<void>((resolve) => {
    wake = resolve;
  });
  // Registered before the lab's own handlers, which then tear down synchronously and leave
  // the exit to this one.
  const onSignal = () => {
    interrupted = true;
    wake();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  console.log(`starting ${hosts.map((h) => `${h.name} (${h.flavour})`).join(', ')}...`);
  const lab = await startLab({ hosts });
  if (interrupted) {
    await lab.stop();
    return;
  }
  const out: string[] = [
    `Fleetward lab ${lab.id} started in ${(lab.startupMs / 1000).toFixed(1)} s`,
    `  gateway ${lab.gateway}, subnet ${lab.subnet}`,
    `  repositories ${lab.repositories.apt}  ${lab.repositories.rpm}`,
    `  known_hosts ${lab.knownHostsPath}`,
    '',
  ];
  for (const host of lab.hosts) {
    out.push(`${host.name} (${host.flavour}) ${host.address}:${host.port}`);
    out.push(`  host key ${host.hostKeys.ed25519.fingerprint} (ED25519)`);
    if (host.hostKeys.rsa) out.push(`  host key ${host.hostKeys.rsa.fingerprint} (RSA)`);
    for (const creds of Object.values(host.users)) {
      const extra = [
        creds.password === undefined ? undefined : `password ${creds.password}`,
        creds.login === 'root' ? undefined : `sudo ${creds.sudo}`,
      ].filter(Boolean);
      out.push(
        `  ssh -i ${creds.privateKeyPath} -o UserKnownHostsFile=${lab.knownHostsPath} ${creds.login}@${host.address}` +
          (extra.length > 0 ? `   # ${extra.join(', ')}` : ''),
      );
    }
    out.push('');
  }
  out.push('Press Ctrl-C to stop the lab and remove everything it created.');
  console.log(out.join('\n'));
  await stopRequested;
  await lab.stop();
  console.log(`lab ${lab.id} stopped; nothing left behind`);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'cleanup': {
      const { values } = parseArgs({
        args: rest,
        options: {
          all: { type: 'boolean', default: false },
          cache: { type: 'boolean', default: false },
          json: { type: 'boolean', default: false },
        },
      });
      await cleanup({ all: values.all === true, cache: values.cache === true, json: values.json === true });
      return 0;
    }
    case 'start': {
      const { values } = parseArgs({
        args: rest,
        options: { hosts: { type: 'string', default: 'debian,rhel,suse' } },
      });
      await start(values.hosts ?? 'debian,rhel,suse');
      return 0;
    }
    case 'status':
      status();
      return 0;
    case 'check': {
      const missing = labPrerequisites();
      console.log(
        missing.length === 0 ? 'this machine can run labs' : missing.map((m) => `- ${m}`).join('\n'),
      );
      return missing.length === 0 ? 0 : 1;
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      console.error(`unknown command ${command}\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`fleetward-lab: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
