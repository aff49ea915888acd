import { createPrivateKey } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import {
  ACCESS_AUDIT_CSV_TABLES,
  type AccessAuditCsvTable,
  type AccessGrant,
  AccessGrantFields,
  type AccessRequest,
  AccessRequestFields,
  type AuditCheckpoint,
  type AuditLogVerification,
  type AuditRecord,
  AuthorizationError,
  type Credential,
  createFleet,
  type FleetSession,
  type GrantTarget,
  type KeyInventory,
  NotFoundError,
  type RotationReport,
  renderAccessAuditCsv,
  renderAccessAuditHtml,
  renderAccessAuditJson,
  type SweepResult,
  type Targets,
  ValidationError,
  verifyAuditExport,
  writeFileNoFollow,
} from '@fleetward/core';
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  addTargetOptions,
  type CommandDeps,
  collectList,
  EXIT,
  positiveInt,
  type TargetOptions,
  targetsFrom,
} from './deps.js';
import type { Colors } from './output.js';
import { renderTable } from './table.js';

const minutes = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of minutes');
  return n;
};

/** An instant given on the command line (`--since`, `--until`). */
function instant(flag: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const at = new Date(value);
  if (Number.isNaN(at.getTime()))
    throw new InvalidArgumentError(`${flag} must be an ISO date or time, like 2026-12-01T08:00:00Z`);
  return at;
}

function verificationText(result: AuditLogVerification): string {
  if (result.ok) {
    return `OK: ${result.checked} records verified (seq ${result.firstSeq ?? 0}–${result.lastSeq ?? 0}, head ${result.headHash.slice(0, 16)}…), ${result.checkpointsVerified} checkpoint(s) verified.`;
  }
  // A log that is intact but not anchored by any checkpoint is not evidence of tampering.
  const unanchored = result.problems.every((p) => p.problem === 'missing-checkpoint');
  const lines = [
    `${unanchored ? 'NOT ANCHORED' : 'TAMPERED'}: ${result.problems.length} problem(s) in ${result.checked} records:`,
    ...result.problems.slice(0, 50).map((p) => `  - ${p.problem}: ${p.message}`),
  ];
  if (result.problems.length > 50) lines.push(`  … and ${result.problems.length - 50} more`);
  return lines.join('\n');
}

/**
 * Checkpoints from a file: one checkpoint object or an array of them. Their shape and signature
 * are checked by the verification (a bad one is a problem there, not here).
 */
