import { createHash } from 'node:crypto';
import type { PatchCategory, Severity } from '../domain/patch.js';
import { ValidationError, type ValidationIssue } from '../errors.js';
import type { ChangeRequestPatch, ChangeRequestPayload } from '../ports/integrations.js';

const CATEGORY_ORDER: readonly PatchCategory[] = ['security', 'bugfix', 'enhancement', 'other', 'unknown'];
const SEVERITY_ORDER: readonly Severity[] = ['critical', 'important', 'moderate', 'low', 'unspecified'];
// Ticket fields are not unbounded (ServiceNow's description holds 4,000 characters by default),
// and a human reads the top of the list anyway; the full set travels as `pendingPatches`.
const PATCHES_PER_SERVER = 8;
const SERVERS_LISTED = 20;

/** The fields of a pending patch that a change request needs (a `PendingPatch` fits). */
export interface ChangeRequestPatchSource {
  name: string;
  installedVersion: string | null;
  candidateVersion: string;
  category: PatchCategory;
  severity: Severity;
}

/** What is pending on one server. */
export interface ServerPendingPatches {
  serverName: string;
  patches: readonly ChangeRequestPatchSource[];
}

/** Input of {@link buildChangeRequest}. */
export interface BuildChangeRequestInput {
  project: { id: string; name: string };
  /** The policy the patches were selected under; named in the description when given. */
  policy?: {
    name: string;
    categories?: readonly PatchCategory[];
    minSeverity?: Severity;
    reboot?: 'never' | 'if-required' | 'always';
  };
  pending: readonly ServerPendingPatches[];
  /** The planned window (e.g. a `WindowOccurrence`). */
  window?: { start: Date | string; end: Date | string };
}

// `|`, `\` and line breaks are escaped so that the line encoding is injective: a server named
// `a|b` can never produce the same line as server `a` with package `b|…`.
function escapeField(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r/g, '\\r').replace(/\n/g, '\\n');
}

/**
 * The identity of a pending set: sha256 (hex) over `projectId` and the sorted, de-duplicated
 * lines `server|name|candidateVersion`. Order and duplicates in the input do not matter, and the
 * installed version, category and severity do not count: the same updates pending on the same
 * servers are the same change, so one change request is opened per project and set
 * (`ChangeRequest.pendingSetHash`).
 */
export function pendingSetHash(
  projectId: string,
  patches: readonly { serverName: string; name: string; candidateVersion: string }[],
): string {
  const lines = [
    ...new Set(
      patches.map(
        (p) => `${escapeField(p.serverName)}|${escapeField(p.name)}|${escapeField(p.candidateVersion)}`,
      ),
    ),
  ].sort();
  const hash = createHash('sha256');
  hash.update(`${escapeField(projectId)}\n`, 'utf8');
  for (const line of lines) hash.update(`${line}\n`, 'utf8');
  return hash.digest('hex');
}

function rank<T>(order: readonly T[], value: T): number {
  const i = order.indexOf(value);
  return i < 0 ? order.length : i;
}

