import { z } from 'zod';
import { validate } from '../domain/index.js';
import { ValidationError, type ValidationIssue } from '../errors.js';
import {
  esc,
  formatInstant,
  jsonForScript,
  kpi,
  REPORT_CSP,
  RenderHtmlOptionsSchema,
  stylesheet,
} from '../report/render.js';
import { type CsvColumn, csvTable } from '../util/csv.js';
import type {
  AccessAuditAccess,
  AccessAuditAction,
  AccessAuditCommand,
  AccessAuditCoverage,
  AccessAuditDenial,
  AccessAuditKey,
  AccessAuditReport,
  AccessAuditRotation,
  AccessAuditScript,
  KeyNeeded,
} from './report.js';

/** The tables of an access audit report that CSV can hold, one per file. */
export const ACCESS_AUDIT_CSV_TABLES = [
  'actions',
  'scripts',
  'commands',
  'denials',
  'access',
  'keys',
  'rotation',
  'coverage',
] as const;
export type AccessAuditCsvTable = (typeof ACCESS_AUDIT_CSV_TABLES)[number];

/** Options of {@link renderAccessAuditCsv}. */
export const RenderAccessAuditCsvOptionsSchema = z.object({
  table: z.enum(ACCESS_AUDIT_CSV_TABLES),
  /** Prefix a UTF-8 byte-order mark, for Excel. @default false */
  bom: z.boolean().optional(),
});
export type RenderAccessAuditCsvOptions = z.infer<typeof RenderAccessAuditCsvOptionsSchema>;

/** Options of {@link renderAccessAuditHtml}: the compliance report's branding, and a title. */
export const RenderAccessAuditHtmlOptionsSchema = RenderHtmlOptionsSchema.extend({
  /** @default 'Access audit report' */
  title: z.string().min(1).max(200).optional(),
});
export type RenderAccessAuditHtmlOptions = z.infer<typeof RenderAccessAuditHtmlOptionsSchema>;

const LISTS = [
  'topActions',
  'topScripts',
  'topCommands',
  'denials',
  'access',
  'keys',
  'rotation',
  'coverage',
  'notes',
] as const;

