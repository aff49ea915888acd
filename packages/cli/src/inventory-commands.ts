import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import {
  type Account,
  NotFoundError,
  type Project,
  type Provider,
  ProviderSchema,
  type Server,
  type ServerInput,
  ServerSchemas,
  ValidationError,
} from '@fleetward/core';
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  type AwsCredentialFlags,
  awsCredentialsFromFlags,
  awsCredentialsRef,
} from './account-credentials.js';
import { SSH_USER_LABEL } from './context.js';
import {
  addTargetOptions,
  type CommandDeps,
  collectList,
  EXIT,
  keyValue,
  positiveInt,
  type TargetOptions,
  targetsFrom,
} from './deps.js';
import type { Colors } from './output.js';
import { buildReport, type Report, type ServerSummary } from './report.js';
import { renderTable } from './table.js';

type ServerRow = Omit<ServerInput, 'tenantId'> & { id: string };

const labelsText = (labels: Record<string, string>) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',') || '-';

/** One server of an import file (CSV or JSON), in the shape `servers.add` takes. */
function serverFromRecord(record: Record<string, unknown>, where: string): ServerRow {
  const str = (key: string) => {
    const v = record[key];
    return v === undefined || v === null || v === '' ? undefined : String(v);
  };
  const id = str('id');
  if (!id) throw new ValidationError(`server at ${where}`, [{ path: ['id'], message: 'is required' }]);
  const labels: Record<string, string> = {};
  const rawLabels = record['labels'];
  if (typeof rawLabels === 'string') {
    for (const pair of rawLabels.split(/[;|]/).filter(Boolean)) {
      const eq = pair.indexOf('=');
      if (eq < 1)
        throw new ValidationError(`server at ${where}`, [
          { path: ['labels'], message: `"${pair}" is not key=value` },
        ]);
      labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
    }
  } else if (rawLabels && typeof rawLabels === 'object') Object.assign(labels, rawLabels);
  const user = str('user');
  if (user) labels[SSH_USER_LABEL] = user;
  const address = str('address');
  const provider = (str('provider') ?? (address ? 'ssh' : 'local')) as Provider;
  const port = str('port');
  const row = {
    id,
    name: str('name') ?? id,
    accountId: str('account') ?? str('accountId') ?? 'default',
    provider,
    ...(address ? { address, providerId: address } : {}),
    ...(port ? { port: Number(port) } : {}),
    ...(str('region') ? { region: str('region') } : {}),
    labels,
  };
  const parsed = ServerSchemas.input.omit({ tenantId: true }).safeParse(row);
  if (!parsed.success) {
    throw new ValidationError(
      `server at ${where}`,
      parsed.error.issues.map((i) => ({ path: i.path as (string | number)[], message: i.message })),
    );
  }
  return row as ServerRow;
}

/** Splits one CSV line (RFC 4180 quotes). */
function csvFields(line: string): string[] {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      fields.push(field);
      field = '';
    } else field += ch;
  }
  fields.push(field);
  return fields.map((f) => f.trim());
}

/**
 * Servers of an import file: a JSON array of objects, or CSV with a header naming the columns
 * (`id,address,port,user,name,account,region,labels`, labels as `k=v;k=v`). Every row is checked
 * before anything is stored; a bad row is an error naming its line and field.
 */