function comparePatches(a: ChangeRequestPatch, b: ChangeRequestPatch): number {
  return (
    rank(CATEGORY_ORDER, a.category) - rank(CATEGORY_ORDER, b.category) ||
    rank(SEVERITY_ORDER, a.severity) - rank(SEVERITY_ORDER, b.severity) ||
    (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function countBy<K extends string>(order: readonly K[], values: readonly K[]): string {
  const counts = new Map<K, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return order
    .filter((k) => counts.has(k))
    .map((k) => `${k} ${counts.get(k)}`)
    .join(', ');
}

function toIso(value: Date | string, path: string, issues: ValidationIssue[]): string | undefined {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) {
    issues.push({ path: ['window', path], message: 'must be a valid date' });
    return undefined;
  }
  return date.toISOString();
}

function humanUtc(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

function describePatch(p: ChangeRequestPatch): string {
  const from = p.installedVersion ?? '(new)';
  const tag =
    p.category === 'security' ? ` [security${p.severity === 'unspecified' ? '' : `, ${p.severity}`}]` : '';
  return `${p.name} ${from} -> ${p.candidateVersion}${tag}`;
}

/**
 * Builds the system-neutral change request for a project's pending patches: a one-line title
 * with the counts that matter to an approver, and a plain-text description with counts by
 * category and severity, the policy, the planned window and a per-server list (security and
 * most severe first; long lists are cut with "… and N more", the full set stays in
 * `pendingPatches`). Pure: no clock, no I/O. Throws a ValidationError when nothing is pending or
 * the window is not a valid range.
 */
export function buildChangeRequest(input: BuildChangeRequestInput): ChangeRequestPayload {
  const issues: ValidationIssue[] = [];
  const patches: ChangeRequestPatch[] = [];
  for (const server of input.pending) {
    for (const p of server.patches) {
      patches.push({
        serverName: server.serverName,
        name: p.name,
        installedVersion: p.installedVersion,
        candidateVersion: p.candidateVersion,
        category: p.category,
        severity: p.severity,
      });
    }
  }
  if (patches.length === 0)
    issues.push({ path: ['pending'], message: 'no pending patches: nothing to change' });

  let windowStart: string | undefined;
  let windowEnd: string | undefined;
  if (input.window) {
    windowStart = toIso(input.window.start, 'start', issues);
    windowEnd = toIso(input.window.end, 'end', issues);
    if (windowStart && windowEnd && windowEnd <= windowStart) {
      issues.push({ path: ['window', 'end'], message: 'must be after the start' });
    }
  }
  if (issues.length) throw new ValidationError('ChangeRequest', issues);

  const byServer = new Map<string, ChangeRequestPatch[]>();
  for (const p of patches) {
    const list = byServer.get(p.serverName) ?? [];
    list.push(p);
    byServer.set(p.serverName, list);
  }
  const servers = [...byServer.keys()].sort();
  for (const list of byServer.values()) list.sort(comparePatches);
  patches.sort((a, b) =>
    a.serverName < b.serverName ? -1 : a.serverName > b.serverName ? 1 : comparePatches(a, b),
  );

  const security = patches.filter((p) => p.category === 'security').length;
  const critical = patches.filter((p) => p.severity === 'critical').length;
  const highlights = [security ? `${security} security` : '', critical ? `${critical} critical` : '']
    .filter(Boolean)
    .join(', ');
  const title =
    `Patch ${input.project.name}: ${plural(patches.length, 'update')} on ${plural(servers.length, 'server')}` +
    (highlights ? ` (${highlights})` : '');

  const lines: string[] = [
    `Fleetward requests a change to install pending updates on servers of project "${input.project.name}" (${input.project.id}).`,
    '',
    `Summary: ${plural(patches.length, 'update')} on ${plural(servers.length, 'server')}.`,
    `By category: ${countBy(
      CATEGORY_ORDER,
      patches.map((p) => p.category),
    )}`,
    `By severity: ${countBy(
      SEVERITY_ORDER,
      patches.map((p) => p.severity),
    )}`,
  ];
  if (input.policy) {
    const parts = [
      input.policy.categories?.length ? `categories ${input.policy.categories.join(', ')}` : '',
      input.policy.minSeverity ? `minimum severity ${input.policy.minSeverity}` : '',
      input.policy.reboot ? `reboot ${input.policy.reboot}` : '',
    ].filter(Boolean);
    lines.push(`Policy: ${input.policy.name}${parts.length ? ` (${parts.join('; ')})` : ''}`);
  }
  if (windowStart && windowEnd)
    lines.push(`Planned window: ${humanUtc(windowStart)} to ${humanUtc(windowEnd)}`);

  lines.push('', 'Pending updates by server:');
  for (const serverName of servers.slice(0, SERVERS_LISTED)) {
    const list = byServer.get(serverName) ?? [];
    const sec = list.filter((p) => p.category === 'security').length;
    lines.push('', `${serverName}: ${plural(list.length, 'update')}${sec ? `, ${sec} security` : ''}`);
    for (const p of list.slice(0, PATCHES_PER_SERVER)) lines.push(`- ${describePatch(p)}`);
    if (list.length > PATCHES_PER_SERVER) lines.push(`- … and ${list.length - PATCHES_PER_SERVER} more`);
  }
  if (servers.length > SERVERS_LISTED) {
    lines.push('', `… and ${plural(servers.length - SERVERS_LISTED, 'more server')}`);
  }

  const payload: ChangeRequestPayload = {
    title,
    description: lines.join('\n'),
    projectId: input.project.id,
    projectName: input.project.name,
    pendingPatches: patches,
  };
  if (windowStart) payload.windowStart = windowStart;
  if (windowEnd) payload.windowEnd = windowEnd;
  return payload;
}