/** Renderers take what callers hand them; a malformed report is a caller error, said precisely. */
function checkReport(report: AccessAuditReport): void {
  const issues: ValidationIssue[] = [];
  if (!report || typeof report !== 'object')
    issues.push({ path: [], message: 'must be an access audit report' });
  else {
    if (typeof report.tenantId !== 'string') issues.push({ path: ['tenantId'], message: 'must be a string' });
    if (typeof report.generatedAt !== 'string' || Number.isNaN(Date.parse(report.generatedAt)))
      issues.push({ path: ['generatedAt'], message: 'must be an ISO 8601 instant' });
    for (const key of ['period', 'totals'] as const)
      if (!report[key] || typeof report[key] !== 'object')
        issues.push({ path: [key], message: 'must be an object' });
    for (const key of LISTS)
      if (!Array.isArray(report[key])) issues.push({ path: [key], message: 'must be an array' });
  }
  if (issues.length) throw new ValidationError('AccessAuditReport', issues);
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/**
 * The report as pretty JSON (2-space indent, trailing newline). The builder sets fields in a fixed
 * order, so equal reports give byte-identical files.
 *
 * @throws {ValidationError} when `report` is not an access audit report.
 */
export function renderAccessAuditJson(report: AccessAuditReport): string {
  checkReport(report);
  return `${JSON.stringify(report, null, 2)}\n`;
}

// ---------------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------------

const list = (items: readonly string[] | undefined) => (items ?? []).join('; ');

const ACTION_COLUMNS: readonly CsvColumn<AccessAuditAction>[] = [
  ['action', (r) => r.action],
  ['count', (r) => r.count],
  ['denied', (r) => r.denied],
  ['failed', (r) => r.failed],
  ['principals', (r) => r.principals],
];

const SCRIPT_COLUMNS: readonly CsvColumn<AccessAuditScript>[] = [
  ['script', (r) => r.script],
  ['contentHash', (r) => r.contentHash],
  ['contentHashes', (r) => list(r.contentHashes)],
  ['runs', (r) => r.runs],
  ['failedRuns', (r) => r.failedRuns],
  ['serverRuns', (r) => r.serverRuns],
  ['serverFailures', (r) => r.serverFailures],
  ['denied', (r) => r.denied],
  ['principalIds', (r) => list(r.principalIds)],
  ['lastRunAt', (r) => r.lastRunAt],
];

const COMMAND_COLUMNS: readonly CsvColumn<AccessAuditCommand>[] = [
  ['command', (r) => r.command],
  ['count', (r) => r.count],
  ['principals', (r) => r.principals],
  ['lastAt', (r) => r.lastAt],
];

const DENIAL_COLUMNS: readonly CsvColumn<AccessAuditDenial>[] = [
  ['principalId', (r) => r.principalId],
  ['name', (r) => r.name],
  ['affiliation', (r) => r.affiliation],
  ['action', (r) => r.action],
  ['count', (r) => r.count],
  ['firstAt', (r) => r.firstAt],
  ['lastAt', (r) => r.lastAt],
  ['lastReason', (r) => r.lastReason],
  ['serverIds', (r) => list(r.serverIds)],
];

const ACCESS_COLUMNS: readonly CsvColumn<AccessAuditAccess>[] = [
  ['principalId', (r) => r.principalId],
  ['name', (r) => r.name],
  ['affiliation', (r) => r.affiliation],
  ['disabled', (r) => r.disabled],
  ['serverId', (r) => r.serverId],
  ['serverName', (r) => r.serverName],
  ['via', (r) => r.via],
  ['grantIds', (r) => list(r.grantIds)],
  ['credentialId', (r) => r.credentialId],
  ['fingerprints', (r) => list(r.fingerprints)],
  ['remoteUsers', (r) => list(r.remoteUsers)],
  ['loginsSeen', (r) => r.loginsSeen],
  ['untimedLogins', (r) => r.untimedLogins],
  ['actions', (r) => r.actions],
  ['firstAt', (r) => r.firstAt],
  ['lastAt', (r) => r.lastAt],
  ['matchedRole', (r) => r.matchedRole],
  ['explanation', (r) => r.explanation],
];

const KEY_COLUMNS: readonly CsvColumn<AccessAuditKey>[] = [
  ['serverId', (r) => r.serverId],
  ['serverName', (r) => r.serverName],
  ['login', (r) => r.login],
  ['fingerprint', (r) => r.fingerprint],
  ['keyType', (r) => r.keyType],
  ['comment', (r) => r.comment],
  ['kind', (r) => r.kind],
  ['credentialId', (r) => r.credentialId],
  ['grantId', (r) => r.grantId],
  ['ownerId', (r) => r.owner?.principalId],
  ['ownerName', (r) => r.owner?.name],
  ['ownerRelation', (r) => r.owner?.relation],
  ['expiryTime', (r) => r.expiryTime],
  ['logins', (r) => r.logins],
  ['lastUsedAt', (r) => r.lastUsedAt],
  ['needed', (r) => r.needed],
  ['why', (r) => r.why],
];

const ROTATION_COLUMNS: readonly CsvColumn<AccessAuditRotation>[] = [
  ['credentialId', (r) => r.credentialId],
  ['login', (r) => r.login],
  ['fingerprint', (r) => r.fingerprint],
  ['status', (r) => r.status],
  ['caretakerId', (r) => r.caretaker.principalId],
  ['caretakerName', (r) => r.caretaker.name],
  ['caretakerDisabled', (r) => r.caretaker.disabled],
  ['servers', (r) => r.servers],
  ['registeredAt', (r) => r.registeredAt],
  ['lastRotatedAt', (r) => r.lastRotatedAt],
  ['ageDays', (r) => r.ageDays],
  ['policyProjectId', (r) => r.policyProjectId],
  ['policyIntervalHours', (r) => r.policyIntervalHours],
  ['dueAt', (r) => r.dueAt],
  ['overdue', (r) => r.overdue],
  ['lastAttemptAt', (r) => r.lastAttempt?.at],
  ['lastAttemptStep', (r) => r.lastAttempt?.step],
  ['lastAttemptResult', (r) => r.lastAttempt?.result],
  ['why', (r) => r.why],
];

const COVERAGE_COLUMNS: readonly CsvColumn<AccessAuditCoverage>[] = [
  ['serverId', (r) => r.serverId],
  ['serverName', (r) => r.serverName],
  ['status', (r) => r.status],
  ['scannedAt', (r) => r.scannedAt],
  ['logSource', (r) => r.logSource],
  ['earliestLoginAt', (r) => r.earliestLoginAt],
  ['keys', (r) => r.keys],
  ['logins', (r) => r.logins],
  ['error', (r) => r.error],
];

/**
 * One table of the report as CSV, with the compliance report's writer: RFC 4180 (CRLF, every
 * field quoted), a header of the JSON field names, list fields joined with `; `, and a leading `'`
 * on any cell a spreadsheet could run as a formula (comments, login names and reasons come from
 * servers and users, so they are hostile until proven otherwise). Rows keep the report's order.
 *
 * @throws {ValidationError} when `report` or `options` are invalid.
 */
export function renderAccessAuditCsv(
  report: AccessAuditReport,
  options: RenderAccessAuditCsvOptions,
): string {
  checkReport(report);
  const { table, bom } = validate(RenderAccessAuditCsvOptionsSchema, options, 'RenderAccessAuditCsvOptions');
  let body: string;
  switch (table) {
    case 'actions':
      body = csvTable(ACTION_COLUMNS, report.topActions);
      break;
    case 'scripts':
      body = csvTable(SCRIPT_COLUMNS, report.topScripts);
      break;
    case 'commands':
      body = csvTable(COMMAND_COLUMNS, report.topCommands);
      break;
    case 'denials':
      body = csvTable(DENIAL_COLUMNS, report.denials);
      break;
    case 'access':
      body = csvTable(ACCESS_COLUMNS, report.access);
      break;
    case 'keys':
      body = csvTable(KEY_COLUMNS, report.keys);
      break;
    case 'rotation':
      body = csvTable(ROTATION_COLUMNS, report.rotation);
      break;
    case 'coverage':
      body = csvTable(COVERAGE_COLUMNS, report.coverage);
      break;
  }
  return bom ? `\uFEFF${body}` : body;
}

// ---------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------

const DEFAULT_ACCENT = '#1f4e79';
const dash = '<span class="muted">—</span>';
const date = (iso: string | undefined) => (iso ? esc(formatInstant(iso, false)) : dash);
const text = (value: string | undefined) => (value ? esc(value) : dash);
const lines = (items: readonly string[]) => (items.length ? items.map(esc).join('<br>') : dash);

const NEEDED_BADGE: Record<KeyNeeded, string> = {
  yes: '<span class="badge ok">Needed</span>',
  review: '<span class="badge unk">Review</span>',
  no: '<span class="badge bad">Remove</span>',
};

/** Headings of numeric columns: right-aligned over their numbers, as in the compliance report. */
const NUMERIC = new Set([
  'Logins',
  'Actions',
  'Age (days)',
  'Interval (h)',
  'Count',
  'Denied',
  'Failed',
  'Principals',
  'Runs',
  'Failed runs',
  'Server runs',
  'Server failures',
  'Keys',
]);

function section(
  id: string,
  title: string,
  count: number,
  headings: readonly string[],
  rows: string[],
  empty: string,
) {
  const head = headings.map((h) => `<th${NUMERIC.has(h) ? ' class="num"' : ''}>${esc(h)}</th>`).join('');
  const body = rows.length
    ? rows.join('')
    : `<tr><td colspan="${headings.length}" class="empty">${esc(empty)}</td></tr>`;
  return (
    `<section class="section" id="${id}"><h2>${esc(title)} (${count})</h2>` +
    `<div class="table-wrap"><table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div></section>`
  );
}

const actionRow = (r: AccessAuditAction) =>
  `<tr data-action="${esc(r.action)}" data-count="${r.count}"><td>${esc(r.action)}</td><td class="num">${r.count}</td>` +
  `<td class="num${r.denied ? ' sec' : ''}">${r.denied}</td><td class="num">${r.failed}</td><td class="num">${r.principals}</td></tr>`;

const scriptRow = (r: AccessAuditScript) =>
  `<tr data-script="${esc(r.script)}" data-runs="${r.runs}"><td class="name">${esc(r.script)}` +
  `<div class="sub">${r.contentHashes.length > 1 ? `${r.contentHashes.length} versions, newest ` : ''}${text(r.contentHash?.slice(0, 12))}</div></td>` +
  `<td class="num">${r.runs}</td><td class="num${r.failedRuns ? ' sec' : ''}">${r.failedRuns}</td>` +
  `<td class="num">${r.serverRuns}</td><td class="num${r.serverFailures ? ' sec' : ''}">${r.serverFailures}</td>` +
  `<td class="num${r.denied ? ' sec' : ''}">${r.denied}</td><td>${lines(r.principalIds)}</td><td class="date">${date(r.lastRunAt)}</td></tr>`;

const commandRow = (r: AccessAuditCommand) =>
  `<tr><td class="pkg">${esc(r.command)}</td><td class="num">${r.count}</td><td class="num">${r.principals}</td><td class="date">${date(r.lastAt)}</td></tr>`;

const denialRow = (r: AccessAuditDenial) =>
  `<tr data-principal-id="${esc(r.principalId)}" data-count="${r.count}"><td class="name">${esc(r.name)}<div class="sub">${esc(r.principalId)}${r.affiliation ? ` · ${esc(r.affiliation)}` : ''}</div></td>` +
  `<td>${esc(r.action)}</td><td class="num">${r.count}</td><td class="date">${date(r.lastAt)}</td>` +
  `<td class="wide">${text(r.lastReason)}</td><td>${lines(r.serverIds.slice(0, 10))}${r.serverIds.length > 10 ? ' …' : ''}</td></tr>`;

function accessRow(r: AccessAuditAccess): string {
  const badge = r.matchedRole
    ? '<span class="badge ok">Matched</span>'
    : '<span class="badge bad">Not matched</span>';
  const who =
    `<span class="server-name">${esc(r.name)}</span>` +
    `<div class="sub">${r.principalId ? esc(r.principalId) : 'no principal'}${r.affiliation ? ` · ${esc(r.affiliation)}` : ''}${r.disabled ? ' · disabled' : ''}</div>`;
  return (
    `<tr class="${r.matchedRole ? '' : 'alert'}" data-via="${esc(r.via)}" data-matched="${r.matchedRole}" data-server-id="${esc(r.serverId)}">` +
    `<td class="name">${who}</td><td class="short">${esc(r.serverName)}</td><td class="short">${esc(r.via)}</td>` +
    `<td class="ver">${lines(r.remoteUsers)}</td><td class="num">${r.loginsSeen}</td><td class="num">${r.actions}</td>` +
    `<td class="date">${date(r.lastAt)}</td><td>${badge}</td><td class="wide">${esc(r.explanation)}</td></tr>`
  );
}

function keyRow(r: AccessAuditKey): string {
  const owner = r.owner
    ? `${esc(r.owner.name)}<div class="sub">${esc(r.owner.relation)}${r.owner.disabled ? ' · disabled' : ''}</div>`
    : dash;
  return (
    `<tr class="${r.needed === 'no' ? 'alert' : ''}" data-needed="${r.needed}" data-kind="${esc(r.kind)}" data-server-id="${esc(r.serverId)}">` +
    `<td class="short">${esc(r.serverName)}</td><td class="ver">${esc(r.login)}</td>` +
    `<td class="pkg">${esc(r.fingerprint)}<div class="sub">${esc(r.keyType)} ${esc(r.comment)}</div></td>` +
    `<td class="short">${esc(r.kind)}</td><td>${owner}</td><td class="num">${r.logins}</td><td class="date">${date(r.lastUsedAt)}</td>` +
    `<td>${NEEDED_BADGE[r.needed] ?? esc(r.needed)}</td><td class="wide">${esc(r.why)}</td></tr>`
  );
}

function rotationRow(r: AccessAuditRotation): string {
  const badge = r.overdue
    ? '<span class="badge bad">Overdue</span>'
    : r.dueAt
      ? '<span class="badge ok">On schedule</span>'
      : '<span class="badge unk">No policy</span>';
  return (
    `<tr class="${r.overdue ? 'alert' : ''}" data-credential-id="${esc(r.credentialId)}" data-overdue="${r.overdue}">` +
    `<td class="name">${esc(r.credentialId)}<div class="sub">${esc(r.login)} · ${esc(r.fingerprint)}</div></td>` +
    `<td>${esc(r.caretaker.name)}${r.caretaker.disabled ? '<div class="sub">disabled</div>' : ''}</td>` +
    `<td class="date">${date(r.lastRotatedAt)}</td><td class="num">${r.ageDays}</td>` +
    `<td class="num">${r.policyIntervalHours ?? '—'}</td><td class="date">${date(r.dueAt)}</td><td>${badge}</td><td class="wide">${esc(r.why)}</td></tr>`
  );
}

const coverageRow = (r: AccessAuditCoverage) =>
  `<tr class="${r.status === 'succeeded' ? '' : 'alert'}" data-server-id="${esc(r.serverId)}" data-status="${esc(r.status)}">` +
  `<td class="short">${esc(r.serverName)}</td><td>${esc(r.status)}</td><td class="date">${date(r.scannedAt)}</td>` +
  `<td class="num">${r.keys}</td><td class="num">${r.logins}</td><td class="date">${date(r.earliestLoginAt)}</td>` +
  `<td class="wide">${text(r.error ?? r.logSource)}</td></tr>`;

/**
 * The report as one self-contained HTML page in the compliance report's style (its stylesheet,
 * escaping and Content-Security-Policy): no scripts, fonts or requests, every piece of text
 * escaped, tables of what needs attention first, and the whole report embedded as
 * `<script type="application/json" id="report-data">` for machines.
 *
 * @throws {ValidationError} when `report` or `options` are invalid.
 */
export function renderAccessAuditHtml(
  report: AccessAuditReport,
  options: RenderAccessAuditHtmlOptions = {},
): string {
  checkReport(report);
  const { brand, title = 'Access audit report' } = validate(
    RenderAccessAuditHtmlOptionsSchema,
    options,
    'RenderAccessAuditHtmlOptions',
  );
  const t = report.totals;
  const logo = brand?.logoSvg
    ? `<img src="data:image/svg+xml;base64,${Buffer.from(brand.logoSvg, 'utf8').toString('base64')}" alt="">`
    : '';
  const brandLine = brand ? `<div class="brand">${logo}<span>${esc(brand.name)}</span></div>` : '';
  const tenant = report.tenantName ?? report.tenantId;
  const period = `${report.period.since ? formatInstant(report.period.since) : 'start of the log'} to ${formatInstant(report.period.until)}`;
  const meta: [string, string][] = [
    ['Tenant', report.tenantName ? `${report.tenantName} (${report.tenantId})` : report.tenantId],
    ['Period', period],
    ['Generated', formatInstant(report.generatedAt)],
  ];
  const notes = report.notes.length
    ? `<h3>What this report cannot see</h3><ul class="reasons">${report.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>`
    : '';
  const unmatchedRows = report.access.filter((r) => !r.matchedRole).length;

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${esc(REPORT_CSP)}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(`${title} — ${tenant}`)}</title>
<link rel="icon" href="data:,">
<style>${stylesheet(brand?.color ?? DEFAULT_ACCENT)}</style>
</head>
<body>
<div class="page">
<header class="report-header">
${brandLine}<h1>${esc(title)}</h1>
<dl class="meta">${meta.map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${esc(v)}</dd></div>`).join('')}</dl>
</header>
<main>
<section class="section" id="summary">
<h2>Summary</h2>
<div class="kpis">
${kpi('records', 'Audit records', t.records)}
${kpi('denied', 'Denied attempts', t.denied, 'bad')}
${kpi('unmatchedAccess', `Unmatched access (${unmatchedRows} rows)`, t.unmatchedAccess, 'bad')}
${kpi('keysToRemove', 'Keys to remove', t.keysNeeded.no, 'bad')}
${kpi('keysToReview', 'Keys to review', t.keysNeeded.review, 'warn')}
${kpi('rotationOverdue', 'Rotations overdue', t.rotationOverdue, 'bad')}
</div>
${notes}
</section>
${section('access', 'Who accessed which servers', report.access.length, ['Who', 'Server', 'Via', 'Remote users', 'Logins', 'Actions', 'Last (UTC)', 'Role', 'Explanation'], report.access.map(accessRow), 'No access seen in the period.')}
${section('keys', 'Keys on servers', report.keys.length, ['Server', 'Login', 'Key', 'Kind', 'Owner', 'Logins', 'Last used (UTC)', 'Needed', 'Why'], report.keys.map(keyRow), 'No keys in the inventories.')}
${section('rotation', 'Key rotation', report.rotation.length, ['Credential', 'Caretaker', 'Last rotated (UTC)', 'Age (days)', 'Interval (h)', 'Due (UTC)', 'State', 'Why'], report.rotation.map(rotationRow), 'No managed keys.')}
${section('actions', 'Most common actions', report.topActions.length, ['Action', 'Count', 'Denied', 'Failed', 'Principals'], report.topActions.map(actionRow), 'No audit records in the period.')}
${section('scripts', 'Most run scripts', report.topScripts.length, ['Script', 'Runs', 'Failed runs', 'Server runs', 'Server failures', 'Denied', 'Run by', 'Last run (UTC)'], report.topScripts.map(scriptRow), 'No script runs in the period.')}
${section('commands', 'Most common commands', report.topCommands.length, ['Command', 'Count', 'Principals', 'Last (UTC)'], report.topCommands.map(commandRow), 'No audit record names a command.')}
${section('denials', 'Denied attempts', report.denials.length, ['Who', 'Action', 'Count', 'Last (UTC)', 'Last reason', 'Servers'], report.denials.map(denialRow), 'No denials in the period.')}
${section('coverage', 'Inventory coverage', report.coverage.length, ['Server', 'Inventory', 'Scanned (UTC)', 'Keys', 'Logins', 'Log reaches back to', 'Log source / error'], report.coverage.map(coverageRow), 'No servers.')}
</main>
<footer><span>${brand ? `Prepared by ${esc(brand.name)} for ${esc(tenant)}` : esc(tenant)}</span><span>Generated ${esc(formatInstant(report.generatedAt))}</span></footer>
</div>
<script type="application/json" id="report-data">${jsonForScript(report)}</script>
</body>
</html>
`;
}