export function parseServerFile(text: string, file: string): ServerRow[] {
  const trimmed = text.trim();
  if (extname(file).toLowerCase() === '.json' || trimmed.startsWith('[')) {
    let data: unknown;
    try {
      data = JSON.parse(trimmed);
    } catch (error) {
      throw new ValidationError(`server file ${file}`, [
        { path: [], message: `is not JSON: ${error instanceof Error ? error.message : String(error)}` },
      ]);
    }
    if (!Array.isArray(data))
      throw new ValidationError(`server file ${file}`, [
        { path: [], message: 'must be a JSON array of servers' },
      ]);
    return data.map((item, i) => {
      if (!item || typeof item !== 'object' || Array.isArray(item)) {
        throw new ValidationError(`server file ${file}`, [{ path: [i], message: 'must be an object' }]);
      }
      return serverFromRecord(item as Record<string, unknown>, `${file} item ${i}`);
    });
  }
  const lines = text.split(/\r?\n/);
  const header = lines.findIndex((l) => l.trim() && !l.trim().startsWith('#'));
  if (header < 0) return [];
  const columns = csvFields(lines[header]!).map((c) => c.toLowerCase());
  if (!columns.includes('id')) {
    throw new ValidationError(`server file ${file}`, [
      { path: ['line', header + 1], message: 'the header must name an id column' },
    ]);
  }
  const known = new Set(['id', 'address', 'port', 'user', 'name', 'account', 'region', 'labels', 'provider']);
  const unknown = columns.filter((c) => !known.has(c));
  if (unknown.length) {
    throw new ValidationError(`server file ${file}`, [
      {
        path: ['line', header + 1],
        message: `unknown column(s) ${unknown.join(', ')}; known: ${[...known].join(', ')}`,
      },
    ]);
  }
  const rows: ServerRow[] = [];
  for (let n = header + 1; n < lines.length; n++) {
    const line = lines[n]!;
    if (!line.trim() || line.trim().startsWith('#')) continue;
    const fields = csvFields(line);
    if (fields.length !== columns.length) {
      throw new ValidationError(`server file ${file}`, [
        { path: ['line', n + 1], message: `has ${fields.length} fields, the header ${columns.length}` },
      ]);
    }
    rows.push(
      serverFromRecord(Object.fromEntries(columns.map((c, i) => [c, fields[i]])), `${file} line ${n + 1}`),
    );
  }
  return rows;
}

function serverChanges(current: Server, next: ServerRow): Partial<ServerRow> {
  const changes: Partial<ServerRow> = {};
  for (const key of ['name', 'accountId', 'provider', 'address', 'providerId', 'port', 'region'] as const) {
    if (next[key] !== undefined && next[key] !== current[key])
      (changes as Record<string, unknown>)[key] = next[key];
  }
  if (JSON.stringify(next.labels ?? {}) !== JSON.stringify(current.labels))
    changes.labels = next.labels ?? {};
  return changes;
}

function renderReport(report: Report, c: Colors): string {
  const out: string[] = [];
  out.push(c.bold('Servers'));
  out.push(
    renderTable(
      ['ID', 'OS', 'LAST SCAN', 'STATUS', 'PENDING', 'SECURITY', 'REBOOT'],
      report.servers.map((s) => [
        s.id,
        s.os ?? '-',
        s.scannedAt ?? 'never',
        s.status === 'failed' ? `failed: ${s.error?.code ?? ''}` : s.status,
        String(s.pending),
        String(s.security),
        s.rebootRequired ? 'yes' : 'no',
      ]),
    ),
  );
  out.push('');
  if (report.patches.length === 0) {
    out.push('No pending patches.');
  } else {
    out.push(c.bold(`Pending patches (${report.patches.length})`));
    out.push(
      renderTable(
        ['SERVER', 'PACKAGE', 'INSTALLED', 'CANDIDATE', 'CATEGORY', 'SEVERITY', 'NOTE'],
        report.patches.map((p) => [
          p.serverId,
          p.name,
          p.installedVersion ?? '(new)',
          p.candidateVersion,
          p.category === 'security' ? c.red(p.category) : p.category,
          p.severity,
          [p.held ? 'held' : '', p.keptBack && !p.held ? 'kept back' : ''].filter(Boolean).join(', '),
        ]),
      ),
    );
  }
  return `${out.join('\n')}\n`;
}

/** What a cloud provider tells about a server (through discovery), for `servers list` and `show`. */
interface DiscoveredFacts {
  provider: Provider;
  region?: string;
  providerId?: string;
  agent?: NonNullable<Server['agent']>;
  goneAt?: string;
}

