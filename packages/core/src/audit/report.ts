import { ACTION_NAMES, type Action } from '../authz/actions.js';
import { type CompiledAuthorization, compileAuthorization, compileSelector } from '../authz/compiled.js';
import type {
  AccessGrant,
  AccessRequest,
  AuditRecord,
  Credential,
  KeyInventory,
  KeyRotationPolicy,
  ObservedKey,
  Principal,
  Project,
  Role,
  RoleBinding,
  Server,
} from '../domain/index.js';
import { ValidationError, type ValidationIssue } from '../errors.js';
import { formatInstant } from '../report/render.js';

/**
 * The post-action audit of access management: one pure function over what the store holds (audit
 * records, principals, roles, grants, managed keys, key inventories) that answers the questions an
 * auditor asks: which actions, commands and scripts run most; who reached which servers and
 * whether that matched their roles; which remote users and keys sit on the servers and whether they
 * are needed; when each managed key was last rotated and which are overdue.
 */

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** Everything the access audit reads. Arrays are the tenant's entities as the store returns them. */
export interface AccessAuditInput {
  tenantId: string;
  /** Shown in the report header; the id is shown when absent. */
  tenantName?: string;
  /** The report's "now": grant windows, key ages, rotation due dates and roles are judged at it. */
  now: Date;
  /** Only records (and timed sshd logins) at or after this instant. */
  since?: Date;
  /** Only records (and timed sshd logins) before this instant. @default now */
  until?: Date;
  /** The tenant's audit records, in any order (a store's `seq` order is fine). */
  records: Iterable<AuditRecord>;
  principals: readonly Principal[];
  servers: readonly Server[];
  credentials: readonly Credential[];
  grants: readonly AccessGrant[];
  requests: readonly AccessRequest[];
  /** The newest key inventory of each server (older ones of the same server are ignored). */
  inventories: readonly KeyInventory[];
  rotationPolicies: readonly KeyRotationPolicy[];
  projects: readonly Project[];
  roles: readonly Role[];
  bindings: readonly RoleBinding[];
  /** A key not used for this many days counts as unused. @default 90 */
  unusedAfterDays?: number;
}

/** A principal as the report names it. `known` is false for an id no principal has (any more). */
export interface AccessAuditPerson {
  principalId: string;
  name: string;
  affiliation?: Principal['affiliation'];
  disabled: boolean;
  known: boolean;
}

/** The span of the audit log the report covers. */
export interface AccessAuditPeriod {
  since?: string;
  until: string;
  /** Records inside the period. */
  records: number;
  firstRecordAt?: string;
  lastRecordAt?: string;
}

/** How often one action was recorded. */
export interface AccessAuditAction {
  action: string;
  count: number;
  /** Records whose authorization decision was deny. */
  denied: number;
  /** Allowed, but the action itself failed. */
  failed: number;
  /** Distinct principals that did (or tried) it. */
  principals: number;
}

/** How often one script (by name) ran, from its `script.run` records. */
export interface AccessAuditScript {
  script: string;
  /** The content hash of the newest run seen. */
  contentHash?: string;
  /** Every content hash that ran in the period: more than one means the script changed. */
  contentHashes: string[];
  /** Distinct runs (a run covers many servers). */
  runs: number;
  /** Runs whose outcome was a failure (error budget spent, stopped, cancelled, …). */
  failedRuns: number;
  /** Per-server executions with a result. */
  serverRuns: number;
  /** Per-server executions that failed (exit code, timeout, unreachable). */
  serverFailures: number;
  /** Refused runs (authorization or a missing approval of a risky version). */
  denied: number;
  /** Who ran it. */
  principalIds: string[];
  lastRunAt?: string;
}

/** A command named by audit records (`details.command` or `details.argv`). */
export interface AccessAuditCommand {
  command: string;
  count: number;
  principals: number;
  lastAt: string;
}

/** Refused attempts of one principal at one action. */
export interface AccessAuditDenial {
  principalId: string;
  name: string;
  affiliation?: Principal['affiliation'];
  action: string;
  count: number;
  firstAt: string;
  lastAt: string;
  lastReason: string;
  /** Servers the refused attempts were aimed at (at most 50). */
  serverIds: string[];
}

/**
 * How one principal (or one unknown key) reached one server: `grant` (a just-in-time grant's key
 * or actions), `role` (actions Fleetward authorized by the principal's roles), `managed-key` (a
 * managed credential's key, attributed to its caretaker), `unknown-key` (a key nobody is
 * responsible for) or `unattributed` (a login without a key fingerprint, e.g. a password).
 */
export type AccessVia = 'grant' | 'role' | 'managed-key' | 'unknown-key' | 'unattributed';

/** One row of "who accessed which servers, and did it match their roles". */
export interface AccessAuditAccess {
  /** Absent when nobody can be held responsible (unknown key, unattributed login). */
  principalId?: string;
  /** The principal's name, or what is known about the key or login. */
  name: string;
  affiliation?: Principal['affiliation'];
  /** The principal is disabled now. */
  disabled: boolean;
  serverId: string;
  serverName: string;
  via: AccessVia;
  grantIds: string[];
  credentialId?: string;
  /** Key fingerprints the logins used. */
  fingerprints: string[];
  /** Remote users (logins on the server) used. */
  remoteUsers: string[];
  /** sshd logins counted in this row. */
  loginsSeen: number;
  /** Of them, from log lines without a timestamp (neither period nor window could be checked). */
  untimedLogins: number;
  /** Fleetward actions on the server counted in this row (`role` and `grant` of mode actions). */
  actions: number;
  firstAt?: string;
  lastAt?: string;
  matchedRole: boolean;
  explanation: string;
}

export type KeyKind = 'managed' | 'granted' | 'user-ca' | 'cloud-agent' | 'unmanaged';
export type KeyNeeded = 'yes' | 'review' | 'no';

/** One key found in a login's `authorized_keys` on a server. */
export interface AccessAuditKey {
  serverId: string;
  serverName: string;
  /** The remote user whose `authorized_keys` holds the key. */
  login: string;
  fingerprint: string;
  keyType: string;
  comment: string;
  kind: KeyKind;
  credentialId?: string;
  grantId?: string;
  /** Whom the key belongs to, and how that is known. */
  owner?: AccessAuditPerson & { relation: 'caretaker' | 'grantee' | 'requester' };
  expiryTime?: string;
  /** Accepted logins with the key in the part of the sshd log that was read. */
  logins: number;
  lastUsedAt?: string;
  needed: KeyNeeded;
  why: string;
}

/** Rotation state of one managed key. */
export interface AccessAuditRotation {
  credentialId: string;
  login: string;
  fingerprint: string;
  status: Credential['status'];
  caretaker: AccessAuditPerson;
  servers: number;
  registeredAt: string;
  lastRotatedAt?: string;
  /** Whole days since the last rotation (or the registration, if never rotated). */
  ageDays: number;
  /** The project whose policy applies: the strictest of the projects the key's servers are in. */
  policyProjectId?: string;
  policyIntervalHours?: number;
  dueAt?: string;
  overdue: boolean;
  /** The newest `keys.rotate` record of the key in the period. */
  lastAttempt?: { at: string; step: string; result: AuditRecord['result']; reason?: string };
  why: string;
}

/** What the report knows about one server's keys and logins. */
export interface AccessAuditCoverage {
  serverId: string;
  serverName: string;
  /** `missing`: the server was never inventoried, so its keys and logins are unknown. */
  status: 'succeeded' | 'failed' | 'missing';
  scannedAt?: string;
  logSource?: string;
  /** The oldest timed login the inventory kept: the log read reaches back at least that far. */
  earliestLoginAt?: string;
  keys: number;
  logins: number;
  error?: string;
}

