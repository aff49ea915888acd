import { createHash } from 'node:crypto';
import { z } from 'zod';
import {
  type Account,
  AddressSchema,
  AgentFactsSchema,
  type AuditInput,
  IdSchema,
  LabelKeySchema,
  type Labels,
  LabelValueSchema,
  OsFactsSchema,
  type Provider,
  type Server,
  type ServerInput,
} from '../domain/index.js';
import { validateOptions } from '../domain/options.js';
import { AbortedError, NotFoundError, toFleetwardError, ValidationError } from '../errors.js';
import type { CallContext } from '../kernel/context.js';
import type { FleetEvents } from '../kernel/events.js';
import type { DiscoveredServer, DiscoveryResult } from '../ports/adapter.js';
import type { StoreScope } from '../ports/store.js';

const DiscoverOptionsSchema = z.strictObject({
  accountIds: z.array(IdSchema).min(1).max(1000).optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'expected an AbortSignal').optional(),
});

/** Options of `inventory.discover`. */
export interface DiscoverOptions {
  /** The accounts to discover. @default every account of the tenant */
  accountIds?: string[];
  /** Stops the discovery: accounts not finished yet fail with `ABORTED`. */
  signal?: AbortSignal;
}

/** Why something failed: a FleetwardError's code and its (redacted) message. */
export interface DiscoveryError {
  code: string;
  message: string;
}

/** What discovery did to one account. */
export interface AccountDiscovery {
  accountId: string;
  /**
   * `succeeded`: every region listed; `partial`: some regions failed (see `regionFailures`);
   * `failed`: nothing was stored (see `error`); `skipped`: no adapter with `discover` for its provider.
   */
  status: 'succeeded' | 'partial' | 'failed' | 'skipped';
  /** Ids of servers created. */
  added: string[];
  /** Ids of servers whose discovered fields changed (a gone server listed again included). */
  changed: string[];
  /** Ids of servers marked gone now (the provider no longer lists them). */
  gone: string[];
  /** Ids of listed servers that did not change. */
  unchanged: string[];
  /** Ids of stored servers not listed, in a failed region: kept as they were. */
  unverified: string[];
  regionFailures: { region: string; error: DiscoveryError }[];
  /** Entries of the adapter's answer that could not be stored. */
  rejected: { providerId?: string; error: DiscoveryError }[];
  /** Tags that could not become labels (`dropped`), and tags whose key or value was rewritten (`sanitized`). */
  tags: { dropped: number; sanitized: number };
  /** Why the account failed or was skipped. */
  error?: DiscoveryError;
}

/** What `inventory.discover` did, account by account. */
export interface DiscoveryOutcome {
  accounts: AccountDiscovery[];
}

/** The label prefix discovery owns on servers of `provider`: `tag.aws/`. */
export function discoveredLabelPrefix(provider: Provider): string {
  return `tag.${provider}/`;
}

const MAX_TAGS = 256;
const LABEL_PART = 63;

/** `raw` reduced to label characters, starting and ending with a letter or digit, at most 63 long. */
function labelPart(raw: string): string {
  const trimmed = raw
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, LABEL_PART);
  return trimmed.replace(/[^A-Za-z0-9]+$/, '');
}

/**
 * Maps a provider's tags to labels: key `K` becomes `tag.<provider>/K'`, value `V` becomes `V'`,
 * where `'` replaces each character outside `[A-Za-z0-9._-]` with `-`, trims non-alphanumerics at
 * both ends and keeps 63 characters. Dropped (and counted): non-string keys or values, a key
 * that is empty after that, a non-empty value that becomes empty, every tag of a group whose keys
 * collide once rewritten, and tags beyond the 256th. Never throws.
 */
export function tagsToLabels(
  provider: Provider,
  tags: unknown,
): { labels: Labels; dropped: number; sanitized: number } {
  if (typeof tags !== 'object' || tags === null || Array.isArray(tags)) {
    return { labels: {}, dropped: 0, sanitized: 0 };
  }
  const prefix = discoveredLabelPrefix(provider);
  const entries = Object.entries(tags as Record<string, unknown>);
  let dropped = Math.max(0, entries.length - MAX_TAGS);
  const byKey = new Map<string, { value: string; sanitized: boolean }[]>();
  for (const [rawKey, rawValue] of entries.slice(0, MAX_TAGS)) {
    if (typeof rawValue !== 'string') {
      dropped++;
      continue;
    }
    const name = labelPart(rawKey);
    const value = labelPart(rawValue);
    const key = `${prefix}${name}`;
    if (!name || (rawValue !== '' && !value) || !LabelKeySchema.safeParse(key).success) {
      dropped++;
      continue;
    }
    if (!LabelValueSchema.safeParse(value).success) {
      dropped++;
      continue;
    }
    const list = byKey.get(key) ?? [];
    list.push({ value, sanitized: name !== rawKey || value !== rawValue });
    byKey.set(key, list);
  }
  const labels: Labels = {};
  let sanitized = 0;
  for (const [key, list] of byKey) {
    // Two tags that rewrite to one key: keeping either would be a guess, so neither is kept.
    if (list.length > 1) {
      dropped += list.length;
      continue;
    }
    labels[key] = list[0]!.value;
    if (list[0]!.sanitized) sanitized++;
  }
  return { labels, dropped, sanitized };
}

