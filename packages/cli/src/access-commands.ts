import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import {
  ACCESS_AUDIT_CSV_TABLES,
  type AccessAuditCsvTable,
  type AuditCheckpoint,
  type AuditLogVerification,
  renderAccessAuditCsv,
  renderAccessAuditHtml,
  renderAccessAuditJson,
  verifyAuditExport,
  writeFileNoFollow,
} from '@fleetward/core';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { CommandDeps } from './patch-commands.js';
import { renderTable } from './table.js';

/** `EXIT.failure` of the CLI: the command ran and found something wrong. */
const EXIT_FAILURE = 1;

const minutes = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of minutes');
  return n;
};
const list = (value: string) =>
  value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);

function printVerification(result: AuditLogVerification, out: (t: string) => void): void {
  if (result.ok) {
    out(
      `OK: ${result.checked} records verified (seq ${result.firstSeq ?? 0}–${result.lastSeq ?? 0}, head ${result.headHash.slice(0, 16)}…), ${result.checkpointsVerified} checkpoint(s) verified.\n`,
    );
    return;
  }
  // A log that is intact but not anchored by any checkpoint is not evidence of tampering.
  const unanchored = result.problems.every((p) => p.problem === 'missing-checkpoint');
  out(
    `${unanchored ? 'NOT ANCHORED' : 'TAMPERED'}: ${result.problems.length} problem(s) in ${result.checked} records:\n`,
  );
  for (const p of result.problems.slice(0, 50)) out(`  - ${p.problem}: ${p.message}\n`);
  if (result.problems.length > 50) out(`  … and ${result.problems.length - 50} more\n`);
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

/** `audit verify|export|list`, `access request|approve|reject|list|sweep`, `keys list|inventory|rotate`. */
export function registerAccessCommands(program: Command, deps: CommandDeps): void {
  const { withContext, out, setExit } = deps;

  const audit = program.command('audit').description('The hash-chained audit log: list, verify, export.');
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
    .option('--json', 'print the verification as JSON')
    .action(
      async (o: {
        file?: string;
        publicKey?: string[];
        checkpoint?: string[];
        requireCheckpoint?: boolean;
        json?: boolean;
      }) => {
        if (o.file && o.checkpoint) {
          throw new InvalidArgumentError('--checkpoint is for the live log; an export carries its own');
        }
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
        if (o.json) out(`${JSON.stringify(result, null, 2)}\n`);
        else printVerification(result, out);
        if (!result.ok) setExit(EXIT_FAILURE);
      },
    );
  audit
    .command('export')
    .description('Write the audit log as JSON Lines for offline verification.')
    .requiredOption('--out <path>', 'file to write (never through a symbolic link), or - for standard output')
    .action(async (o: { out: string }) => {
      await withContext(async ({ session }) => {
        let text = '';
        let lines = 0;
        for await (const line of await session.audit.export()) {
          text += line;
          lines++;
        }
        if (o.out === '-') {
          out(text);
          return;
        }
        await writeFileNoFollow(o.out, text, { mode: 0o600, exactMode: true });
        out(`Wrote ${lines - 1} records to ${o.out}.\n`);
      });
    });
  audit
    .command('report')
    .description(
      'The post-action access audit: actions, who accessed what, keys and whether needed, rotation.',
    )
    .addOption(new Option('--format <f>', 'output format').choices(['html', 'csv', 'json']).default('html'))
    .addOption(new Option('--table <t>', 'CSV table').choices([...ACCESS_AUDIT_CSV_TABLES]).default('keys'))
    .option('--since <iso>', 'records from this instant')
    .option('--out <path>', 'write to a file instead of standard output')
    .action(async (o: { format: string; table: AccessAuditCsvTable; since?: string; out?: string }) => {
      await withContext(async ({ session }) => {
        const since = o.since ? new Date(o.since) : undefined;
        if (since && Number.isNaN(since.getTime()))
          throw new InvalidArgumentError('--since must be an ISO date');
        const report = await session.audit.accessReport(since ? { since } : {});
        const text =
          o.format === 'json'
            ? renderAccessAuditJson(report)
            : o.format === 'csv'
              ? renderAccessAuditCsv(report, { table: o.table })
              : renderAccessAuditHtml(report);
        if (o.out) {
          await writeFileNoFollow(o.out, text, { mode: 0o666 });
          out(`Wrote the access audit to ${o.out}.\n`);
        } else out(text);
      });
    });
  audit
    .command('list')
    .description('Audit records, oldest first.')
    .option('--action <name>', 'only this action')
    .option('--actor <id>', 'only this actor')
    .option('--limit <n>', 'at most this many', (v) => Number(v), 100)
    .option('--json', 'print as JSON')
    .action(async (o: { action?: string; actor?: string; limit: number; json?: boolean }) => {
      await withContext(async ({ session }) => {
        const records = await session.audit.list({
          limit: o.limit,
          ...(o.action ? { action: o.action } : {}),
          ...(o.actor ? { actorId: o.actor } : {}),
        });
        if (o.json) return out(`${JSON.stringify(records, null, 2)}\n`);
        out(
          renderTable(
            ['SEQ', 'AT', 'ACTOR', 'ACTION', 'TARGET', 'DECISION', 'RESULT', 'REASON'],
            records.map((r) => [
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
        );
      });
    });

  const access = program.command('access').description('Just-in-time access: requests, approvals, grants.');
  access
    .command('request')
    .description('Ask for time-bound access (an ssh key line that sshd expires, or actions only).')
    .requiredOption('--servers <ids>', 'comma-separated server ids', list)
    .option('--login <name>', 'login on the servers (ssh-key access)')
    .option('--public-key-file <path>', 'your public key (ssh-key access)')
    .option('--certificate', 'get an OpenSSH certificate signed by the tenant CA instead of a key line')
    .option('--actions <names>', 'actions only, no shell (e.g. patch.scan,script.run)', list)
    .option('--scripts <names>', 'with --actions script.run: only these scripts', list)
    .addOption(new Option('--minutes <n>', 'how long').argParser(minutes).makeOptionMandatory())
    .option('--start-at <iso>', 'start later than approval')
    .requiredOption('--reason <text>', 'why (at least 10 characters)')
    .requiredOption('--ticket <ref>', 'ticket number')
    .action(async (o: Record<string, unknown>) => {
      await withContext(async ({ session }) => {
        const publicKey = o['publicKeyFile']
          ? (await readFile(o['publicKeyFile'] as string, 'utf8')).trim()
          : undefined;
        const request = await session.access.request({
          servers: { serverIds: o['servers'] as string[] },
          ...(o['actions']
            ? {
                mode: 'actions' as const,
                actions: o['actions'] as string[],
                ...(o['scripts'] ? { scripts: o['scripts'] as string[] } : {}),
              }
            : {
                mode: o['certificate'] ? ('ssh-cert' as const) : ('ssh-key' as const),
                login: o['login'] as string,
                publicKey: publicKey as string,
              }),
          durationMinutes: o['minutes'] as number,
          ...(o['startAt'] ? { startAt: o['startAt'] as string } : {}),
          reason: o['reason'] as string,
          ticket: o['ticket'] as string,
        });
        out(
          `Requested ${request.id}: ${request.requiredApprovals} approval(s) needed by ${request.expiresAt}.\n`,
        );
      });
    });
  for (const verb of ['approve', 'reject'] as const) {
    access
      .command(`${verb} <requestId>`)
      .description(verb === 'approve' ? 'Approve a request (not your own).' : 'Reject a request.')
      .option('--comment <text>', 'a note kept with the decision')
      .action(async (id: string, o: { comment?: string }) => {
        await withContext(async ({ session }) => {
          const options = o.comment ? { comment: o.comment } : {};
          if (verb === 'reject') {
            await session.access.reject(id, options);
            return out(`Rejected ${id}.\n`);
          }
          const { request, grant } = await session.access.approve(id, options);
          if (!grant)
            return out(`Approved ${id}: ${request.approvals.length} of ${request.requiredApprovals}.\n`);
          out(`Granted ${grant.id}: ${grant.notBefore} to ${grant.notAfter}.\n`);
          if (grant.certificate) out(`Certificate (save as <key>-cert.pub):\n${grant.certificate}\n`);
          for (const t of grant.targets)
            out(`  ${t.serverId}: ${t.state}${t.error ? ` (${t.error.message})` : ''}\n`);
          if (grant.targets.some((t) => t.state === 'failed')) setExit(EXIT_FAILURE);
        });
      });
  }
  access
    .command('list')
    .description('Requests, newest first (all of them with audit.read, else --mine).')
    .option('--mine', 'only your own')
    .option('--json', 'print as JSON')
    .action(async (o: { mine?: boolean; json?: boolean }) => {
      await withContext(async ({ session }) => {
        const requests = await session.access.listRequests(o.mine ? { mine: true } : {});
        if (o.json) return out(`${JSON.stringify(requests, null, 2)}\n`);
        out(
          renderTable(
            ['ID', 'REQUESTER', 'STATUS', 'SERVERS', 'MINUTES', 'TICKET', 'REQUESTED'],
            requests.map((r) => [
              r.id,
              r.requesterId,
              r.status,
              r.serverIds.join(','),
              String(r.durationMinutes),
              r.ticket,
              r.requestedAt,
            ]),
          ),
        );
      });
    });
  access
    .command('sweep')
    .description('Expire pending requests, start scheduled grants, remove ended ones (verified).')
    .action(async () => {
      await withContext(async ({ session }) => {
        const r = await session.access.sweep();
        out(
          `Expired ${r.expiredRequests.length} request(s) and ${r.expiredGrants.length} grant(s); installed ${r.installed}, removed ${r.removed}; ${r.failures.length} failure(s).\n`,
        );
        if (r.failures.length) setExit(EXIT_FAILURE);
      });
    });

  const keys = program.command('keys').description('Managed SSH keys: inventory and rotation.');
  keys
    .command('inventory')
    .description('Read the keys on servers and tell managed from unmanaged ones.')
    .requiredOption('--servers <ids>', 'comma-separated server ids', list)
    .option('--json', 'print as JSON')
    .action(async (o: { servers: string[]; json?: boolean }) => {
      await withContext(async ({ session }) => {
        const inventories = await session.keys.inventory({ serverIds: o.servers });
        if (o.json) return out(`${JSON.stringify(inventories, null, 2)}\n`);
        out(
          renderTable(
            ['SERVER', 'LOGIN', 'FINGERPRINT', 'KIND', 'LOGINS', 'COMMENT'],
            inventories.flatMap((i) =>
              i.keys.map((k) => [
                i.serverId,
                k.login,
                k.fingerprint,
                k.credentialId
                  ? `managed ${k.credentialId}`
                  : k.grantId
                    ? `grant ${k.grantId}`
                    : k.cloudAgent
                      ? 'cloud agent'
                      : 'unmanaged',
                String(k.logins),
                k.comment.slice(0, 40),
              ]),
            ),
          ),
        );
        if (inventories.some((i) => i.status === 'failed')) setExit(EXIT_FAILURE);
      });
    });
  keys
    .command('rotate <credentialId>')
    .description('Rotate a managed key: add, verify by a new login, then retire the old one.')
    .option('--verify-sudo', 'also require sudo -n to work with the new key')
    .action(async (id: string, o: { verifySudo?: boolean }) => {
      await withContext(async ({ session }) => {
        const report = await session.keys.rotate(id, o.verifySudo ? { verifySudo: true } : {});
        out(`Rotation ${report.status}: ${report.oldFingerprint} -> ${report.newFingerprint}\n`);
        for (const s of report.servers)
          out(`  ${s.serverId}: ${s.step}${s.error ? ` (${s.error.message})` : ''}\n`);
        if (report.reason) out(`${report.reason}\n`);
        if (report.status !== 'succeeded') setExit(EXIT_FAILURE);
      });
    });
}