export interface AccessAuditTotals {
  records: number;
  denied: number;
  failed: number;
  /** Distinct principals (not the system) with records in the period. */
  principalsActive: number;
  scriptRuns: number;
  servers: number;
  serversInventoried: number;
  loginsSeen: number;
  /** Logins and Fleetward actions in rows whose access did not match a role or grant. */
  unmatchedAccess: number;
  keys: number;
  keysByKind: Record<KeyKind, number>;
  keysNeeded: Record<KeyNeeded, number>;
  credentials: number;
  rotationOverdue: number;
  rotationWithoutPolicy: number;
}

/** The access audit. Every list is sorted so that what needs attention comes first. */
export interface AccessAuditReport {
  tenantId: string;
  tenantName?: string;
  generatedAt: string;
  unusedAfterDays: number;
  period: AccessAuditPeriod;
  totals: AccessAuditTotals;
  /** Most recorded actions first. */
  topActions: AccessAuditAction[];
  /** Most run scripts first. */
  topScripts: AccessAuditScript[];
  /** Most recorded commands first (empty when no record names a command; see `notes`). */
  topCommands: AccessAuditCommand[];
  /** Most refused first. */
  denials: AccessAuditDenial[];
  /** Unmatched access first. */
  access: AccessAuditAccess[];
  /** Keys to remove first, then keys to review. */
  keys: AccessAuditKey[];
  /** Overdue keys first, most overdue first. */
  rotation: AccessAuditRotation[];
  coverage: AccessAuditCoverage[];
  /** What the report could not see or judge, in plain sentences. */
  notes: string[];
}

// ---------------------------------------------------------------------------------------------
// Input checks and indexes
// ---------------------------------------------------------------------------------------------

const isDate = (d: unknown): d is Date => d instanceof Date && !Number.isNaN(d.getTime());
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
const when = (iso: string) => formatInstant(iso);

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

const ENTITY_FIELDS = [
  'principals',
  'servers',
  'credentials',
  'grants',
  'requests',
  'inventories',
  'rotationPolicies',
  'projects',
  'roles',
  'bindings',
] as const;

function checkInput(input: AccessAuditInput): { until: Date; unusedAfterDays: number } {
  const issues: ValidationIssue[] = [];
  if (typeof input?.tenantId !== 'string' || input.tenantId.length === 0)
    issues.push({ path: ['tenantId'], message: 'is required' });
  if (!isDate(input?.now)) issues.push({ path: ['now'], message: 'must be a valid Date' });
  if (input?.since !== undefined && !isDate(input.since))
    issues.push({ path: ['since'], message: 'must be a valid Date' });
  if (input?.until !== undefined && !isDate(input.until))
    issues.push({ path: ['until'], message: 'must be a valid Date' });
  const unusedAfterDays = input?.unusedAfterDays ?? 90;
  if (!Number.isInteger(unusedAfterDays) || unusedAfterDays < 1 || unusedAfterDays > 3660)
    issues.push({ path: ['unusedAfterDays'], message: 'must be a whole number of days from 1 to 3660' });
  if (input?.records === null || typeof input?.records?.[Symbol.iterator] !== 'function')
    issues.push({ path: ['records'], message: 'must be an iterable of audit records' });
  for (const field of ENTITY_FIELDS) {
    const list = input?.[field];
    if (!Array.isArray(list)) {
      issues.push({ path: [field], message: 'must be an array' });
      continue;
    }
    // Invariant 7: one tenant's report never mixes in another tenant's entities.
    list.forEach((item: { tenantId?: unknown }, i) => {
      if (item?.tenantId !== input.tenantId)
        issues.push({
          path: [field, i, 'tenantId'],
          message: `must be the report's tenant ${input.tenantId}`,
        });
    });
  }
  if (issues.length === 0 && input.since && input.until && input.since.getTime() >= input.until.getTime())
    issues.push({ path: ['since'], message: 'must be before until' });
  if (issues.length) throw new ValidationError('AccessAuditInput', issues.slice(0, 100));
  return { until: input.until ?? input.now, unusedAfterDays };
}

/** Lookups over the input, built once. */
class Index {
  readonly now: Date;
  readonly nowMs: number;
  readonly sinceMs: number;
  readonly untilMs: number;
  readonly unusedAfterDays: number;
  readonly principals = new Map<string, Principal>();
  readonly servers = new Map<string, Server>();
  readonly credentials = new Map<string, Credential>();
  readonly credentialsByFingerprint = new Map<string, Credential[]>();
  readonly credentialsByPrevious = new Map<string, Credential[]>();
  readonly grants = new Map<string, AccessGrant>();
  readonly grantsByFingerprint = new Map<string, AccessGrant[]>();
  readonly grantsByRole = new Map<string, AccessGrant>();
  readonly requestsByFingerprint = new Map<string, AccessRequest[]>();
  readonly inventories = new Map<string, KeyInventory>();
  readonly roles: Map<string, Role>;
  readonly projects: Map<string, Project>;
  readonly bindingsOf = new Map<string, RoleBinding[]>();
  readonly #authz = new Map<string, CompiledAuthorization>();
  readonly #serverActions = new Map<string, { action: Action; reason: string }[]>();

  constructor(
    readonly input: AccessAuditInput,
    until: Date,
    unusedAfterDays: number,
  ) {
    this.now = input.now;
    this.nowMs = input.now.getTime();
    this.sinceMs = input.since?.getTime() ?? Number.NEGATIVE_INFINITY;
    this.untilMs = until.getTime();
    this.unusedAfterDays = unusedAfterDays;
    for (const p of input.principals) this.principals.set(p.id, p);
    for (const s of input.servers) this.servers.set(s.id, s);
    for (const c of input.credentials) {
      this.credentials.set(c.id, c);
      push(this.credentialsByFingerprint, c.fingerprint, c);
      if (c.previousFingerprint && c.previousFingerprint !== c.fingerprint)
        push(this.credentialsByPrevious, c.previousFingerprint, c);
    }
    for (const g of input.grants) {
      this.grants.set(g.id, g);
      if ((g.mode === 'ssh-key' || g.mode === 'ssh-cert') && g.fingerprint)
        push(this.grantsByFingerprint, g.fingerprint, g);
      if (g.roleId) this.grantsByRole.set(g.roleId, g);
    }
    for (const r of input.requests) if (r.fingerprint) push(this.requestsByFingerprint, r.fingerprint, r);
    for (const inv of input.inventories) {
      const seen = this.inventories.get(inv.serverId);
      if (!seen || Date.parse(seen.scannedAt) < Date.parse(inv.scannedAt))
        this.inventories.set(inv.serverId, inv);
    }
    this.roles = new Map(input.roles.map((r) => [r.id, r]));
    this.projects = new Map(input.projects.map((p) => [p.id, p]));
    for (const b of input.bindings) push(this.bindingsOf, b.principalId, b);
  }

  inPeriod(ms: number): boolean {
    return ms >= this.sinceMs && ms < this.untilMs;
  }

  person(principalId: string): AccessAuditPerson {
    const p = this.principals.get(principalId);
    if (!p) return { principalId, name: principalId, disabled: false, known: false };
    return { principalId, name: p.name, affiliation: p.affiliation, disabled: p.disabled, known: true };
  }

  /** `Name (id)`, or a plain statement that the id names no principal. */
  who(principalId: string): string {
    const p = this.principals.get(principalId);
    return p ? `${p.name} (${p.id})` : `${principalId} (no such principal)`;
  }

  serverName(serverId: string): string {
    return this.servers.get(serverId)?.name ?? serverId;
  }