function discoveredFacts(server: Server): DiscoveredFacts {
  return {
    provider: server.provider,
    ...(server.region ? { region: server.region } : {}),
    ...(server.providerId ? { providerId: server.providerId } : {}),
    ...(server.agent ? { agent: server.agent } : {}),
    ...(server.goneAt ? { goneAt: server.goneAt } : {}),
  };
}

/** `Online 3.3.1142.0`, `not managed`: the management agent in a few words. */
function agentText(agent: DiscoveredFacts['agent']): string {
  if (!agent) return '-';
  if (!agent.managed) return 'not managed';
  return [agent.status ?? 'managed', agent.version].filter(Boolean).join(' ');
}

/**
 * The servers table. REGION and AGENT appear when some server has them (cloud servers), so an
 * SSH-only inventory keeps its five columns; a server the provider no longer lists says `gone`.
 */
function serversTable(rows: (ServerSummary & DiscoveredFacts)[]): string {
  const cloud = rows.some((r) => r.region !== undefined || r.agent !== undefined);
  const headers = cloud
    ? ['ID', 'NAME', 'REGION', 'OS', 'AGENT', 'LAST SCAN', 'STATUS']
    : ['ID', 'NAME', 'OS', 'LAST SCAN', 'STATUS'];
  return renderTable(
    headers,
    rows.map((s) => {
      const status = s.goneAt ? `gone (${s.status})` : s.status;
      return cloud
        ? [s.id, s.name, s.region ?? '-', s.os ?? '-', agentText(s.agent), s.scannedAt ?? 'never', status]
        : [s.id, s.name, s.os ?? '-', s.scannedAt ?? 'never', status];
    }),
  );
}

/** Why `accounts add` cannot keep credentials: there is no secret store, and how to have one. */
function noSecretStore(passphraseEnv: string | undefined): ValidationError {
  return new ValidationError('account', [
    {
      path: ['credentials'],
      message: passphraseEnv
        ? `Fleetward keeps account credentials only in its secret store, whose passphrase is read from ${passphraseEnv}: set that variable`
        : 'Fleetward keeps account credentials only in its secret store: set "secrets" in the configuration file (a SQLite store has one beside it)',
    },
  ]);
}