/**
 * The id of a newly discovered server: `<provider>-<providerId>` when that is a valid, free id;
 * otherwise the provider id rewritten to id characters, cut, with a hash of account and provider
 * id appended, so that two provider ids never share an id.
 */
export function discoveredServerId(
  provider: Provider,
  accountId: string,
  providerId: string,
  taken: (id: string) => boolean,
): string {
  const plain = `${provider}-${providerId}`;
  if (IdSchema.safeParse(plain).success && !taken(plain)) return plain;
  const hash = createHash('sha256').update(`${accountId}\0${providerId}`).digest('hex').slice(0, 16);
  const safe = `${provider}-${providerId.replace(/[^A-Za-z0-9._:-]/g, '-')}`.slice(0, 128 - 17);
  return `${safe}-${hash}`;
}

const errorOf = (error: unknown, context: string): DiscoveryError => {
  const failure = toFleetwardError(error, context);
  // An audit reason holds 2,000 characters; an adapter's message must not make the record fail.
  return { code: failure.code, message: failure.message.slice(0, 2000) };
};

/** What a listed entry would store, or why it cannot be stored. */
type Candidate =
  | {
      ok: true;
      providerId: string;
      fields: Pick<ServerInput, 'name' | 'region' | 'address' | 'os' | 'agent' | 'labels'>;
      tags: { dropped: number; sanitized: number };
    }
  | { ok: false; providerId?: string; error: DiscoveryError };

function candidateOf(provider: Provider, entry: DiscoveredServer): Candidate {
  const raw = (typeof entry === 'object' && entry !== null ? entry : {}) as Partial<Record<string, unknown>>;
  const providerId = raw['providerId'];
  if (typeof providerId !== 'string' || providerId.length < 1 || providerId.length > 512) {
    return {
      ok: false,
      error: { code: 'VALIDATION_FAILED', message: 'providerId must be a string of 1-512 characters' },
    };
  }
  const region = raw['region'];
  if (
    region !== undefined &&
    (typeof region !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(region))
  ) {
    return {
      ok: false,
      providerId,
      error: { code: 'VALIDATION_FAILED', message: 'region must be 1-64 letters, digits, . _ -' },
    };
  }
  const printable = (s: unknown) =>
    typeof s === 'string'
      ? s
          .replace(/\p{Cc}/gu, ' ')
          .trim()
          .slice(0, 200)
      : '';
  const name = printable(raw['name']) || printable(providerId) || 'unnamed';
  const address = AddressSchema.safeParse(raw['address']);
  const os = OsFactsSchema.safeParse(raw['os']);
  const agent = AgentFactsSchema.safeParse(raw['agent']);
  const { labels, ...tags } = tagsToLabels(provider, raw['labels']);
  return {
    ok: true,
    providerId,
    fields: {
      name,
      ...(region !== undefined ? { region } : {}),
      ...(address.success ? { address: address.data } : {}),
      ...(os.success ? { os: os.data } : {}),
      ...(agent.success ? { agent: agent.data } : {}),
      labels,
    },
    tags,
  };
}

const sameJson = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
const sortedLabels = (labels: Labels) => Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1));

/** Labels a user set (any key outside the provider's `tag.<provider>/`) plus the discovered ones. */
function mergedLabels(provider: Provider, current: Labels, discovered: Labels): Labels {
  const prefix = discoveredLabelPrefix(provider);
  const kept = Object.entries(current).filter(([key]) => !key.startsWith(prefix));
  return Object.fromEntries([...kept, ...Object.entries(discovered)]);
}

function emptyReport(accountId: string): AccountDiscovery {
  return {
    accountId,
    status: 'succeeded',
    added: [],
    changed: [],
    gone: [],
    unchanged: [],
    unverified: [],
    regionFailures: [],
    rejected: [],
    tags: { dropped: 0, sanitized: 0 },
  };
}