  /**
   * What the principal's roles allow on the server at report time, beyond asking for access:
   * `access.request` only lets someone ask, so it never makes a standing key legitimate.
   */
  serverActions(principalId: string, server: Server): { action: Action; reason: string }[] {
    const key = `${principalId}\u0000${server.id}`;
    const cached = this.#serverActions.get(key);
    if (cached) return cached;
    let authz = this.#authz.get(principalId);
    const principal = this.principals.get(principalId);
    if (!authz && principal) {
      authz = compileAuthorization({
        principal,
        bindings: this.bindingsOf.get(principalId) ?? [],
        roles: this.roles,
        projects: this.projects,
        now: this.now,
      });
      this.#authz.set(principalId, authz);
    }
    const allowed: { action: Action; reason: string }[] = [];
    if (authz) {
      for (const action of ACTION_NAMES) {
        if (action === 'access.request') continue;
        const decision = authz.decide(action, { type: 'server', server });
        if (decision.allowed) allowed.push({ action, reason: decision.reason });
      }
    }
    this.#serverActions.set(key, allowed);
    return allowed;
  }
}

// ---------------------------------------------------------------------------------------------
// Audit records: one pass, constant work per record
// ---------------------------------------------------------------------------------------------

interface ScriptTally {
  hashes: Set<string>;
  contentHash?: string;
  runs: Set<string>;
  failedRuns: Set<string>;
  serverRuns: number;
  serverFailures: number;
  denied: number;
  principals: Set<string>;
  lastRunAt?: string;
}

interface RoleAccessTally {
  principalId: string;
  serverId: string;
  count: number;
  actions: Map<string, number>;
  roles: Set<string>;
  grants: Set<string>;
  firstAt: string;
  lastAt: string;
}

function minIso(a: string | undefined, b: string): string {
  return a === undefined || Date.parse(b) < Date.parse(a) ? b : a;
}
function maxIso(a: string | undefined, b: string): string {
  return a === undefined || Date.parse(b) > Date.parse(a) ? b : a;
}

/** The script a `script.run` denial was about, from the per-resource decisions it lists. */
function deniedScript(details: Record<string, unknown>): string | undefined {
  const denied = details['denied'];
  if (!Array.isArray(denied)) return undefined;
  for (const d of denied) {
    const resource = (d as { resource?: { type?: unknown; id?: unknown } } | null)?.resource;
    if (resource?.type === 'script') return str(resource.id);
  }
  return undefined;
}

function deniedServers(record: AuditRecord, details: Record<string, unknown>): string[] {
  const out: string[] = [];
  if (record.target?.type === 'server' && record.target.id) out.push(record.target.id);
  const denied = details['denied'];
  if (Array.isArray(denied)) {
    for (const d of denied) {
      const resource = (d as { resource?: { type?: unknown; id?: unknown } } | null)?.resource;
      const id = resource?.type === 'server' ? str(resource.id) : undefined;
      if (id) out.push(id);
    }
  }
  return out;
}

/** A command named by a record, as one line of text; `argv` arrays are joined with spaces. */
function commandOf(details: Record<string, unknown>): string | undefined {
  const command = details['command'];
  if (typeof command === 'string' && command.trim()) return command.slice(0, 2000);
  const argv = details['argv'];
  if (Array.isArray(argv) && argv.length > 0 && argv.every((a) => typeof a === 'string'))
    return argv.join(' ').slice(0, 2000);
  return undefined;
}

class RecordTally {
  records = 0;
  denied = 0;
  failed = 0;
  firstAt: string | undefined;
  lastAt: string | undefined;
  readonly principals = new Set<string>();
  readonly actions = new Map<string, { count: number; denied: number; failed: number; who: Set<string> }>();
  readonly scripts = new Map<string, ScriptTally>();
  readonly scriptOfRun = new Map<string, string>();
  readonly commands = new Map<string, { count: number; who: Set<string>; lastAt: string }>();
  readonly denials = new Map<
    string,
    {
      principalId: string;
      action: string;
      count: number;
      firstAt: string;
      lastAt: string;
      lastReason: string;
      servers: Set<string>;
    }
  >();
  readonly roleAccess = new Map<string, RoleAccessTally>();
  readonly rotations = new Map<string, NonNullable<AccessAuditRotation['lastAttempt']>>();
  #seen = 0;

  constructor(private readonly ix: Index) {}

  add(record: AuditRecord): void {
    const index = this.#seen++;
    if (record?.tenantId !== this.ix.input.tenantId) {
      throw new ValidationError('AccessAuditInput', [
        {
          path: ['records', index, 'tenantId'],
          message: `must be the report's tenant ${this.ix.input.tenantId}`,
        },
      ]);
    }
    const atMs = Date.parse(record.at);
    if (Number.isNaN(atMs)) {
      throw new ValidationError('AccessAuditInput', [
        { path: ['records', index, 'at'], message: 'must be an ISO 8601 instant' },
      ]);
    }
    if (!this.ix.inPeriod(atMs)) return;
    const at = record.at;
    const actor = record.actor.principalId;
    const denied = record.decision === 'deny';
    const failed = !denied && record.result === 'failure';
    const details = record.details ?? {};
    this.records++;
    if (denied) this.denied++;
    if (failed) this.failed++;
    this.firstAt = minIso(this.firstAt, at);
    this.lastAt = maxIso(this.lastAt, at);
    if (record.actor.kind !== 'system') this.principals.add(actor);

    let action = this.actions.get(record.action);
    if (!action) {
      action = { count: 0, denied: 0, failed: 0, who: new Set() };
      this.actions.set(record.action, action);
    }
    action.count++;
    if (denied) action.denied++;
    if (failed) action.failed++;
    action.who.add(actor);

    if (denied) {
      const key = `${actor}\u0000${record.action}`;
      let d = this.denials.get(key);
      if (!d) {
        d = {
          principalId: actor,
          action: record.action,
          count: 0,
          firstAt: at,
          lastAt: at,
          lastReason: '',
          servers: new Set(),
        };
        this.denials.set(key, d);
      }
      d.count++;
      d.firstAt = minIso(d.firstAt, at);
      if (Date.parse(at) >= Date.parse(d.lastAt) || d.lastReason === '') {
        d.lastAt = maxIso(d.lastAt, at);
        d.lastReason = record.reason ?? '';
      }
      for (const id of deniedServers(record, details)) if (d.servers.size < 50) d.servers.add(id);
    }

    if (record.action === 'script.run') this.#script(record, details, denied);

    const command = commandOf(details);
    if (command !== undefined) {
      let c = this.commands.get(command);
      if (!c) {
        c = { count: 0, who: new Set(), lastAt: at };
        this.commands.set(command, c);
      }
      c.count++;
      c.who.add(actor);
      c.lastAt = maxIso(c.lastAt, at);
    }

    if (!denied && record.actor.kind !== 'system' && record.target?.type === 'server' && record.target.id) {
      const key = `${actor}\u0000${record.target.id}`;
      let r = this.roleAccess.get(key);
      if (!r) {
        r = {
          principalId: actor,
          serverId: record.target.id,
          count: 0,
          actions: new Map(),
          roles: new Set(),
          grants: new Set(),
          firstAt: at,
          lastAt: at,
        };
        this.roleAccess.set(key, r);
      }
      r.count++;
      r.actions.set(record.action, (r.actions.get(record.action) ?? 0) + 1);
      if (record.rule) {
        const grant = this.ix.grantsByRole.get(record.rule.roleId);
        if (grant) r.grants.add(grant.id);
        else r.roles.add(record.rule.roleId);
      }
      r.firstAt = minIso(r.firstAt, at);
      r.lastAt = maxIso(r.lastAt, at);
    }

    if (record.action === 'keys.rotate') {
      const credentialId =
        str(details['credentialId']) ?? (record.target?.type === 'credential' ? record.target.id : undefined);
      const seen = credentialId ? this.rotations.get(credentialId) : undefined;
      if (credentialId && (!seen || Date.parse(at) >= Date.parse(seen.at))) {
        this.rotations.set(credentialId, {
          at,
          step: str(details['step']) ?? (denied ? 'denied' : 'unknown'),
          result: record.result,
          ...(record.reason ? { reason: record.reason } : {}),
        });
      }
    }
  }