/** `scan`, `report`, `servers`, `accounts`, `projects`: the inventory and its scans. */
export function registerInventoryCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print, progress, colors: c, setExit, err } = deps;

  addTargetOptions(
    program
      .command('scan')
      .description(
        'Scan servers for pending patches and store the results (default: this machine, "localhost").',
      ),
    { allowAll: true, what: 'scan' },
  )
    .option('-c, --concurrency <n>', 'servers scanned at once', positiveInt, 32)
    .action(async (opts: TargetOptions & { concurrency: number }) => {
      const targets = targetsFrom(opts, { serverIds: ['localhost'] });
      await withContext(async ({ fleet, session, signal }) => {
        let done = 0;
        let total = 0;
        fleet.events.on('scan.started', (e) => {
          total = e.total;
          progress.line(`Scanning ${e.total} server${e.total === 1 ? '' : 's'}…`);
        });
        fleet.events.on('scan.server.completed', (e) => {
          done++;
          const security = e.result.patches.filter((p) => p.category === 'security').length;
          progress.line(
            `[${done}/${total}] ${c.green('ok')}     ${e.serverId}: ${e.result.patches.length} pending, ${security} security${e.result.rebootRequired ? ', reboot required' : ''}`,
          );
        });
        fleet.events.on('scan.server.failed', (e) => {
          done++;
          progress.line(
            `[${done}/${total}] ${c.red('failed')} ${e.serverId}: ${e.error.code} ${e.error.message}`,
          );
        });
        const outcome = await session.scan(targets, { concurrency: opts.concurrency, signal });
        const summary = outcome.job.summary!;
        print(
          { job: outcome.job, results: outcome.results },
          {
            human: () => {
              const failed = outcome.results.filter((r) => r.status === 'failed');
              const lines = [
                `Scan ${outcome.job.status}: ${summary.succeeded} of ${summary.total} servers scanned.`,
              ];
              for (const r of failed)
                lines.push(
                  `  ${c.red('failed')} ${r.serverId}: ${r.error?.code ?? ''} ${r.error?.message ?? ''}`,
                );
              if (summary.succeeded > 0) lines.push('Run "fleetward report" to see pending patches.');
              else
                lines.push(
                  'Nothing was scanned: check the servers\' addresses and the SSH settings ("fleetward config show").',
                );
              return lines.join('\n');
            },
            ids: () => [outcome.job.id],
          },
        );
        setExit(summary.failed === 0 ? EXIT.ok : summary.succeeded === 0 ? EXIT.failure : EXIT.partial);
      });
    });

  addTargetOptions(
    program.command('report').description('Pending patches and a per-server summary, from the latest scans.'),
    { what: 'only' },
  )
    .option('--security', 'only security patches')
    .action(async (opts: TargetOptions & { security?: boolean }) => {
      const targets = opts.server || opts.project || opts.label ? targetsFrom(opts) : undefined;
      await withContext(async ({ fleet, session }) => {
        const report = buildReport(await session.latestScans(targets), fleet.clock.now());
        if (opts.security) report.patches = report.patches.filter((p) => p.category === 'security');
        print(report, { human: (r) => renderReport(r, c), ids: (r) => r.servers.map((s) => s.id) });
        if (report.servers.some((s) => s.status === 'failed')) setExit(EXIT.partial);
      });
    });

  const servers = program.command('servers').alias('server').description('The servers of the inventory.');
  addTargetOptions(
    servers.command('list', { isDefault: true }).description('List servers with their last scan.'),
    {
      what: 'only',
    },
  ).action(async (opts: TargetOptions) => {
    const targets = opts.server || opts.project || opts.label ? targetsFrom(opts) : undefined;
    await withContext(async ({ fleet, session }) => {
      const scans = await session.latestScans(targets);
      const report = buildReport(scans, fleet.clock.now());
      const rows = report.servers.map((summary, i) => ({ ...summary, ...discoveredFacts(scans[i]!.server) }));
      print(rows, {
        human: (list) =>
          list.length === 0
            ? 'No servers. Add one with: fleetward servers add <id> --address <host>'
            : serversTable(list),
      });
    });
  });

  servers
    .command('add <id>')
    .description('Add a server reached over SSH (or another provider).')
    .requiredOption('--address <host>', 'host name or IP address (required for ssh)')
    .option('--port <n>', 'SSH port', positiveInt)
    .option('--user <login>', 'SSH login for this server (else ssh.user of the configuration)')
    .option('--name <name>', 'display name (default: the id)')
    .option('--account <id>', 'the account it belongs to', 'default')
    .addOption(
      new Option('--provider <provider>', 'how it is reached').choices(ProviderSchema.options).default('ssh'),
    )
    .option('--region <region>', 'region or site')
    .option('-l, --label <key=value>', 'label (repeatable)', keyValue)
    .action(
      async (
        id: string,
        o: {
          address: string;
          port?: number;
          user?: string;
          name?: string;
          account: string;
          provider: Provider;
          region?: string;
          label?: Record<string, string>;
        },
      ) => {
        const row = serverFromRecord(
          {
            id,
            address: o.address,
            port: o.port,
            user: o.user,
            name: o.name,
            account: o.account,
            provider: o.provider,
            region: o.region,
            labels: o.label ?? {},
          },
          'the command line',
        );
        await withContext(async ({ session }) => {
          const server = await session.servers.add(row);
          print(server, {
            human: (s) =>
              `Added server ${s.id} (${s.provider} ${s.address ?? ''}${s.port ? `:${s.port}` : ''}).`,
          });
        });
      },
    );

  servers
    .command('import <file>')
    .description(
      'Add or update servers from a CSV file (header: id,address,port,user,name,account,region,labels; labels as k=v;k=v) or a JSON array.',
    )
    .option('--dry-run', 'show what would change, change nothing')
    .action(async (file: string, o: { dryRun?: boolean }) => {
      const rows = parseServerFile(await readFile(file, 'utf8'), file);
      const seen = new Set<string>();
      for (const r of rows) {
        if (seen.has(r.id))
          throw new ValidationError(`server file ${file}`, [
            { path: ['id'], message: `server ${r.id} is listed twice` },
          ]);
        seen.add(r.id);
      }
      await withContext(async ({ session }) => {
        const result = {
          added: [] as string[],
          updated: [] as string[],
          unchanged: [] as string[],
          dryRun: Boolean(o.dryRun),
        };
        for (const row of rows) {
          const current = await session.servers.get(row.id);
          if (!current) {
            if (!o.dryRun) await session.servers.add(row);
            result.added.push(row.id);
            continue;
          }
          const changes = serverChanges(current, row);
          if (Object.keys(changes).length === 0) result.unchanged.push(row.id);
          else {
            if (!o.dryRun)
              await session.servers.update(row.id, changes, { expectedVersion: current.version });
            result.updated.push(row.id);
          }
        }
        print(result, {
          human: (r) =>
            `${r.dryRun ? 'Would add' : 'Added'} ${r.added.length}, ${r.dryRun ? 'would update' : 'updated'} ${r.updated.length}, unchanged ${r.unchanged.length} server(s).${r.added.length ? `\n  added: ${r.added.join(', ')}` : ''}${r.updated.length ? `\n  updated: ${r.updated.join(', ')}` : ''}`,
          ids: (r) => [...r.added, ...r.updated, ...r.unchanged],
        });
      });
    });

  servers
    .command('show <id>')
    .description('A server: its settings, labels and last scan.')
    .action(async (id: string) => {
      await withContext(async ({ fleet, session }) => {
        const [row] = await session.latestScans({ serverIds: [id] });
        const server = row!.server;
        const summary = buildReport([row!], fleet.clock.now()).servers[0]!;
        print(
          { ...server, lastScan: summary },
          {
            human: (s) =>
              [
                `Server ${s.id} (${s.name})`,
                `  provider   ${s.provider}${s.address ? ` ${s.address}${s.port ? `:${s.port}` : ''}` : ''}`,
                `  account    ${s.accountId}${s.region ? `, region ${s.region}` : ''}`,
                ...(s.providerId && s.providerId !== s.address ? [`  provider id ${s.providerId}`] : []),
                ...(s.agent ? [`  agent      ${s.agent.name}: ${agentText(s.agent)}`] : []),
                ...(s.goneAt ? [`  gone       since ${s.goneAt} (the provider no longer lists it)`] : []),
                `  labels     ${labelsText(s.labels)}`,
                `  os         ${s.os?.prettyName || summary.os || '-'}`,
                `  last scan  ${summary.scannedAt ?? 'never'} ${summary.status}${summary.status === 'succeeded' ? `: ${summary.pending} pending, ${summary.security} security` : summary.error ? `: ${summary.error.code} ${summary.error.message}` : ''}`,
              ].join('\n'),
          },
        );
      });
    });

  servers
    .command('label <id> [labels...]')
    .description('Set labels (key=value) and remove some (--remove key) on a server.')
    .option('--remove <key>', 'remove this label (repeatable, or comma-separated)', collectList)
    .action(async (id: string, labels: string[], o: { remove?: string[] }) => {
      const set = labels.reduce<Record<string, string>>((acc, l) => keyValue(l, acc), {});
      if (!labels.length && !o.remove?.length)
        throw new InvalidArgumentError('give labels as key=value, or --remove <key>');
      await withContext(async ({ session }) => {
        const current = await session.servers.get(id);
        if (!current) throw new NotFoundError('server', id);
        const next = { ...current.labels, ...set };
        for (const key of o.remove ?? []) delete next[key];
        const updated = await session.servers.update(
          id,
          { labels: next },
          { expectedVersion: current.version },
        );
        print(updated, { human: (s) => `Labels of ${s.id}: ${labelsText(s.labels)}` });
      });
    });

  servers
    .command('remove <ids...>')
    .alias('rm')
    .description('Remove servers from the inventory (their history stays in the audit log).')
    .action(async (ids: string[]) => {
      await withContext(async ({ session }) => {
        const removed: string[] = [];
        const missing: string[] = [];
        for (const id of ids) ((await session.servers.remove(id)) ? removed : missing).push(id);
        print(
          { removed, missing },
          {
            human: (r) =>
              [
                r.removed.length ? `Removed ${r.removed.join(', ')}.` : '',
                r.missing.length ? `Not found: ${r.missing.join(', ')}.` : '',
              ]
                .filter(Boolean)
                .join('\n'),
            ids: (r) => r.removed,
          },
        );
        if (missing.length) {
          err(`${c.dim('hint:')} List servers with: fleetward servers list\n`);
          setExit(EXIT.failure);
        }
      });
    });

  const accounts = program
    .command('accounts')
    .alias('account')
    .description('Accounts: where servers live (a data centre, a cloud account).');
  accounts
    .command('list', { isDefault: true })
    .description('List accounts.')
    .action(async () => {
      await withContext(async ({ session }) => {
        print(await session.accounts.list(), {
          human: (rows: Account[]) =>
            rows.length === 0
              ? 'No accounts. Add one with: fleetward accounts add <id> --provider ssh'
              : renderTable(
                  ['ID', 'NAME', 'PROVIDER', 'REGIONS', 'LABELS'],
                  rows.map((a) => [
                    a.id,
                    a.name,
                    a.provider,
                    a.regions.join(',') || '-',
                    labelsText(a.labels),
                  ]),
                ),
        });
      });
    });
  accounts
    .command('add <id>')
    .description('Add an account.')
    .option('--name <name>', 'display name (default: the id)')
    .addOption(
      new Option('--provider <provider>', 'its provider').choices(ProviderSchema.options).default('ssh'),
    )
    .option('--region <regions>', 'its regions (repeatable, or comma-separated)', collectList)
    .option('--credentials-ref <ref>', 'name of its credentials in the secret store')
    .option(
      '--role-arn <arn>',
      'aws: the IAM role Fleetward assumes in the account (stored as its credentials)',
    )
    .option('--external-id <id>', "aws: the external id the role's trust policy asks for (with --role-arn)")
    .option('--access-key-id <id>', "aws: an IAM user's access key id, instead of a role")
    .option(
      '--secret-access-key-env <name>',
      "aws: the environment variable holding that access key's secret (never the secret itself)",
    )
    .option('-l, --label <key=value>', 'label (repeatable)', keyValue)
    .action(
      async (
        id: string,
        o: AwsCredentialFlags & {
          name?: string;
          region?: string[];
          label?: Record<string, string>;
        },
      ) => {
        const document = await awsCredentialsFromFlags(o, deps.env);
        await withContext(async ({ fleet, session, config }) => {
          const ref = document ? awsCredentialsRef(config.tenant, id) : o.credentialsRef;
          if (document && !fleet.secrets) throw noSecretStore(config.secrets?.passphraseEnv);
          const account = await session.accounts.add({
            id,
            name: o.name ?? id,
            provider: o.provider,
            regions: o.region ?? [],
            ...(ref ? { credentialsRef: ref } : {}),
            labels: o.label ?? {},
          });
          // After the account: a caller refused the account (or an id taken) must not have
          // written over the credentials another account refers to.
          if (document && fleet.secrets) {
            try {
              await fleet.secrets.set(account.credentialsRef!, JSON.stringify(document));
            } catch (error) {
              await session.accounts.remove(account.id);
              throw error;
            }
          }
          print(account, {
            human: (a) =>
              `Added account ${a.id} (${a.provider}).${document ? `\nIts credentials are in the secret store as ${a.credentialsRef}. Next: fleetward discover -a ${a.id}` : ''}`,
          });
        });
      },
    );
  accounts
    .command('show <id>')
    .description('An account.')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        const account = await session.accounts.get(id);
        if (!account) throw new NotFoundError('account', id);
        print(account, {
          human: (a) =>
            `Account ${a.id} (${a.name})\n  provider  ${a.provider}\n  regions   ${a.regions.join(',') || '-'}\n  labels    ${labelsText(a.labels)}${a.credentialsRef ? `\n  credentials ${a.credentialsRef}` : ''}`,
        });
      });
    });
  accounts
    .command('remove <id>')
    .alias('rm')
    .description(
      'Remove an account that no server belongs to (and the credentials "accounts add" stored for it).',
    )
    .action(async (id: string) => {
      await withContext(async ({ fleet, session, config }) => {
        const account = await session.accounts.get(id);
        const removed = await session.accounts.remove(id);
        if (!removed) throw new NotFoundError('account', id);
        const ref = awsCredentialsRef(config.tenant, id);
        if (account?.credentialsRef === ref && fleet.secrets) {
          const others = (await session.accounts.list()).filter((a) => a.credentialsRef === ref);
          if (others.length === 0) await fleet.secrets.delete(ref);
        }
        print({ id, removed: true }, { human: () => `Removed account ${id}.` });
      });
    });

  const projects = program
    .command('projects')
    .alias('project')
    .description('Projects: groups of servers chosen by a selector.');
  projects
    .command('list', { isDefault: true })
    .description('List projects.')
    .action(async () => {
      await withContext(async ({ session }) => {
        print(await session.projects.list(), {
          human: (rows: Project[]) =>
            rows.length === 0
              ? 'No projects. Add one with: fleetward projects add <id> --label key=value'
              : renderTable(
                  ['ID', 'NAME', 'SELECTOR'],
                  rows.map((p) => [p.id, p.name, JSON.stringify(p.selector)]),
                ),
        });
      });
    });
  addTargetOptions(
    projects
      .command('add <id>')
      .description(
        'Add a project: the servers chosen by --server, --label or --all (a selector, kept up to date).',
      ),
    { allowAll: true, what: 'its servers' },
  )
    .option('--name <name>', 'display name (default: the id)')
    .action(async (id: string, o: TargetOptions & { name?: string }) => {
      if (o.project)
        throw new InvalidArgumentError('a project is chosen by --server, --label or --all, not --project');
      const targets = targetsFrom(o);
      const selector =
        'serverIds' in targets ? { ids: targets.serverIds } : 'selector' in targets ? targets.selector : {};
      await withContext(async ({ session }) => {
        const project = await session.projects.add({ id, name: o.name ?? id, selector });
        const members = await session.projects.servers(project.id);
        print(
          { ...project, servers: members.map((s) => s.id) },
          {
            human: (p) =>
              `Added project ${p.id}: ${p.servers.length} server(s) now (${p.servers.join(', ') || 'none'}).`,
          },
        );
      });
    });
  projects
    .command('show <id>')
    .description('A project and the servers it has now.')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        const project = await session.projects.get(id);
        if (!project) throw new NotFoundError('project', id);
        const members = await session.projects.servers(id);
        print(
          { ...project, servers: members.map((s) => s.id) },
          {
            human: (p) =>
              `Project ${p.id} (${p.name})\n  selector  ${JSON.stringify(p.selector)}\n  servers   ${p.servers.join(', ') || '(none)'}`,
          },
        );
      });
    });
  projects
    .command('remove <id>')
    .alias('rm')
    .description('Remove a project (its servers stay).')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        if (!(await session.projects.remove(id))) throw new NotFoundError('project', id);
        print({ id, removed: true }, { human: () => `Removed project ${id}.` });
      });
    });
}