/** Applies one account's listing to its stored servers, in `tx`; fills `report`. */
async function upsertAccount(
  ctx: CallContext,
  tx: StoreScope,
  account: Account,
  listed: DiscoveryResult,
  report: AccountDiscovery,
): Promise<void> {
  const now = ctx.runtime.clock.now().toISOString();
  const stored = await tx.servers.listAll(ctx.tenantId, { where: { accountId: account.id } });
  const byProviderId = new Map(
    stored.filter((s) => s.providerId !== undefined).map((s) => [s.providerId!, s] as const),
  );
  const seen = new Set<string>();
  const failedRegions = new Set(report.regionFailures.map((f) => f.region));
  for (const entry of listed.servers) {
    const candidate = candidateOf(account.provider, entry);
    if (!candidate.ok) {
      if (candidate.providerId !== undefined) seen.add(candidate.providerId);
      report.rejected.push({
        ...(candidate.providerId !== undefined ? { providerId: candidate.providerId } : {}),
        error: candidate.error,
      });
      continue;
    }
    if (seen.has(candidate.providerId)) {
      report.rejected.push({
        providerId: candidate.providerId,
        error: { code: 'CONFLICT', message: 'listed more than once; the first entry was kept' },
      });
      continue;
    }
    seen.add(candidate.providerId);
    report.tags.dropped += candidate.tags.dropped;
    report.tags.sanitized += candidate.tags.sanitized;
    const current = byProviderId.get(candidate.providerId);
    if (current) await updateListed(ctx, tx, account, current, candidate.fields, report);
    else await addListed(ctx, tx, account, candidate.providerId, candidate.fields, report);
  }
  for (const server of stored) {
    if (server.providerId === undefined || seen.has(server.providerId) || server.goneAt) continue;
    const unseenInFailedRegion =
      failedRegions.size > 0 && (server.region === undefined || failedRegions.has(server.region));
    if (unseenInFailedRegion) {
      report.unverified.push(server.id);
      continue;
    }
    await tx.servers.update(ctx.tenantId, server.id, { goneAt: now }, { expectedVersion: server.version });
    report.gone.push(server.id);
  }
}

async function updateListed(
  ctx: CallContext,
  tx: StoreScope,
  account: Account,
  current: Server,
  fields: Extract<Candidate, { ok: true }>['fields'],
  report: AccountDiscovery,
): Promise<void> {
  const labels = mergedLabels(account.provider, current.labels, fields.labels ?? {});
  const unchanged =
    !current.goneAt &&
    current.name === fields.name &&
    current.region === fields.region &&
    current.address === fields.address &&
    sameJson(current.os, fields.os) &&
    sameJson(current.agent, fields.agent) &&
    sameJson(sortedLabels(current.labels), sortedLabels(labels));
  if (unchanged) {
    report.unchanged.push(current.id);
    return;
  }
  await tx.servers.update(
    ctx.tenantId,
    current.id,
    {
      name: fields.name,
      region: fields.region,
      address: fields.address,
      os: fields.os,
      agent: fields.agent,
      labels,
      goneAt: undefined,
    },
    { expectedVersion: current.version },
  );
  report.changed.push(current.id);
}

async function addListed(
  ctx: CallContext,
  tx: StoreScope,
  account: Account,
  providerId: string,
  fields: Extract<Candidate, { ok: true }>['fields'],
  report: AccountDiscovery,
): Promise<void> {
  const taken = new Set<string>();
  const plain = `${account.provider}-${providerId}`;
  if (IdSchema.safeParse(plain).success && (await tx.servers.get(ctx.tenantId, plain))) taken.add(plain);
  const id = discoveredServerId(account.provider, account.id, providerId, (i) => taken.has(i));
  if (id !== plain && (await tx.servers.get(ctx.tenantId, id))) {
    report.rejected.push({
      providerId,
      error: { code: 'CONFLICT', message: `the id ${id} derived for it is taken by another server` },
    });
    return;
  }
  await tx.servers.create({
    ...fields,
    tenantId: ctx.tenantId,
    id,
    accountId: account.id,
    provider: account.provider,
    providerId,
  });
  report.added.push(id);
}

async function listAccount(
  ctx: CallContext,
  account: Account,
  signal?: AbortSignal,
): Promise<DiscoveryResult> {
  const adapter = ctx.runtime.adapterNamed(account.provider);
  if (!adapter?.discover)
    throw new SkippedAccount(`no adapter with discover is registered for ${account.provider}`);
  if (signal?.aborted) throw new AbortedError('discovery aborted');
  const answer = await adapter.discover.discover(account, signal ? { signal } : {});
  if (Array.isArray(answer)) return { servers: answer };
  if (typeof answer !== 'object' || answer === null || !Array.isArray(answer.servers)) {
    throw new ValidationError('DiscoveryResult', [
      { path: ['servers'], message: `adapter ${adapter.name} answered without a list of servers` },
    ]);
  }
  return answer;
}

class SkippedAccount extends Error {}