  #script(record: AuditRecord, details: Record<string, unknown>, denied: boolean): void {
    const runId =
      str(details['runId']) ?? (record.target?.type === 'script-run' ? record.target.id : undefined);
    const name =
      str(details['script']) ?? deniedScript(details) ?? (runId ? this.scriptOfRun.get(runId) : undefined);
    if (!name) return;
    if (runId) this.scriptOfRun.set(runId, name);
    let s = this.scripts.get(name);
    if (!s) {
      s = {
        hashes: new Set(),
        runs: new Set(),
        failedRuns: new Set(),
        serverRuns: 0,
        serverFailures: 0,
        denied: 0,
        principals: new Set(),
      };
      this.scripts.set(name, s);
    }
    if (denied) {
      s.denied++;
      return;
    }
    const hash = str(details['contentHash']);
    if (hash) {
      s.hashes.add(hash);
      if (!s.lastRunAt || Date.parse(record.at) >= Date.parse(s.lastRunAt)) s.contentHash = hash;
    }
    if (record.actor.kind !== 'system') s.principals.add(record.actor.principalId);
    s.lastRunAt = maxIso(s.lastRunAt, record.at);
    if (runId) s.runs.add(runId);
    if (record.target?.type === 'server' && (record.result === 'success' || record.result === 'failure')) {
      s.serverRuns++;
      if (record.result === 'failure') s.serverFailures++;
    } else if (record.target?.type === 'script-run' && record.result === 'failure' && runId) {
      s.failedRuns.add(runId);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Keys on servers
// ---------------------------------------------------------------------------------------------

/** Which grant a key on `serverId` for `login` belongs to, preferring one whose window is open. */
function grantFor(ix: Index, fingerprint: string, login: string, serverId: string): AccessGrant | undefined {
  const candidates = (ix.grantsByFingerprint.get(fingerprint) ?? []).filter(
    (g) => g.login === login && g.targets.some((t) => t.serverId === serverId),
  );
  const open = candidates.find(
    (g) =>
      Date.parse(g.notBefore) <= ix.nowMs &&
      ix.nowMs < Date.parse(g.notAfter) &&
      (g.status === 'active' || g.status === 'scheduled'),
  );
  return open ?? candidates.sort((a, b) => Date.parse(b.notAfter) - Date.parse(a.notAfter))[0];
}

/** The managed credential of a key: by current fingerprint first, then as a key a rotation replaced. */
function credentialFor(
  ix: Index,
  fingerprint: string,
  login: string,
): { credential: Credential; replaced: boolean } | undefined {
  const current = ix.credentialsByFingerprint.get(fingerprint) ?? [];
  const previous = ix.credentialsByPrevious.get(fingerprint) ?? [];
  const pick = (list: Credential[]) => list.find((c) => c.login === login) ?? list[0];
  const c = pick(current);
  if (c) return { credential: c, replaced: false };
  const p = pick(previous);
  return p ? { credential: p, replaced: true } : undefined;
}

/** What the log says about a key's use, in words, and whether it counts as in use. */
function usage(ix: Index, key: ObservedKey, inventory: KeyInventory): { used: boolean; text: string } {
  const source = inventory.logSource ? ` (log: ${inventory.logSource})` : '';
  const earliest = earliestLogin(inventory);
  if (key.logins > 0) {
    if (key.lastUsedAt) {
      const idle = Math.floor((ix.nowMs - Date.parse(key.lastUsedAt)) / DAY_MS);
      if (idle > ix.unusedAfterDays)
        return {
          used: false,
          text: `last used ${when(key.lastUsedAt)}, ${idle} days ago (more than ${ix.unusedAfterDays})`,
        };
      return { used: true, text: `${key.logins} login(s) in the log read, last ${when(key.lastUsedAt)}` };
    }
    return { used: true, text: `${key.logins} login(s) in the log read (its lines carry no time)` };
  }
  if (earliest && ix.nowMs - Date.parse(earliest) >= ix.unusedAfterDays * DAY_MS)
    return { used: false, text: `no login with it in the last ${ix.unusedAfterDays} days${source}` };
  if (earliest)
    return {
      used: false,
      text: `no login with it in the log read, which only reaches back to ${when(earliest)}${source}`,
    };
  return { used: false, text: `no login with it in the log read${source}` };
}

function earliestLogin(inventory: KeyInventory): string | undefined {
  let earliest: string | undefined;
  for (const l of inventory.logins) if (l.at) earliest = minIso(earliest, l.at);
  return earliest;
}

function markerProblem(ix: Index, key: ObservedKey, fingerprint: string, login: string): string | undefined {
  // Markers are comment text anyone with write access to the file can type; never trust one alone.
  if (key.grantId) {
    const g = ix.grants.get(key.grantId);
    if (!g) return `its comment names grant ${key.grantId}, which does not exist`;
    if (g.fingerprint !== fingerprint || g.login !== login)
      return `its comment names grant ${g.id}, but that grant is for key ${g.fingerprint ?? '(none)'} as ${g.login ?? '(no login)'}: the marker is stale or forged`;
  }
  if (key.credentialId) {
    const c = ix.credentials.get(key.credentialId);
    if (!c) return `it claims credential ${key.credentialId}, which does not exist`;
    if (c.fingerprint !== fingerprint && c.previousFingerprint !== fingerprint)
      return `it claims credential ${c.id}, but that credential's key is ${c.fingerprint}: the marker is stale or forged`;
  }
  return undefined;
}

function grantKeyRow(
  ix: Index,
  key: ObservedKey,
  inventory: KeyInventory,
  grant: AccessGrant,
): Pick<AccessAuditKey, 'needed' | 'why'> {
  const who = ix.who(grant.principalId);
  const principal = ix.principals.get(grant.principalId);
  const target = grant.targets.find((t) => t.serverId === inventory.serverId);
  const expiry = key.expiryTime
    ? `sshd refuses it after its expiry-time ${key.expiryTime}`
    : 'the line has NO expiry-time, so sshd still accepts it';
  const removal =
    target?.state === 'remove-failed' ? ` Removal failed: ${target.error?.message ?? 'unknown error'}.` : '';
  if (principal?.disabled)
    return {
      needed: 'no',
      why: `Key of grant ${grant.id} for ${who}, who is disabled; it is still on the server (${expiry}).${removal}`,
    };
  if (!principal)
    return {
      needed: 'no',
      why: `Key of grant ${grant.id} for ${who}; it is still on the server (${expiry}).${removal}`,
    };
  if (grant.status === 'revoked')
    return {
      needed: 'no',
      why: `Grant ${grant.id} for ${who} was revoked${grant.revokedBy ? ` by ${ix.who(grant.revokedBy)}` : ''}, but its key is still on the server (${expiry}).${removal}`,
    };
  if (grant.status === 'expired' || ix.nowMs >= Date.parse(grant.notAfter))
    return {
      needed: 'no',
      why: `Grant ${grant.id} for ${who} ended ${when(grant.notAfter)}, but its key is still on the server (${expiry}).${removal}`,
    };
  if (ix.nowMs < Date.parse(grant.notBefore))
    return {
      needed: 'review',
      why: `Grant ${grant.id} for ${who} starts only ${when(grant.notBefore)}, yet its key is already on the server.`,
    };
  const u = usage(ix, key, inventory);
  const noExpiry = key.expiryTime ? '' : ' Its line has no expiry-time: sshd will not end it by itself.';
  return {
    needed: 'yes',
    why: `Grant ${grant.id} for ${who} (ticket ${grant.ticket}) is active until ${when(grant.notAfter)}; ${u.text}.${noExpiry}`,
  };
}

function managedKeyRow(
  ix: Index,
  key: ObservedKey,
  inventory: KeyInventory,
  credential: Credential,
  replaced: boolean,
): Pick<AccessAuditKey, 'needed' | 'why'> {
  const caretaker = ix.principals.get(credential.caretakerId);
  const who = ix.who(credential.caretakerId);
  if (replaced)
    return {
      needed: 'no',
      why: `The key credential ${credential.id} had before its rotation${credential.rotatedAt ? ` on ${when(credential.rotatedAt)}` : ''}; it should be gone.`,
    };
  if (credential.status === 'retired')
    return {
      needed: 'no',
      why: `Credential ${credential.id} is retired, but its key is still on the server.`,
    };
  if (credential.expiresAt && Date.parse(credential.expiresAt) <= ix.nowMs)
    return {
      needed: 'no',
      why: `Credential ${credential.id} expired ${when(credential.expiresAt)}, but its key is still on the server.`,
    };
  if (!caretaker)
    return {
      needed: 'review',
      why: `Credential ${credential.id}'s caretaker ${who}: nobody is responsible for the key.`,
    };
  if (caretaker.disabled)
    return { needed: 'no', why: `Credential ${credential.id}'s caretaker ${who} is disabled.` };
  if (credential.login !== key.login)
    return {
      needed: 'review',
      why: `Credential ${credential.id} is registered for login ${credential.login}, but the key is in ${key.login}'s authorized_keys.`,
    };
  if (!credential.serverIds.includes(inventory.serverId))
    return {
      needed: 'review',
      why: `Credential ${credential.id} (caretaker ${who}) is not registered for this server.`,
    };
  const u = usage(ix, key, inventory);
  const server = ix.servers.get(inventory.serverId);
  if (server && ix.serverActions(caretaker.id, server).length === 0) {
    // A key its own caretaker has no business using there is a finding, used or not.
    return {
      needed: 'review',
      why: `Managed key, caretaker ${who}, but the caretaker's roles allow no action on ${server.name}; ${u.text}.`,
    };
  }
  if (u.used) return { needed: 'yes', why: `Managed key, caretaker ${who}; ${u.text}.` };
  return {
    needed: 'review',
    why: `Managed key, caretaker ${who}; ${u.text}: ask the caretaker whether it is still needed.`,
  };
}

function keyRow(ix: Index, inventory: KeyInventory, key: ObservedKey): AccessAuditKey {
  const fingerprint = key.fingerprint;
  const base = {
    serverId: inventory.serverId,
    serverName: ix.serverName(inventory.serverId),
    login: key.login,
    fingerprint,
    keyType: key.keyType,
    comment: key.comment,
    ...(key.expiryTime ? { expiryTime: key.expiryTime } : {}),
    logins: key.logins,
    ...(key.lastUsedAt ? { lastUsedAt: key.lastUsedAt } : {}),
  };
  const problem = markerProblem(ix, key, fingerprint, key.login);
  const suffix = problem ? ` Note: ${problem}.` : '';

  const grant = grantFor(ix, fingerprint, key.login, inventory.serverId);
  if (grant) {
    const verdict = grantKeyRow(ix, key, inventory, grant);
    return {
      ...base,
      kind: 'granted',
      grantId: grant.id,
      owner: { ...ix.person(grant.principalId), relation: 'grantee' },
      needed: verdict.needed,
      why: verdict.why + suffix,
    };
  }
  const managed = credentialFor(ix, fingerprint, key.login);
  if (managed) {
    const verdict = managedKeyRow(ix, key, inventory, managed.credential, managed.replaced);
    return {
      ...base,
      kind: 'managed',
      credentialId: managed.credential.id,
      owner: { ...ix.person(managed.credential.caretakerId), relation: 'caretaker' },
      needed: verdict.needed,
      why: verdict.why + suffix,
    };
  }
  if (key.fleetwardUserCa) {
    const live = [...ix.grants.values()].filter(
      (g) =>
        g.mode === 'ssh-cert' &&
        g.login === key.login &&
        (g.status === 'active' || g.status === 'scheduled') &&
        g.targets.some((t) => t.serverId === inventory.serverId),
    );
    return {
      ...base,
      kind: 'user-ca',
      needed: live.length ? 'yes' : 'no',
      why: live.length
        ? `The tenant's user CA, trusted for ${key.login} while certificate grant${live.length > 1 ? 's' : ''} ${live.map((g) => g.id).join(', ')} last${live.length > 1 ? '' : 's'}.${suffix}`
        : `The tenant's user CA with no live certificate grant for ${key.login} here: the next access sweep removes it.${suffix}`,
    };
  }
  const u = usage(ix, key, inventory);
  // The same key in an access request tells whose it is, even though nobody registered it.
  const request = (ix.requestsByFingerprint.get(fingerprint) ?? [])[0];
  const owner = request ? { ...ix.person(request.requesterId), relation: 'requester' as const } : undefined;
  const ownerText = request
    ? ` The same key was used by ${ix.who(request.requesterId)} in access request ${request.id}.`
    : '';
  if (owner?.disabled) {
    return {
      ...base,
      kind: key.cloudAgent ? 'cloud-agent' : 'unmanaged',
      owner,
      needed: 'no',
      why: `Not managed by Fleetward and belongs to ${ix.who(owner.principalId)}, who is disabled (known from access request ${request!.id}); ${u.text}.${suffix}`,
    };
  }
  if (key.cloudAgent) {
    return {
      ...base,
      kind: 'cloud-agent',
      ...(owner ? { owner } : {}),
      needed: 'review',
      why: `Written by the cloud provider's guest agent; its owner is managed outside Fleetward, so whether it is needed cannot be told here; ${u.text}.${ownerText}${suffix}`,
    };
  }
  return {
    ...base,
    kind: 'unmanaged',
    ...(owner ? { owner } : {}),
    needed: 'review',
    why: u.used
      ? `In use (${u.text}) but nobody is responsible for it: register it with a caretaker or remove it.${ownerText}${suffix}`
      : `Nobody is responsible for it and ${u.text}: remove it unless someone claims it.${ownerText}${suffix}`,
  };
}

// ---------------------------------------------------------------------------------------------
// Who accessed which servers
// ---------------------------------------------------------------------------------------------

interface AccessTally {
  row: Omit<AccessAuditAccess, 'explanation' | 'fingerprints' | 'remoteUsers' | 'grantIds'>;
  fingerprints: Set<string>;
  remoteUsers: Set<string>;
  grantIds: Set<string>;
  explanations: Set<string>;
  moreExplanations: number;
}

const MAX_EXPLANATIONS = 4;

class AccessRows {
  readonly rows = new Map<string, AccessTally>();
  constructor(private readonly ix: Index) {}

  add(
    key: { via: AccessVia; owner: string; serverId: string; matched: boolean },
    fields: {
      person?: AccessAuditPerson;
      name: string;
      credentialId?: string;
      grantId?: string;
      fingerprint?: string;
      remoteUser?: string;
      at?: string;
      logins?: number;
      actions?: number;
      explanation: string;
    },
  ): void {
    const id = `${key.via}\u0000${key.owner}\u0000${key.serverId}\u0000${key.matched}`;
    let t = this.rows.get(id);
    if (!t) {
      t = {
        row: {
          ...(fields.person ? { principalId: fields.person.principalId } : {}),
          name: fields.name,
          ...(fields.person?.affiliation ? { affiliation: fields.person.affiliation } : {}),
          disabled: fields.person?.disabled ?? false,
          serverId: key.serverId,
          serverName: this.ix.serverName(key.serverId),
          via: key.via,
          ...(fields.credentialId ? { credentialId: fields.credentialId } : {}),
          loginsSeen: 0,
          untimedLogins: 0,
          actions: 0,
          matchedRole: key.matched,
        },
        fingerprints: new Set(),
        remoteUsers: new Set(),
        grantIds: new Set(),
        explanations: new Set(),
        moreExplanations: 0,
      };
      this.rows.set(id, t);
    }
    const row = t.row;
    if (fields.logins) {
      row.loginsSeen += fields.logins;
      if (!fields.at) row.untimedLogins += fields.logins;
    }
    if (fields.actions) row.actions += fields.actions;
    if (fields.at) {
      row.firstAt = minIso(row.firstAt, fields.at);
      row.lastAt = maxIso(row.lastAt, fields.at);
    }
    if (fields.fingerprint) t.fingerprints.add(fields.fingerprint);
    if (fields.remoteUser) t.remoteUsers.add(fields.remoteUser);
    if (fields.grantId) t.grantIds.add(fields.grantId);
    if (t.explanations.has(fields.explanation)) return;
    if (t.explanations.size < MAX_EXPLANATIONS) t.explanations.add(fields.explanation);
    else t.moreExplanations++;
  }

  /** One sshd login of the inventory, attributed to a grant, a managed key's caretaker or nobody. */
  login(inventory: KeyInventory, entry: KeyInventory['logins'][number]): void {
    const ix = this.ix;
    const serverId = inventory.serverId;
    const server = ix.servers.get(serverId);
    const at = entry.at;
    const atMs = at ? Date.parse(at) : Number.NaN;
    const common = { remoteUser: entry.login, logins: 1, ...(at ? { at } : {}) };
    const fp = entry.fingerprint;
    if (!fp) {
      this.add(
        { via: 'unattributed', owner: entry.login, serverId, matched: false },
        {
          name: `${entry.method} login as ${entry.login}`,
          ...common,
          explanation: `Login by ${entry.method} without a key fingerprint: nobody can be held responsible for it.`,
        },
      );
      return;
    }
    const grants = (ix.grantsByFingerprint.get(fp) ?? []).filter(
      (g) => g.login === entry.login && g.targets.some((t) => t.serverId === serverId),
    );
    if (grants.length) {
      const inside = (g: AccessGrant) => {
        const target = g.targets.find((t) => t.serverId === serverId);
        const end = Math.min(
          Date.parse(g.notAfter),
          target?.removedAt ? Date.parse(target.removedAt) : Number.POSITIVE_INFINITY,
        );
        return atMs >= Date.parse(g.notBefore) && atMs <= end;
      };
      const grant = at ? (grants.find(inside) ?? grants[0]!) : grants[0]!;
      const matched = at ? inside(grant) : true;
      const person = ix.person(grant.principalId);
      const disabled = person.disabled ? ` ${person.name} is disabled now.` : '';
      const explanation = !at
        ? `Key of grant ${grant.id} (ticket ${grant.ticket}); the log line has no time, so the grant's window could not be checked.${disabled}`
        : matched
          ? `Inside the window of grant ${grant.id} (ticket ${grant.ticket}, ${when(grant.notBefore)} to ${when(grant.notAfter)}).${disabled}`
          : `Key of grant ${grant.id}, used ${when(at)}, outside its window (${when(grant.notBefore)} to ${when(grant.notAfter)}${grant.targets.find((t) => t.serverId === serverId)?.removedAt ? ', removed from the server before' : ''}).${disabled}`;
      this.add(
        { via: 'grant', owner: grant.principalId, serverId, matched },
        { person, name: person.name, grantId: grant.id, fingerprint: fp, ...common, explanation },
      );
      return;
    }
    const managed = credentialFor(ix, fp, entry.login);
    if (managed) {
      const c = managed.credential;
      const person = ix.person(c.caretakerId);
      const notes = [
        managed.replaced
          ? ` The key is the one rotation replaced${c.rotatedAt ? ` on ${when(c.rotatedAt)}` : ''}.`
          : '',
        c.login !== entry.login
          ? ` The credential is registered for login ${c.login}, not ${entry.login}.`
          : '',
      ].join('');
      let matched = false;
      let explanation: string;
      if (!person.known)
        explanation = `Managed key ${c.id} whose caretaker ${c.caretakerId} is no known principal.`;
      else if (person.disabled)
        explanation = `Managed key ${c.id} of caretaker ${ix.who(c.caretakerId)}, who is disabled.`;
      else if (!server)
        explanation = `Managed key ${c.id} of ${ix.who(c.caretakerId)} on server ${serverId}, which is not in the inventory, so no role can cover it.`;
      else {
        const allowed = ix.serverActions(c.caretakerId, server);
        matched = allowed.length > 0;
        explanation = matched
          ? `Managed key ${c.id}; caretaker ${ix.who(c.caretakerId)} may ${allowed
              .slice(0, 4)
              .map((a) => a.action)
              .join(
                ', ',
              )}${allowed.length > 4 ? ', …' : ''} on ${server.name} (${allowed[0]!.reason}, as of the report).`
          : `Managed key ${c.id}; no role of caretaker ${ix.who(c.caretakerId)} allows any action on ${server.name} (as of the report).`;
      }
      this.add(
        { via: 'managed-key', owner: c.caretakerId, serverId, matched },
        {
          person,
          name: person.name,
          credentialId: c.id,
          fingerprint: fp,
          ...common,
          explanation: explanation + notes,
        },
      );
      return;
    }
    const observed = inventory.keys.find((k) => k.fingerprint === fp && k.login === entry.login);
    const request = (ix.requestsByFingerprint.get(fp) ?? [])[0];
    const what = observed
      ? observed.cloudAgent
        ? `a key the cloud provider's agent wrote (comment ${JSON.stringify(observed.comment)})`
        : `an unmanaged key (comment ${JSON.stringify(observed.comment)})`
      : 'a key no longer in authorized_keys (or in another file sshd reads)';
    const hint = request
      ? ` The same key was used by ${ix.who(request.requesterId)} in access request ${request.id}.`
      : '';
    this.add(
      { via: 'unknown-key', owner: fp, serverId, matched: false },
      {
        name: `unknown key ${fp}`,
        fingerprint: fp,
        ...common,
        explanation: `Unknown key — not matched: ${what}, neither a managed credential nor a grant.${hint}`,
      },
    );
  }

  /** Fleetward actions a principal took on a server, as its audit records show. */
  records(t: RoleAccessTally): void {
    const person = this.ix.person(t.principalId);
    const actions = [...t.actions.entries()]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .map(([name, n]) => `${name} ×${n}`)
      .join(', ');
    const disabled = person.disabled ? ` ${person.name} is disabled now.` : '';
    const viaGrant = t.grants.size > 0 && t.roles.size === 0;
    const roles = [...t.roles].map((id) => this.ix.roles.get(id)?.name ?? id);
    const explanation = viaGrant
      ? `Fleetward actions (${actions}) allowed by just-in-time grant ${[...t.grants].join(', ')}.${disabled}`
      : `Fleetward actions (${actions}) authorized when taken${roles.length ? ` by role ${roles.join(', ')}` : ''}.${disabled}`;
    this.add(
      { via: viaGrant ? 'grant' : 'role', owner: t.principalId, serverId: t.serverId, matched: true },
      {
        person,
        name: person.name,
        at: t.firstAt,
        actions: t.count,
        explanation,
        ...(viaGrant ? { grantId: [...t.grants][0]! } : {}),
      },
    );
    // Both ends of the span, so first/last cover every record.
    const row = this.rows.get(
      `${viaGrant ? 'grant' : 'role'}\u0000${t.principalId}\u0000${t.serverId}\u0000true`,
    )!;
    row.row.lastAt = maxIso(row.row.lastAt, t.lastAt);
    for (const g of t.grants) row.grantIds.add(g);
  }

  finish(): AccessAuditAccess[] {
    return [...this.rows.values()]
      .map((t) => ({
        ...t.row,
        grantIds: [...t.grantIds].sort(),
        fingerprints: [...t.fingerprints].sort(),
        remoteUsers: [...t.remoteUsers].sort(),
        explanation:
          [...t.explanations].join(' ') + (t.moreExplanations ? ` (and ${t.moreExplanations} more)` : ''),
      }))
      .map((r) => reorderAccess(r))
      .sort(
        (a, b) =>
          Number(a.matchedRole) - Number(b.matchedRole) ||
          a.serverName.localeCompare(b.serverName) ||
          a.name.localeCompare(b.name) ||
          a.via.localeCompare(b.via),
      );
  }
}

/** Fields in the documented order, so JSON output diffs well whatever order they were set in. */
function reorderAccess(r: AccessAuditAccess): AccessAuditAccess {
  return {
    ...(r.principalId ? { principalId: r.principalId } : {}),
    name: r.name,
    ...(r.affiliation ? { affiliation: r.affiliation } : {}),
    disabled: r.disabled,
    serverId: r.serverId,
    serverName: r.serverName,
    via: r.via,
    grantIds: r.grantIds,
    ...(r.credentialId ? { credentialId: r.credentialId } : {}),
    fingerprints: r.fingerprints,
    remoteUsers: r.remoteUsers,
    loginsSeen: r.loginsSeen,
    untimedLogins: r.untimedLogins,
    actions: r.actions,
    ...(r.firstAt ? { firstAt: r.firstAt } : {}),
    ...(r.lastAt ? { lastAt: r.lastAt } : {}),
    matchedRole: r.matchedRole,
    explanation: r.explanation,
  };
}

// ---------------------------------------------------------------------------------------------
// Rotation
// ---------------------------------------------------------------------------------------------

function rotationRows(ix: Index, tally: RecordTally): AccessAuditRotation[] {
  const policies = ix.input.rotationPolicies
    .filter((p) => p.enabled)
    .flatMap((p) => {
      const project = ix.projects.get(p.projectId);
      return project ? [{ policy: p, inProject: compileSelector(project.selector) }] : [];
    });
  const rows = ix.input.credentials.map((c): AccessAuditRotation => {
    const since = c.rotatedAt ?? c.createdAt;
    const ageDays = Math.max(0, Math.floor((ix.nowMs - Date.parse(since)) / DAY_MS));
    const servers = c.serverIds.flatMap((id) => {
      const s = ix.servers.get(id);
      return s ? [s] : [];
    });
    // The strictest policy of any project the key's servers are in decides, as `keys.due` does.
    let best: { policy: KeyRotationPolicy; dueMs: number } | undefined;
    for (const { policy, inProject } of policies) {
      if (!servers.some(inProject)) continue;
      const dueMs = Date.parse(since) + policy.intervalHours * HOUR_MS;
      if (!best || dueMs < best.dueMs) best = { policy, dueMs };
    }
    const attempt = tally.rotations.get(c.id);
    const last = c.rotatedAt
      ? `last rotated ${when(c.rotatedAt)}`
      : `never rotated since it was registered ${when(c.createdAt)}`;
    const attemptText =
      attempt && attempt.result === 'failure'
        ? ` The last rotation attempt (${when(attempt.at)}) failed at step ${attempt.step}${attempt.reason ? `: ${attempt.reason}` : ''}.`
        : '';
    const retired = c.status === 'retired';
    const overdue = !retired && best !== undefined && best.dueMs <= ix.nowMs;
    let why: string;
    if (retired) why = `Retired; ${last}.`;
    else if (!best)
      why = `No enabled rotation policy covers any of its servers; ${last} (${ageDays} days ago).`;
    else {
      const interval = best.policy.intervalHours;
      const policy = `project ${ix.projects.get(best.policy.projectId)?.name ?? best.policy.projectId} rotates every ${interval % 24 === 0 ? `${interval / 24} days` : `${interval} hours`}`;
      why = overdue
        ? `Overdue since ${when(new Date(best.dueMs).toISOString())}: ${policy}, and it was ${last}.`
        : `Due ${when(new Date(best.dueMs).toISOString())}: ${policy}; ${last}.`;
    }
    if (c.status === 'rotating') why += ' A rotation is in progress (or stopped half-way: resume it).';
    return {
      credentialId: c.id,
      login: c.login,
      fingerprint: c.fingerprint,
      status: c.status,
      caretaker: ix.person(c.caretakerId),
      servers: c.serverIds.length,
      registeredAt: c.createdAt,
      ...(c.rotatedAt ? { lastRotatedAt: c.rotatedAt } : {}),
      ageDays,
      ...(best
        ? {
            policyProjectId: best.policy.projectId,
            policyIntervalHours: best.policy.intervalHours,
            dueAt: new Date(best.dueMs).toISOString(),
          }
        : {}),
      overdue,
      ...(attempt ? { lastAttempt: attempt } : {}),
      why: why + attemptText,
    };
  });
  const dueMs = (r: AccessAuditRotation) => (r.dueAt ? Date.parse(r.dueAt) : Number.POSITIVE_INFINITY);
  return rows.sort(
    (a, b) =>
      Number(b.overdue) - Number(a.overdue) ||
      dueMs(a) - dueMs(b) ||
      a.credentialId.localeCompare(b.credentialId),
  );
}

// ---------------------------------------------------------------------------------------------
// Assembly
// ---------------------------------------------------------------------------------------------

const NEEDED_ORDER: Record<KeyNeeded, number> = { no: 0, review: 1, yes: 2 };

function assemble(ix: Index, tally: RecordTally): AccessAuditReport {
  const input = ix.input;
  const topActions = [...tally.actions.entries()]
    .map(([action, a]) => ({
      action,
      count: a.count,
      denied: a.denied,
      failed: a.failed,
      principals: a.who.size,
    }))
    .sort((a, b) => b.count - a.count || a.action.localeCompare(b.action));

  const topScripts = [...tally.scripts.entries()]
    .map(
      ([script, s]): AccessAuditScript => ({
        script,
        ...(s.contentHash ? { contentHash: s.contentHash } : {}),
        contentHashes: [...s.hashes].sort(),
        runs: s.runs.size,
        failedRuns: s.failedRuns.size,
        serverRuns: s.serverRuns,
        serverFailures: s.serverFailures,
        denied: s.denied,
        principalIds: [...s.principals].sort(),
        ...(s.lastRunAt ? { lastRunAt: s.lastRunAt } : {}),
      }),
    )
    .sort(
      (a, b) =>
        b.runs - a.runs ||
        b.serverRuns - a.serverRuns ||
        b.denied - a.denied ||
        a.script.localeCompare(b.script),
    );

  const topCommands = [...tally.commands.entries()]
    .map(([command, c]) => ({ command, count: c.count, principals: c.who.size, lastAt: c.lastAt }))
    .sort((a, b) => b.count - a.count || a.command.localeCompare(b.command));

  const denials = [...tally.denials.values()]
    .map((d): AccessAuditDenial => {
      const p = ix.person(d.principalId);
      return {
        principalId: d.principalId,
        name: p.name,
        ...(p.affiliation ? { affiliation: p.affiliation } : {}),
        action: d.action,
        count: d.count,
        firstAt: d.firstAt,
        lastAt: d.lastAt,
        lastReason: d.lastReason,
        serverIds: [...d.servers].sort(),
      };
    })
    .sort((a, b) => b.count - a.count || a.name.localeCompare(b.name) || a.action.localeCompare(b.action));

  const access = new AccessRows(ix);
  const keys: AccessAuditKey[] = [];
  const coverage: AccessAuditCoverage[] = [];
  let untimed = 0;
  const serverIds = new Set([...ix.servers.keys(), ...ix.inventories.keys()]);
  for (const serverId of serverIds) {
    const inv = ix.inventories.get(serverId);
    if (!inv) {
      coverage.push({ serverId, serverName: ix.serverName(serverId), status: 'missing', keys: 0, logins: 0 });
      continue;
    }
    const earliest = earliestLogin(inv);
    coverage.push({
      serverId,
      serverName: ix.serverName(serverId),
      status: inv.status,
      scannedAt: inv.scannedAt,
      ...(inv.logSource ? { logSource: inv.logSource } : {}),
      ...(earliest ? { earliestLoginAt: earliest } : {}),
      keys: inv.keys.length,
      logins: inv.logins.length,
      ...(inv.error ? { error: `${inv.error.code}: ${inv.error.message}` } : {}),
    });
    if (inv.status !== 'succeeded') continue;
    for (const key of inv.keys) keys.push(keyRow(ix, inv, key));
    for (const entry of inv.logins) {
      if (entry.at && !ix.inPeriod(Date.parse(entry.at))) continue;
      if (!entry.at) untimed++;
      access.login(inv, entry);
    }
  }
  for (const t of tally.roleAccess.values()) access.records(t);
  const accessRows = access.finish();

  keys.sort(
    (a, b) =>
      NEEDED_ORDER[a.needed] - NEEDED_ORDER[b.needed] ||
      a.serverName.localeCompare(b.serverName) ||
      a.login.localeCompare(b.login) ||
      a.fingerprint.localeCompare(b.fingerprint),
  );
  coverage.sort(
    (a, b) =>
      Number(a.status === 'succeeded') - Number(b.status === 'succeeded') ||
      a.serverName.localeCompare(b.serverName),
  );
  const rotation = rotationRows(ix, tally);

  const keysByKind: Record<KeyKind, number> = {
    managed: 0,
    granted: 0,
    'user-ca': 0,
    'cloud-agent': 0,
    unmanaged: 0,
  };
  const keysNeeded: Record<KeyNeeded, number> = { yes: 0, review: 0, no: 0 };
  for (const k of keys) {
    keysByKind[k.kind]++;
    keysNeeded[k.needed]++;
  }

  const notes: string[] = [];
  if (topCommands.length === 0) {
    notes.push(
      'No audit record in the period names a command: Fleetward runs commands only as scripts (see the scripts table) and patch runs, and sshd logs logins, not the commands typed in a session.',
    );
  }
  const blind = coverage.filter((c) => c.status !== 'succeeded');
  if (blind.length) {
    notes.push(
      `${blind.length} server(s) have no successful key inventory (${blind
        .slice(0, 10)
        .map((c) => c.serverName)
        .join(', ')}${blind.length > 10 ? ', …' : ''}): their keys and logins are not in this report.`,
    );
  }
  if (untimed) {
    notes.push(
      `${untimed} login(s) come from log lines without a timestamp: they are counted whatever the period, and grant windows could not be checked for them.`,
    );
  }
  if (accessRows.some((r) => r.via === 'managed-key')) {
    notes.push(
      "Logins with managed keys are judged by the caretaker's roles as they stand at report time, not as they stood at each login.",
    );
  }
  if (keys.length || accessRows.some((r) => r.loginsSeen > 0)) {
    notes.push(
      'Key use comes from the part of each server\'s sshd log that the inventory read: "no login" means none there, not none ever.',
    );
  }
  const unknownActors = [...tally.principals].filter((id) => !ix.principals.has(id));
  if (unknownActors.length) {
    notes.push(
      `${unknownActors.length} actor(s) in the records are no known principal (deleted, or denied as unknown): ${unknownActors.slice(0, 10).join(', ')}.`,
    );
  }

  const scriptRuns = topScripts.reduce((n, s) => n + s.runs, 0);
  const totals: AccessAuditTotals = {
    records: tally.records,
    denied: tally.denied,
    failed: tally.failed,
    principalsActive: tally.principals.size,
    scriptRuns,
    servers: ix.servers.size,
    serversInventoried: coverage.filter((c) => c.status === 'succeeded').length,
    loginsSeen: accessRows.reduce((n, r) => n + r.loginsSeen, 0),
    unmatchedAccess: accessRows
      .filter((r) => !r.matchedRole)
      .reduce((n, r) => n + r.loginsSeen + r.actions, 0),
    keys: keys.length,
    keysByKind,
    keysNeeded,
    credentials: input.credentials.length,
    rotationOverdue: rotation.filter((r) => r.overdue).length,
    rotationWithoutPolicy: rotation.filter(
      (r) => r.status !== 'retired' && r.policyIntervalHours === undefined,
    ).length,
  };

  return {
    tenantId: input.tenantId,
    ...(input.tenantName ? { tenantName: input.tenantName } : {}),
    generatedAt: ix.now.toISOString(),
    unusedAfterDays: ix.unusedAfterDays,
    period: {
      ...(input.since ? { since: input.since.toISOString() } : {}),
      until: new Date(ix.untilMs).toISOString(),
      records: tally.records,
      ...(tally.firstAt ? { firstRecordAt: tally.firstAt } : {}),
      ...(tally.lastAt ? { lastRecordAt: tally.lastAt } : {}),
    },
    totals,
    topActions,
    topScripts,
    topCommands,
    denials,
    access: accessRows,
    keys,
    rotation,
    coverage,
    notes,
  };
}

function prepare(input: AccessAuditInput): { ix: Index; tally: RecordTally } {
  const { until, unusedAfterDays } = checkInput(input);
  const ix = new Index(input, until, unusedAfterDays);
  return { ix, tally: new RecordTally(ix) };
}

/**
 * Builds the access audit report from the tenant's audit records and current state. Pure: no I/O,
 * the same input always gives the same report. Records are read once, in one pass, so a long log
 * costs memory only for what the report keeps (counts per action, script, principal and server).
 *
 * Who accessed what comes from two sources: the servers' sshd logs as the key inventories kept them
 * (each login attributed by its key fingerprint to a grant, a managed key's caretaker, or nobody)
 * and Fleetward's own allowed actions on servers. A grant login matches when it falls inside the
 * grant's window; a managed-key login matches when the caretaker's roles allow any action on the
 * server other than `access.request`; an unknown key never matches.
 *
 * @throws {ValidationError} (subject `AccessAuditInput`) for a missing or invalid field, `since`
 * not before `until`, or any record or entity of another tenant — with the path of each.
 */
export function buildAccessAuditReport(input: AccessAuditInput): AccessAuditReport {
  const { ix, tally } = prepare(input);
  for (const record of input.records) tally.add(record);
  return assemble(ix, tally);
}

/**
 * As {@link buildAccessAuditReport}, reading the records from an async iterable, e.g.
 * `auditRecords(store, tenantId)`, so that a long log is never held in memory at once.
 */
export async function buildAccessAuditReportAsync(
  input: Omit<AccessAuditInput, 'records'> & { records: Iterable<AuditRecord> | AsyncIterable<AuditRecord> },
): Promise<AccessAuditReport> {
  const records = input.records;
  const isAsync = typeof (records as AsyncIterable<AuditRecord>)?.[Symbol.asyncIterator] === 'function';
  const { ix, tally } = prepare({ ...input, records: isAsync ? [] : (records as Iterable<AuditRecord>) });
  for await (const record of records) tally.add(record);
  return assemble(ix, tally);
}