async function readCheckpoints(path: string): Promise<AuditCheckpoint[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new InvalidArgumentError(
      `--checkpoint ${path} is not JSON: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  return (Array.isArray(parsed) ? parsed : [parsed]) as AuditCheckpoint[];
}

/** An Ed25519 private key in PEM from a file, refused early and in words when it is something else. */
async function readSigningKey(path: string): Promise<string> {
  const pem = await readFile(path, 'utf8');
  let type: string | undefined;
  try {
    type = createPrivateKey(pem).asymmetricKeyType;
  } catch {
    type = undefined;
  }
  if (type !== 'ed25519') {
    throw new ValidationError(`signing key ${path}`, [
      {
        path: [],
        message: `is not an Ed25519 private key in PEM${type ? ` (it is ${type})` : ''}; make one with: openssl genpkey -algorithm ed25519 -out ${path}`,
      },
    ]);
  }
  return pem;
}

/** A report body written to a file, as `-o json` describes it. */
interface WrittenFile {
  path: string;
  bytes: number;
  format: string;
}

/** A target on whose server the grant is not in effect: it failed, or was not started and why. */
const notInEffect = (t: GrantTarget) =>
  t.state === 'failed' || (t.state === 'pending' && t.error !== undefined);

/** Whether installing the grant's key failed on any of its servers. */
export function installationFailed(grant: AccessGrant): boolean {
  if (grant.mode === 'actions') return false;
  return (
    grant.installation === 'failed' || grant.installation === 'partial' || grant.targets.some(notInEffect)
  );
}

/** One line per server of a grant: its state, FAILED with the reason where it is not in effect. */
function targetLines(grant: AccessGrant, c: Colors): string[] {
  const width = Math.max(0, ...grant.targets.map((t) => t.serverId.length));
  return grant.targets.map((t) => {
    const name = t.serverId.padEnd(width);
    const reason = t.error ? `${t.error.message} (${t.error.code})` : 'no reason recorded';
    if (notInEffect(t)) return `  ${name}  ${c.red('FAILED')}: ${reason}`;
    if (t.state === 'remove-failed') return `  ${name}  ${c.red('REMOVAL FAILED')}: ${reason}`;
    if (t.state === 'installed') {
      return `  ${name}  ${c.green('installed')}${t.expiryTime ? ` (sshd refuses it after ${t.expiryTime})` : ''}`;
    }
    return `  ${name}  ${t.state}`;
  });
}

/** What a grant gives, in words. */
function grantWhat(grant: AccessGrant, request?: AccessRequest): string {
  if (grant.mode === 'actions') {
    const actions = request?.actions?.join(', ') ?? 'actions';
    return `${actions}${request?.scripts ? ` (scripts ${request.scripts.join(', ')})` : ''} on ${request?.serverIds.length ?? '?'} server(s), no shell`;
  }
  const how = grant.mode === 'ssh-cert' ? 'an OpenSSH certificate' : `key ${grant.fingerprint ?? ''}`;
  return `ssh as ${grant.login} with ${how}`;
}

/** A grant for people: what it gives, when, and each server's state. */
function grantText(grant: AccessGrant, c: Colors, request?: AccessRequest): string {
  const lines = [
    `Grant ${grant.id} to ${grant.principalId}: ${grantWhat(grant, request)}`,
    `  ${grant.status}, from ${grant.notBefore} until ${grant.notAfter}; request ${grant.requestId}, ticket ${grant.ticket}`,
    `  approved by ${grant.approverIds.join(', ')}${grant.revokedBy ? `; revoked by ${grant.revokedBy}` : ''}`,
  ];
  if (grant.mode !== 'actions') {
    const failed = grant.targets.filter(notInEffect).length;
    lines.push(
      grant.status === 'scheduled'
        ? `  starts at ${grant.notBefore}: a sweep then installs it (fleetward access sweep)`
        : failed
          ? `  ${c.red('NOT in effect')} on ${failed} of ${grant.targets.length} server(s):`
          : `  installation: ${grant.installation}`,
    );
    lines.push(...targetLines(grant, c));
  }
  if (grant.certificate)
    lines.push('Certificate (save it beside your key as <key>-cert.pub):', grant.certificate);
  return lines.join('\n');
}

/** What to do about a grant that is not in effect everywhere. */
function failedGrantHint(grant: AccessGrant): string {
  return `Installing the grant failed on ${grant.targets.filter(notInEffect).length} of ${grant.targets.length} server(s). Unreachable servers are tried again by every sweep (fleetward access sweep); for the others fix the cause, then revoke it (fleetward grants revoke ${grant.id}) and ask again.`;
}

function requestText(r: AccessRequest): string {
  const what =
    r.mode === 'actions'
      ? `actions ${r.actions?.join(', ') ?? ''}${r.scripts ? ` (scripts ${r.scripts.join(', ')})` : ''}`
      : `${r.mode === 'ssh-cert' ? 'an OpenSSH certificate' : 'ssh key'} as ${r.login}`;
  return [
    `Request ${r.id} by ${r.requesterId}: ${r.status}`,
    `  what      ${what} on ${r.serverIds.join(', ')}`,
    `  how long  ${r.durationMinutes} minutes${r.startAt ? `, from ${r.startAt}` : ' from approval'}`,
    `  why       ${r.reason} (ticket ${r.ticket})`,
    `  approvals ${r.approvals.length} of ${r.requiredApprovals}${r.approvals.length ? `: ${r.approvals.map((a) => a.principalId).join(', ')}` : ''}`,
    `  requested ${r.requestedAt}${r.status === 'pending' ? `, expires ${r.expiresAt}` : ''}`,
    ...(r.rejection
      ? [`  rejected by ${r.rejection.principalId}${r.rejection.comment ? `: ${r.rejection.comment}` : ''}`]
      : []),
    ...(r.grantId ? [`  grant     ${r.grantId} (fleetward grants show ${r.grantId})`] : []),
  ].join('\n');
}

function requestsTable(rows: AccessRequest[]): string {
  if (rows.length === 0) return 'No access requests.';
  return renderTable(
    ['ID', 'REQUESTER', 'MODE', 'STATUS', 'SERVERS', 'MINUTES', 'TICKET', 'REQUESTED'],
    rows.map((r) => [
      r.id,
      r.requesterId,
      r.mode,
      r.status,
      r.serverIds.join(','),
      String(r.durationMinutes),
      r.ticket,
      r.requestedAt,
    ]),
  );
}

function grantsTable(rows: AccessGrant[]): string {
  if (rows.length === 0) return 'No grants.';
  return renderTable(
    ['ID', 'PRINCIPAL', 'MODE', 'LOGIN', 'STATUS', 'INSTALLATION', 'SERVERS', 'UNTIL'],
    rows.map((g) => [
      g.id,
      g.principalId,
      g.mode,
      g.login ?? '-',
      g.status,
      g.mode === 'actions' ? '-' : installationFailed(g) ? `FAILED (${g.installation})` : g.installation,
      g.mode === 'actions' ? '-' : String(g.targets.length),
      g.notAfter,
    ]),
  );
}

function sweepText(r: SweepResult): string {
  const lines = [
    `Expired ${r.expiredRequests.length} request(s) and ${r.expiredGrants.length} grant(s); started ${r.started.length}; installed ${r.installed}, removed ${r.removed}; ${r.failures.length} failure(s).`,
    ...r.failures.slice(0, 50).map((f) => `  FAILED grant ${f.grantId} on ${f.serverId}: ${f.message}`),
  ];
  if (r.failures.length > 50) lines.push(`  … and ${r.failures.length - 50} more`);
  return lines.join('\n');
}

function credentialsTable(rows: Credential[]): string {
  if (rows.length === 0) {
    return 'No managed keys. Register one with: fleetward credentials add --login <login> --public-key-file <file> --server <id>';
  }
  return renderTable(
    ['ID', 'LOGIN', 'CARETAKER', 'SERVERS', 'STATUS', 'LAST ROTATION', 'KEY HELD'],
    rows.map((k) => [
      k.id,
      k.login,
      k.caretakerId,
      k.serverIds.join(','),
      k.status,
      k.rotatedAt ?? `never (registered ${k.createdAt})`,
      k.secretRef ? 'yes' : 'no',
    ]),
  );
}

function credentialText(k: Credential): string {
  return [
    `Credential ${k.id}: ${k.login} on ${k.serverIds.join(', ') || '(no server)'}`,
    `  caretaker     ${k.caretakerId}`,
    `  key           ${k.fingerprint}${k.previousFingerprint ? ` (replaced ${k.previousFingerprint})` : ''}`,
    `  status        ${k.status}`,
    `  last rotation ${k.rotatedAt ?? `never (registered ${k.createdAt})`}`,
    `  private key   ${k.secretRef ? 'held by Fleetward: fleetward keys rotate can rotate it' : 'not held: Fleetward cannot rotate it'}`,
  ].join('\n');
}

function inventoryText(inventories: KeyInventory[], c: Colors): string {
  const keys = renderTable(
    ['SERVER', 'LOGIN', 'FINGERPRINT', 'KIND', 'LOGINS', 'LAST USED', 'COMMENT'],
    inventories.flatMap((i) =>
      i.keys.map((k) => [
        i.serverId,
        k.login,
        k.fingerprint,
        k.credentialId
          ? `managed ${k.credentialId}`
          : k.grantId
            ? `grant ${k.grantId}`
            : k.fleetwardUserCa
              ? 'user CA'
              : k.cloudAgent
                ? 'cloud agent'
                : 'unmanaged',
        String(k.logins),
        k.lastUsedAt ?? '-',
        k.comment.slice(0, 40),
      ]),
    ),
  );
  const failed = inventories
    .filter((i) => i.status === 'failed')
    .map(
      (i) =>
        `  ${c.red('FAILED')} ${i.serverId}: ${i.error ? `${i.error.message} (${i.error.code})` : 'no reason recorded'}`,
    );
  const read = inventories.length - failed.length;
  return [keys, `Read the keys of ${read} of ${inventories.length} server(s).`, ...failed].join('\n');
}

function rotationText(r: RotationReport): string {
  return [
    `Rotation of ${r.credentialId} ${r.status}: ${r.oldFingerprint} -> ${r.newFingerprint}`,
    ...r.servers.map((s) => `  ${s.serverId}: ${s.step}${s.error ? ` (${s.error.message})` : ''}`),
    ...(r.reason ? [r.reason] : []),
  ].join('\n');
}

/** The server ids the target options choose, for what takes a fixed list (a credential's servers). */
async function serverIdsOf(session: FleetSession, targets: Targets): Promise<string[]> {
  if ('serverIds' in targets) return targets.serverIds;
  const servers =
    'projectId' in targets
      ? await session.projects.servers(targets.projectId)
      : await session.selectServers(targets.selector);
  if (servers.length === 0) {
    throw new ValidationError('credential', [{ path: ['servers'], message: 'the options choose no server' }]);
  }
  return servers.map((s) => s.id);
}

/** `audit list|verify|checkpoint|export|report`: the hash-chained audit log. */
function registerAuditCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print, out, setExit } = deps;
  const audit = program
    .command('audit')
    .description('The hash-chained audit log: list, verify, checkpoint, export, access report.');

  audit
    .command('list', { isDefault: true })
    .description('Audit records, oldest first.')
    .option('--action <name>', 'only this action')
    .option('--actor <id>', 'only this actor')
    .option('--limit <n>', 'at most this many', positiveInt, 100)
    .action(async (o: { action?: string; actor?: string; limit: number }) => {
      await withContext(async ({ session }) => {
        const records = await session.audit.list({
          limit: o.limit,
          ...(o.action ? { action: o.action } : {}),
          ...(o.actor ? { actorId: o.actor } : {}),
        });
        print(records, {
          human: (rows: AuditRecord[]) =>
            renderTable(
              ['SEQ', 'AT', 'ACTOR', 'ACTION', 'TARGET', 'DECISION', 'RESULT', 'REASON'],
              rows.map((r) => [
                String(r.seq),
                r.at,
                r.actor.principalId,
                r.action,
                r.target ? `${r.target.type} ${r.target.id}` : '',
                r.decision,
                r.result,
                (r.reason ?? '').slice(0, 80),
              ]),
            ),
        });
      });
    });

  audit
    .command('verify')
    .description(
      'Verify the audit chain of the store (rows, columns and the checkpoints recorded in it), or offline an export file (--file).',
    )
    .option('--file <path>', 'an export made by "fleetward audit export" (verified without the store)')
    .option('--public-key <path...>', 'PEM public key(s) trusted for checkpoints')
    .option(
      '--checkpoint <path...>',
      'signed checkpoint(s) kept apart from the store (JSON: one checkpoint or an array), checked against the live log',
    )
    .option('--require-checkpoint', 'fail unless a checkpoint by a trusted key verifies')
    .action(
      async (o: {
        file?: string;
        publicKey?: string[];
        checkpoint?: string[];
        requireCheckpoint?: boolean;
      }) => {
        if (o.file && o.checkpoint)
          throw new InvalidArgumentError('--checkpoint is for the live log; an export carries its own');
        const publicKeys = await Promise.all((o.publicKey ?? []).map((p) => readFile(p, 'utf8')));
        const checkpoints = (await Promise.all((o.checkpoint ?? []).map(readCheckpoints))).flat();
        const result = o.file
          ? await verifyAuditExport(createReadStream(o.file, { encoding: 'utf8' }), {
              publicKeys,
              ...(o.requireCheckpoint ? { requireCheckpoint: true } : {}),
            })
          : await withContext(({ session }) =>
              // The live log is checked against its own recorded checkpoints and the files given;
              // --require-checkpoint fails when none of them verifies.
              session.verifyAuditLog({
                ...(publicKeys.length ? { publicKeys } : {}),
                ...(checkpoints.length ? { checkpoints } : {}),
                ...(o.requireCheckpoint ? { requireCheckpoint: true } : {}),
              }),
            );
        print(result, { human: verificationText, ids: () => [] });
        if (!result.ok) setExit(EXIT.failure);
      },
    );

  audit
    .command('checkpoint')
    .description(
      'Sign the head of the audit log with your Ed25519 key (kept apart from the store); the log records the checkpoint, keep a copy apart too.',
    )
    .requiredOption(
      '--signing-key <path>',
      'Ed25519 private key, PEM (openssl genpkey -algorithm ed25519 -out <path>)',
    )
    .option('--out <path>', 'also write the checkpoint as JSON to this file (never through a symbolic link)')
    .action(async (o: { signingKey: string; out?: string }) => {
      const signingKey = await readSigningKey(o.signingKey);
      await withContext(async ({ fleet, session }) => {
        // The key comes with the call and never goes near the store: whoever holds both could
        // rewrite history. A Fleet over the same store signs with it, as the session's principal.
        const signer = createFleet({ store: fleet.store, adapters: [], auditSigningKey: signingKey });
        const checkpoint = await signer.as(session.actor).audit.checkpoint();
        const text = `${JSON.stringify(checkpoint, null, 2)}\n`;
        if (o.out) await writeFileNoFollow(o.out, text, { mode: 0o644 });
        print(checkpoint, {
          human: (cp) =>
            [
              `Signed checkpoint of ${cp.tenantId}: ${cp.seq} records, head ${cp.hash.slice(0, 16)}…, key ${cp.keyId}, at ${cp.at}.`,
              o.out
                ? `Wrote it to ${o.out}: keep it apart from the store (fleetward audit verify --checkpoint ${o.out} --public-key <public key>).`
                : 'Keep a copy apart from the store: --out <file>, or -o json.',
            ].join('\n'),
          ids: (cp) => [String(cp.seq)],
        });
      });
    });

  audit
    .command('export')
    .description(
      'Write the audit log as JSON Lines for offline verification (standard output without --out).',
    )
    .option('--out <path>', 'file to write (never through a symbolic link), or - for standard output')
    .option(
      '--checkpoint <path...>',
      'signed checkpoint(s) to put in the file (JSON: one checkpoint or an array), so that verify --file checks them',
    )
    .action(async (o: { out?: string; checkpoint?: string[] }) => {
      const checkpoints = (await Promise.all((o.checkpoint ?? []).map(readCheckpoints))).flat();
      await withContext(async ({ session }) => {
        const lines = await session.audit.export(checkpoints.length ? { checkpoints } : {});
        if (!o.out || o.out === '-') {
          for await (const line of lines) out(line);
          return;
        }
        let text = '';
        let records = -1 - checkpoints.length;
        for await (const line of lines) {
          text += line;
          records++;
        }
        await writeFileNoFollow(o.out, text, { mode: 0o600, exactMode: true });
        print({ path: o.out, bytes: Buffer.byteLength(text), format: 'jsonl' } satisfies WrittenFile, {
          human: (f) => `Wrote ${records} records to ${f.path}.`,
          ids: (f) => [f.path],
        });
      });
    });

  audit
    .command('report')
    .description(
      'The post-action access audit: actions, who accessed what, keys and whether needed, rotation.',
    )
    .addOption(new Option('--format <f>', 'report format').choices(['html', 'csv', 'json']).default('html'))
    .addOption(new Option('--table <t>', 'CSV table').choices([...ACCESS_AUDIT_CSV_TABLES]).default('keys'))
    .option('--since <iso>', 'records from this instant')
    .option('--until <iso>', 'records before this instant')
    .option('--out <path>', 'write to a file (never through a symbolic link) instead of standard output')
    .action(
      async (o: {
        format: 'html' | 'csv' | 'json';
        table: AccessAuditCsvTable;
        since?: string;
        until?: string;
        out?: string;
      }) => {
        const since = instant('--since', o.since);
        const until = instant('--until', o.until);
        await withContext(async ({ session }) => {
          const report = await session.audit.accessReport({
            ...(since ? { since } : {}),
            ...(until ? { until } : {}),
          });
          const text =
            o.format === 'json'
              ? renderAccessAuditJson(report)
              : o.format === 'csv'
                ? renderAccessAuditCsv(report, { table: o.table })
                : renderAccessAuditHtml(report);
          if (!o.out || o.out === '-') {
            out(text);
            return;
          }
          await writeFileNoFollow(o.out, text, { mode: 0o666 });
          print({ path: o.out, bytes: Buffer.byteLength(text), format: o.format } satisfies WrittenFile, {
            human: (f) => `Wrote the access audit to ${f.path}.`,
            ids: (f) => [f.path],
          });
        });
      },
    );
}

interface RequestFlags extends TargetOptions {
  login?: string;
  publicKeyFile?: string;
  certificate?: boolean;
  actions?: string[];
  scripts?: string[];
  minutes: number;
  startAt?: string;
  reason: string;
  ticket: string;
}

/** `access request|approve|reject|show|cancel|list|sweep`: just-in-time access requests. */
function registerRequestCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print, colors: c, setExit, err } = deps;
  const access = program
    .command('access')
    .description('Just-in-time access: requests, approvals and the sweep.');

  addTargetOptions(
    access
      .command('request')
      .description(
        'Ask for time-bound access: an ssh key line that sshd expires, an OpenSSH certificate, or actions only.',
      ),
    { what: 'access to' },
  )
    .option('--login <name>', 'login on the servers (ssh access)')
    .option('--public-key-file <path>', 'your public key (ssh access); the private key never leaves you')
    .option('--certificate', 'an OpenSSH certificate signed by the tenant CA instead of a key line')
    .option(
      '--actions <names>',
      'actions only, no shell, e.g. patch.scan,script.run (repeatable, or comma-separated)',
      collectList,
    )
    .option(
      '--scripts <names>',
      'with --actions script.run: only these scripts (repeatable, or comma-separated)',
      collectList,
    )
    .addOption(new Option('--minutes <n>', 'how long').argParser(minutes).makeOptionMandatory())
    .option('--start-at <iso>', 'start later than approval')
    .requiredOption('--reason <text>', 'why (at least 10 characters)')
    .requiredOption('--ticket <ref>', 'ticket number')
    .action(async (o: RequestFlags) => {
      const servers = targetsFrom(o);
      if (o.actions && (o.login || o.publicKeyFile || o.certificate)) {
        throw new InvalidArgumentError(
          '--actions is access without a shell: it takes no --login, --public-key-file or --certificate',
        );
      }
      if (!o.actions && (!o.login || !o.publicKeyFile)) {
        throw new InvalidArgumentError(
          'ssh access needs --login and --public-key-file (or ask for --actions only)',
        );
      }
      if (o.scripts && !o.actions) throw new InvalidArgumentError('--scripts goes with --actions script.run');
      const publicKey = o.publicKeyFile ? (await readFile(o.publicKeyFile, 'utf8')).trim() : undefined;
      await withContext(async ({ session }) => {
        const request = await session.access.request({
          servers,
          ...(o.actions
            ? { mode: 'actions' as const, actions: o.actions, ...(o.scripts ? { scripts: o.scripts } : {}) }
            : {
                mode: o.certificate ? ('ssh-cert' as const) : ('ssh-key' as const),
                login: o.login!,
                publicKey: publicKey!,
              }),
          durationMinutes: o.minutes,
          ...(o.startAt ? { startAt: o.startAt } : {}),
          reason: o.reason,
          ticket: o.ticket,
        });
        print(request, {
          human: (r) =>
            [
              `Requested access ${r.id}: ${r.mode === 'actions' ? `actions ${r.actions?.join(', ')}` : `${r.mode} as ${r.login}`} on ${r.serverIds.join(', ')} for ${r.durationMinutes} minutes.`,
              `It needs ${r.requiredApprovals} approval(s) by someone else before ${r.expiresAt}:`,
              `  fleetward --as <someone else> access approve ${r.id}`,
            ].join('\n'),
        });
      });
    });

  access
    .command('approve <requestId>')
    .description(
      'Approve a request (not your own); the last approval needed grants it and installs its key (-o id prints the grant id, or the request id while approvals are missing).',
    )
    .option('--comment <text>', 'a note kept with the decision')
    .action(async (id: string, o: { comment?: string }) => {
      await withContext(async ({ session }) => {
        const decided = await session.access.approve(id, o.comment ? { comment: o.comment } : {});
        const { request, grant } = decided;
        print(decided, {
          human: () => {
            if (!grant) {
              return `Approved ${request.id}: ${request.approvals.length} of ${request.requiredApprovals} approvals; it needs ${request.requiredApprovals - request.approvals.length} more.`;
            }
            const lines = [`Granted request ${request.id}.`, grantText(grant, c, request)];
            if (installationFailed(grant)) lines.push(failedGrantHint(grant));
            return lines.join('\n');
          },
          ids: () => [grant?.id ?? request.id],
        });
        if (grant && installationFailed(grant)) setExit(EXIT.failure);
      });
    });

  access
    .command('reject <requestId>')
    .description('Reject a request.')
    .option('--comment <text>', 'why, kept with the decision')
    .action(async (id: string, o: { comment?: string }) => {
      await withContext(async ({ session }) => {
        const request = await session.access.reject(id, o.comment ? { comment: o.comment } : {});
        print(request, { human: (r) => `Rejected ${r.id} of ${r.requesterId}.` });
      });
    });

  access
    .command('show <requestId>')
    .description('A request: what it asks for, why, its approvals and its grant.')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        print(await session.access.getRequest(id), { human: requestText });
      });
    });

  access
    .command('cancel <requestId>')
    .description('Withdraw your own request while it is pending.')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        print(await session.access.cancel(id), { human: (r) => `Cancelled ${r.id}.` });
      });
    });

  access
    .command('list', { isDefault: true })
    .description('Requests, newest first (all of them with audit.read, else --mine).')
    .option('--mine', 'only your own')
    .addOption(
      new Option('--status <status>', 'only requests in this state').choices(
        AccessRequestFields.status.options,
      ),
    )
    .action(async (o: { mine?: boolean; status?: AccessRequest['status'] }) => {
      await withContext(async ({ session }) => {
        const requests = await session.access.listRequests({
          ...(o.mine ? { mine: true } : {}),
          ...(o.status ? { status: o.status } : {}),
        });
        print(requests, { human: requestsTable });
      });
    });

  access
    .command('sweep')
    .description(
      'Expire pending requests, start scheduled grants, retry failed installs, remove ended grants (verified).',
    )
    .action(async () => {
      await withContext(async ({ session }) => {
        const result = await session.access.sweep();
        print(result, { human: sweepText, ids: (r) => [...r.started, ...r.expiredGrants] });
        if (result.failures.length) {
          err(`${c.dim('hint:')} See each grant with: fleetward grants show <grant-id>\n`);
          setExit(EXIT.failure);
        }
      });
    });
}

/** `grants list|show|revoke`: the grants approvals made. */
function registerGrantCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print, colors: c, setExit } = deps;
  const grants = program
    .command('grants')
    .alias('grant')
    .description('Access grants: what approved requests gave, where it is in effect.');

  grants
    .command('list', { isDefault: true })
    .description('Grants (all of them with audit.read, else --mine).')
    .option('--mine', 'only your own')
    .addOption(
      new Option('--status <status>', 'only grants in this state').choices(AccessGrantFields.status.options),
    )
    .action(async (o: { mine?: boolean; status?: AccessGrant['status'] }) => {
      await withContext(async ({ session }) => {
        const list = await session.access.listGrants({
          ...(o.mine ? { mine: true } : {}),
          ...(o.status ? { status: o.status } : {}),
        });
        print(list, { human: grantsTable });
      });
    });

  grants
    .command('show <id>')
    .description('A grant with each server’s state: installed, or FAILED and why.')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        const grant = await session.access.getGrant(id);
        // The request says which actions an `actions` grant carries; the JSON is the grant alone.
        const request =
          grant.mode === 'actions'
            ? await session.access.getRequest(grant.requestId).catch((error: unknown) => {
                if (error instanceof AuthorizationError) return undefined;
                throw error;
              })
            : undefined;
        print(grant, {
          human: (g) =>
            `${grantText(g, c, request)}${installationFailed(g) && g.status === 'active' ? `\n${failedGrantHint(g)}` : ''}`,
        });
      });
    });

  grants
    .command('revoke <id>')
    .description('End a grant now: its key lines are removed from the servers and checked gone.')
    .option('--reason <text>', 'why, kept in the audit record')
    .action(async (id: string, o: { reason?: string }) => {
      await withContext(async ({ session }) => {
        const grant = await session.access.revoke(id, o.reason ? { reason: o.reason } : {});
        const left = grant.targets.filter((t) => t.state === 'remove-failed');
        print(grant, {
          human: (g) =>
            [
              `Revoked grant ${g.id} of ${g.principalId}.`,
              ...targetLines(g, c),
              ...(left.length
                ? [
                    `Removal failed on ${left.length} server(s): every sweep tries again (fleetward access sweep).`,
                  ]
                : []),
            ].join('\n'),
        });
        if (left.length) setExit(EXIT.failure);
      });
    });
}

interface CredentialAddFlags extends TargetOptions {
  id?: string;
  login: string;
  publicKeyFile: string;
  privateKeyFile?: string;
  caretaker?: string;
}

/** `credentials list|show|add|caretaker`: managed SSH keys, each with one caretaker. */
function registerCredentialCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print } = deps;
  const credentials = program
    .command('credentials')
    .alias('credential')
    .description('Managed SSH keys: one caretaker each, rotated by Fleetward when it holds the private key.');

  credentials
    .command('list', { isDefault: true })
    .description(
      'Managed keys with their ids (for keys rotate), login, caretaker, servers and last rotation.',
    )
    .action(async () => {
      await withContext(async ({ session }) => {
        print(await session.keys.list(), { human: credentialsTable });
      });
    });

  credentials
    .command('show <id>')
    .description('A managed key.')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        const credential = (await session.keys.list()).find((k) => k.id === id);
        if (!credential) throw new NotFoundError('credential', id);
        print(credential, { human: credentialText });
      });
    });

  addTargetOptions(
    credentials
      .command('add')
      .description(
        'Register a key that logs in to servers, with its caretaker; with --private-key-file Fleetward holds and rotates it.',
      ),
    { what: 'the key logs in to' },
  )
    .requiredOption('--login <name>', 'the login the key logs in as')
    .requiredOption('--public-key-file <path>', 'its public key (one OpenSSH line)')
    .option(
      '--private-key-file <path>',
      'its private key, for Fleetward to hold (encrypted secret store) and rotate',
    )
    .option('--caretaker <principal>', 'the one principal responsible for it (default: you)')
    .option('--id <id>', 'its id (default: generated)')
    .action(async (o: CredentialAddFlags) => {
      const targets = targetsFrom(o);
      const publicKey = (await readFile(o.publicKeyFile, 'utf8')).trim();
      const privateKey = o.privateKeyFile ? await readFile(o.privateKeyFile, 'utf8') : undefined;
      await withContext(async ({ fleet, session, config }) => {
        if (privateKey && !fleet.secrets) {
          throw new ValidationError('credential', [
            {
              path: ['privateKeyFile'],
              message:
                'Fleetward can hold a private key only in its secret store: set "secrets" in the configuration file (a SQLite store has one beside it)',
            },
          ]);
        }
        const credential = await session.keys.register({
          ...(o.id ? { id: o.id } : {}),
          login: o.login,
          publicKey,
          ...(privateKey ? { privateKey } : {}),
          caretakerId: o.caretaker ?? config.principal,
          serverIds: await serverIdsOf(session, targets),
        });
        print(credential, {
          human: (k) =>
            `Registered ${k.id}: ${k.login} on ${k.serverIds.join(', ')}, caretaker ${k.caretakerId}.${k.secretRef ? `\nRotate it with: fleetward keys rotate ${k.id}` : ''}`,
        });
      });
    });

  credentials
    .command('caretaker <id> <principal>')
    .description('Hand a managed key to another caretaker (still exactly one).')
    .action(async (id: string, principal: string) => {
      await withContext(async ({ session }) => {
        print(await session.keys.setCaretaker(id, principal), {
          human: (k) => `${k.id} is now in the care of ${k.caretakerId}.`,
        });
      });
    });
}

/** `keys inventory|rotate`: what keys servers have, and lockout-proof rotation. */
function registerKeyCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print, progress, colors: c, setExit } = deps;
  const keys = program
    .command('keys')
    .description('SSH keys on servers: inventory, and rotation of managed keys.');

  addTargetOptions(
    keys
      .command('inventory')
      .description(
        'Read the keys on servers and tell managed, granted and unmanaged ones apart, with their use.',
      ),
    { allowAll: true, what: 'read' },
  )
    .option('-c, --concurrency <n>', 'servers read at once', positiveInt, 16)
    .action(async (o: TargetOptions & { concurrency: number }) => {
      const targets = targetsFrom(o);
      await withContext(async ({ fleet, session }) => {
        progress.line('Reading authorized_keys and the sshd log of the servers…');
        let done = 0;
        fleet.events.on('keys.inventory.server.completed', (e) => {
          done++;
          progress.line(
            e.status === 'succeeded'
              ? `[${done}] ${c.green('ok')}     ${e.serverId}: ${e.keys} key(s)`
              : `[${done}] ${c.red('failed')} ${e.serverId}: ${e.error?.message ?? ''}`,
          );
        });
        const inventories = await session.keys.inventory(targets, { concurrency: o.concurrency });
        print(inventories, {
          human: (rows) => inventoryText(rows, c),
          ids: (rows) => rows.map((i) => i.serverId),
        });
        const failed = inventories.filter((i) => i.status === 'failed').length;
        if (failed) setExit(failed === inventories.length ? EXIT.failure : EXIT.partial);
      });
    });

  keys
    .command('rotate <credentialId>')
    .description(
      'Rotate a managed key: add a new one, prove it by a login, then retire the old one (ids: fleetward credentials list).',
    )
    .option('--verify-sudo', 'also require sudo -n to work with the new key')
    .option('--grace-minutes <n>', 'how long sshd still accepts the retired key', positiveInt)
    .action(async (id: string, o: { verifySudo?: boolean; graceMinutes?: number }) => {
      await withContext(async ({ fleet, session, signal }) => {
        fleet.events.on('keys.rotation.completed', (e) =>
          progress.line(`Rotation of ${e.credentialId} ${e.status}.`),
        );
        fleet.events.on('keys.rotation.failed', (e) =>
          progress.line(`Rotation of ${e.credentialId} failed: ${e.reason}`),
        );
        progress.line(
          `Rotating ${id}: a new key on every server, proven by a login, before the old one is retired…`,
        );
        const report = await session.keys.rotate(id, {
          signal,
          ...(o.verifySudo ? { verifySudo: true } : {}),
          ...(o.graceMinutes ? { graceMinutes: o.graceMinutes } : {}),
        });
        print(report, { human: rotationText, ids: (r) => [r.credentialId] });
        if (report.status !== 'succeeded') setExit(EXIT.failure);
      });
    });
}

/**
 * `audit`, `access`, `grants`, `credentials` and `keys`: the audit log, just-in-time access and
 * managed keys.
 */
export function registerAccessCommands(program: Command, deps: CommandDeps): void {
  registerAuditCommands(program, deps);
  registerRequestCommands(program, deps);
  registerGrantCommands(program, deps);
  registerCredentialCommands(program, deps);
  registerKeyCommands(program, deps);
}