async function discoverAccount(
  ctx: CallContext,
  account: Account,
  actor: { principalId: string; kind: 'human' | 'service' },
  rule: AuditInput['rule'],
  signal: AbortSignal | undefined,
): Promise<AccountDiscovery> {
  const report = emptyReport(account.id);
  let listed: DiscoveryResult | undefined;
  try {
    listed = await listAccount(ctx, account, signal);
    for (const failure of listed.failures ?? []) {
      const region = typeof failure?.region === 'string' ? failure.region.slice(0, 64) : '(unknown)';
      report.regionFailures.push({ region, error: errorOf(failure?.error, `discovering region ${region}`) });
    }
    if (report.regionFailures.length) report.status = 'partial';
  } catch (error) {
    report.status = error instanceof SkippedAccount ? 'skipped' : 'failed';
    report.error =
      error instanceof SkippedAccount
        ? { code: 'CAPABILITY_MISSING', message: error.message }
        : errorOf(error, `discovering account ${account.id}`);
  }
  const audit = (result: 'success' | 'failure') => ({
    actor,
    action: 'inventory.discover',
    target: { type: 'account', id: account.id },
    decision: 'allow' as const,
    ...(rule ? { rule } : {}),
    result,
    ...(report.error && result === 'failure' ? { reason: report.error.message } : {}),
    details: detailsOf(report),
  });
  const event = () => {
    const announced: FleetEvents['inventory.discovered'][0] = {
      tenantId: ctx.tenantId,
      accountId: account.id,
      status: report.status,
      added: report.added.length,
      changed: report.changed.length,
      gone: report.gone.length,
      unchanged: report.unchanged.length,
      ...(report.error ? { error: report.error } : {}),
    };
    return {
      name: 'inventory.discovered' as const,
      args: [announced] as FleetEvents['inventory.discovered'],
    };
  };
  /** The webhook, in the same transaction as the servers it reports. */
  const outbox = () => ({
    eventType: 'inventory.discovered',
    payload: { tenantId: ctx.tenantId, accountId: account.id, ...detailsOf(report) },
  });
  if (listed && !report.error) {
    try {
      const { emit } = await ctx.runtime.store.transaction(async (tx) => {
        await upsertAccount(ctx, tx, account, listed, report);
        return ctx.record(tx, { audit: audit('success'), outbox: outbox(), event: event() });
      });
      emit();
      return report;
    } catch (error) {
      Object.assign(report, emptyReport(account.id), {
        status: 'failed',
        regionFailures: report.regionFailures,
        error: errorOf(error, `storing the servers of account ${account.id}`),
      });
    }
  }
  const { emit } = await ctx.record(ctx.runtime.store, {
    audit: audit(report.status === 'skipped' ? 'success' : 'failure'),
    outbox: outbox(),
    event: event(),
  });
  emit();
  return report;
}

function detailsOf(report: AccountDiscovery): Record<string, unknown> {
  return {
    status: report.status,
    added: report.added.length,
    changed: report.changed.length,
    gone: report.gone.length,
    unchanged: report.unchanged.length,
    unverified: report.unverified.length,
    rejected: report.rejected.length,
    regionFailures: report.regionFailures.map((f) => ({ region: f.region, code: f.error.code })),
    tagsDropped: report.tags.dropped,
    ...(report.error ? { code: report.error.code } : {}),
  };
}

/**
 * Discovers the servers of the tenant's accounts (or of `accountIds`), one account after the
 * other; see {@link InventoryApi.discover}.
 */
export async function discoverInventory(
  ctx: CallContext,
  options: DiscoverOptions = {},
): Promise<DiscoveryOutcome> {
  const opts = validateOptions(DiscoverOptionsSchema, options, 'DiscoverOptions');
  const ids = opts.accountIds ? [...new Set(opts.accountIds)] : undefined;
  const all = ids ? undefined : await ctx.runtime.store.accounts.listAll(ctx.tenantId);
  const targetIds = ids ?? all!.map((a) => a.id);
  const { principal, rule } = await ctx.decide(
    'inventory.discover',
    targetIds.map((id) => ({ type: 'account', id })),
    { type: 'account', id: targetIds.length === 1 ? targetIds[0]! : `${targetIds.length} accounts` },
  );
  const accounts: Account[] = all ?? [];
  for (const id of ids ?? []) {
    const account = await ctx.runtime.store.accounts.get(ctx.tenantId, id);
    if (!account) throw new NotFoundError('account', id);
    accounts.push(account);
  }
  if (opts.signal?.aborted) throw new AbortedError('discovery aborted before it started');
  const actor = { principalId: principal.id, kind: principal.kind };
  const results: AccountDiscovery[] = [];
  for (const account of accounts) {
    results.push(await discoverAccount(ctx, account, actor, rule, opts.signal));
  }
  return { accounts: results };
}
