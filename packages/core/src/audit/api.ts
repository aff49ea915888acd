import type { KeyObject } from 'node:crypto';
import type { AuditRecord } from '../domain/index.js';
import { validateOptions } from '../domain/options.js';
import { AuditIntegrityError, CapabilityMissingError } from '../errors.js';
import type { CallContext } from '../kernel/context.js';
import type { AuditQuery, Store, StoredAuditRow } from '../ports/store.js';
import { auditRecordHash, GENESIS_HASH } from './chain.js';
import {
  type AuditCheckpoint,
  AuditCheckpointSchema,
  auditSigningKeyId,
  signAuditCheckpoint,
} from './checkpoint.js';
import { auditColumnMismatches, storedRecord } from './columns.js';
import { type AuditLogVerification, exportAuditLog, verifyStoredAuditRows } from './export.js';
import {
  AccessReportOptionsSchema,
  AuditExportOptionsSchema,
  AuditQuerySchema,
  VerifyAuditLogOptionsSchema,
} from './options.js';
import { type AccessAuditReport, buildAccessAuditReportAsync } from './report.js';

const PAGE = 5_000;

/**
 * Every stored row of the tenant up to `toSeq` (a `seq` column value), in `seq` column order, a
 * page at a time. Paging follows the column, never a record's own `seq`, so that a damaged record
 * cannot make the reader go back or stop early.
 */
export async function* auditRows(
  store: Store,
  tenantId: string,
  toSeq = Number.MAX_SAFE_INTEGER,
): AsyncGenerator<StoredAuditRow> {
  let after = 0;
  for (;;) {
    const page = await store.audit.rows(tenantId, { afterSeq: after, limit: PAGE });
    for (const row of page) {
      if (row.columns.seq > toSeq) return;
      yield row;
    }
    if (page.length < PAGE) return;
    after = page.at(-1)!.columns.seq;
  }
}

/**
 * Every record of the tenant up to `toSeq`, in `seq` order, a page at a time. A stored row that
 * holds no record object, or another tenant's record (its `tenant_id` column edited), is skipped
 * here: verification names it, and another tenant's record is never handed out.
 */
export async function* auditRecords(
  store: Store,
  tenantId: string,
  toSeq = Number.MAX_SAFE_INTEGER,
): AsyncGenerator<AuditRecord> {
  for await (const row of auditRows(store, tenantId, toSeq)) {
    const record = storedRecord(row);
    if (record && record.tenantId === tenantId) yield record;
  }
}

/** The action and target of the audit record that {@link AuditApi.checkpoint} leaves behind. */
const CHECKPOINT_TARGET = { type: 'audit', id: 'checkpoint' } as const;

/**
 * The signed checkpoints the log itself holds: each `audit.checkpoint()` call records the one it
 * signed (details `seq`, `hash`, `at`, `keyId`, `signature`). Found through the hashed records,
 * so an edited column can neither hide nor invent one.
 */
export async function storedAuditCheckpoints(store: Store, tenantId: string): Promise<AuditCheckpoint[]> {
  const out: AuditCheckpoint[] = [];
  let afterSeq = 0;
  for (;;) {
    const page = await store.audit.list(tenantId, { action: 'audit.read', afterSeq, limit: PAGE });
    for (const r of page) {
      if (r.target?.type !== CHECKPOINT_TARGET.type || r.target.id !== CHECKPOINT_TARGET.id) continue;
      if (r.result !== 'success') continue;
      const parsed = AuditCheckpointSchema.safeParse({ ...r.details, tenantId });
      if (parsed.success) out.push(parsed.data);
    }
    if (page.length < PAGE) return out;
    afterSeq = page.at(-1)!.seq;
  }
}

/** Options of `audit.verify`. */
export interface VerifyAuditLogOptions {
  /** Signed checkpoints kept apart from the store (they catch truncation and a recomputed chain). */
  checkpoints?: readonly AuditCheckpoint[];
  /** Trusted checkpoint keys. @default the fleet's own signing key, when it has one */
  publicKeys?: readonly (KeyObject | string)[];
  /**
   * Also check the checkpoints recorded in the log by `audit.checkpoint()` that are signed by a
   * trusted key (others there are ignored: they prove nothing either way). They catch a rewrite
   * that leaves them in place, not one that removes them: keep copies apart. @default true
   */
  storedCheckpoints?: boolean;
  /** Report `missing-checkpoint` when no checkpoint (given or stored) verifies. @default false */
  requireCheckpoint?: boolean;
}

/** Options of `audit.export`. */
export interface AuditExportOptions {
  /** Signed checkpoints to put in the file, so that offline verification checks them too. */
  checkpoints?: readonly AuditCheckpoint[];
}

/** Options of `audit.accessReport`. */
export interface AccessReportOptions {
  /** Only records (and timed sshd logins) at or after this instant. @default the log's start */
  since?: Date;
  /** Only records (and timed sshd logins) before this instant. @default now */
  until?: Date;
  /** A key not used for this many days counts as unused. @default 90 */
  unusedAfterDays?: number;
}

/**
 * The audit log of a session's tenant (`fleet.as(actor).audit`). Every call needs `audit.read`
 * and is itself audited: who looked at the log is an audit question too.
 */
export interface AuditApi {
  /**
   * The tenant's records matching `query`, in `seq` order.
   * @throws ValidationError for a bad query; AuthorizationError.
   */
  list(query?: AuditQuery): Promise<AuditRecord[]>;
  /**
   * Checks the whole chain as stored: every record's hash, the links, no gaps or reordering, and
   * each checkpoint given or stored (signature and the record at its `seq`). A problem names the
   * record (seq and id); problems are reported in the result, not thrown.
   * @throws ValidationError for bad options; AuthorizationError.
   */
  verify(options?: VerifyAuditLogOptions): Promise<AuditLogVerification>;
  /**
   * The log as JSON Lines for offline verification (`verifyAuditExport`), streamed: header,
   * checkpoints, then every stored row up to the head at the time of the call, damaged ones
   * included (so that verification of the file shows them).
   * @throws ValidationError for bad options; AuthorizationError.
   */
  export(options?: AuditExportOptions): Promise<AsyncGenerator<string>>;
  /**
   * The post-action audit of access: most common actions, scripts and denials; who accessed which
   * servers and whether that matched their roles; the keys on servers and whether they are needed;
   * last rotation per key and overdue keys. Built from the audit log (streamed), the grants and
   * requests, the newest key inventories and the rotation policies. Render it with
   * `renderAccessAuditHtml`, `renderAccessAuditCsv` or `renderAccessAuditJson`.
   * @throws ValidationError for bad options; AuthorizationError.
   */
  accessReport(options?: AccessReportOptions): Promise<AccessAuditReport>;
  /**
   * Signs the log's head with the fleet's audit signing key and hands the checkpoint out: to the
   * caller, into the log (its audit record holds the whole checkpoint, where `verify` finds it),
   * and as an `audit.checkpoint` webhook so another system keeps a copy. Keep checkpoints away from
   * the store: with them, truncation and a recomputed chain are caught.
   * @throws CapabilityMissingError without `auditSigningKey`; AuditIntegrityError when the head
   * record is damaged (nothing is signed over it); AuthorizationError.
   */
  checkpoint(): Promise<AuditCheckpoint>;
}

const HEX_HASH = /^[a-f0-9]{64}$/;

/** The hash a head row stands for: its record's, else its column's (verification names the damage). */
function headHash(row: StoredAuditRow): string {
  const recorded = storedRecord(row)?.hash;
  if (typeof recorded === 'string' && HEX_HASH.test(recorded)) return recorded;
  return HEX_HASH.test(row.columns.hash) ? row.columns.hash : GENESIS_HASH;
}

/**
 * The head record, when it can be vouched for: a checkpoint signs the head, so a forged or edited
 * last row must stop it rather than be signed into something that looks trustworthy.
 * @throws AuditIntegrityError naming the row and what is wrong with it.
 */
function intactHead(tenantId: string, row: StoredAuditRow | undefined): AuditRecord | undefined {
  if (!row) return undefined;
  const record = storedRecord(row);
  const why = !record
    ? 'it holds no record'
    : auditColumnMismatches(row).length
      ? `its columns ${auditColumnMismatches(row)
          .map((m) => m.column)
          .join(', ')} disagree with its record`
      : auditRecordHash(record) !== record.hash
        ? 'its hash does not match its content'
        : undefined;
  if (!why) return record;
  throw new AuditIntegrityError(
    `audit log head of tenant ${JSON.stringify(tenantId)} is damaged: row ${row.columns.seq} (id ${row.columns.id}) ${why}; run audit verify. No checkpoint is signed over it.`,
    { details: { tenantId, seq: row.columns.seq, id: row.columns.id } },
  );
}

/** Creates the audit module on a session's call context. */
export function createAuditApi(internals: () => CallContext): AuditApi {
  const trustedKeys = (ctx: CallContext, given?: readonly (KeyObject | string)[]) =>
    given ?? (ctx.runtime.auditSigningKey ? [ctx.runtime.auditSigningKey.publicKey] : []);

  return {
    list: async (query: AuditQuery = {}): Promise<AuditRecord[]> => {
      validateOptions(AuditQuerySchema, query, 'AuditQuery');
      const ctx = internals();
      return ctx.read('audit.read', [{ type: 'audit' }], { type: 'audit', id: '*' }, () =>
        ctx.runtime.store.audit.list(ctx.tenantId, query),
      );
    },

    verify: async (options: VerifyAuditLogOptions = {}): Promise<AuditLogVerification> => {
      validateOptions(VerifyAuditLogOptionsSchema, options, 'VerifyAuditLogOptions');
      const ctx = internals();
      return ctx.read('audit.read', [{ type: 'audit' }], { type: 'audit', id: 'verify' }, async () => {
        const store = ctx.runtime.store;
        const publicKeys = trustedKeys(ctx, options.publicKeys);
        const trustedIds = new Set(publicKeys.map((k) => auditSigningKeyId(k)));
        const given = options.checkpoints ?? [];
        // A checkpoint given that the log also records counts once.
        const seen = new Set(given.map((cp) => cp.signature));
        const stored =
          options.storedCheckpoints === false || trustedIds.size === 0
            ? []
            : (await storedAuditCheckpoints(store, ctx.tenantId)).filter(
                (cp) => trustedIds.has(cp.keyId) && !seen.has(cp.signature),
              );
        return verifyStoredAuditRows(auditRows(store, ctx.tenantId), {
          tenantId: ctx.tenantId,
          checkpoints: [...given, ...stored],
          publicKeys,
          ...(options.requireCheckpoint ? { requireCheckpoint: true } : {}),
        });
      });
    },

    export: async (options: AuditExportOptions = {}): Promise<AsyncGenerator<string>> => {
      validateOptions(AuditExportOptionsSchema, options, 'AuditExportOptions');
      const ctx = internals();
      const store = ctx.runtime.store;
      const head = await ctx.read('audit.read', [{ type: 'audit' }], { type: 'audit', id: 'export' }, () =>
        store.audit.headRow(ctx.tenantId),
      );
      const at = head ? { seq: head.columns.seq, hash: headHash(head) } : { seq: 0, hash: GENESIS_HASH };
      return exportAuditLog({
        tenantId: ctx.tenantId,
        // Faithful: every stored row as it is, so that a damaged log shows up when the file is
        // verified; except another tenant's record, which is never handed out (its absence shows).
        records: (async function* () {
          for await (const row of auditRows(store, ctx.tenantId, at.seq)) {
            const tenant = storedRecord(row)?.tenantId;
            if (tenant !== undefined && tenant !== ctx.tenantId) continue;
            yield (row.record ?? null) as AuditRecord;
          }
        })(),
        head: at,
        exportedAt: ctx.runtime.clock.now(),
        ...(options.checkpoints ? { checkpoints: options.checkpoints } : {}),
      });
    },

    accessReport: async (options: AccessReportOptions = {}): Promise<AccessAuditReport> => {
      validateOptions(AccessReportOptionsSchema, options, 'AccessReportOptions');
      const ctx = internals();
      const store = ctx.runtime.store;
      const t = ctx.tenantId;
      return ctx.read('audit.read', [{ type: 'audit' }], { type: 'audit', id: 'access-report' }, async () => {
        const [
          tenant,
          principals,
          servers,
          credentials,
          grants,
          requests,
          inventories,
          rotationPolicies,
          projects,
          roles,
          bindings,
        ] = await Promise.all([
          store.tenants.get(t, t),
          store.principals.listAll(t),
          store.servers.listAll(t),
          store.credentials.listAll(t),
          store.accessGrants.listAll(t),
          store.accessRequests.listAll(t),
          store.keyInventories.listAll(t),
          store.keyRotationPolicies.listAll(t),
          store.projects.listAll(t),
          store.roles.listAll(t),
          store.roleBindings.listAll(t),
        ]);
        return buildAccessAuditReportAsync({
          tenantId: t,
          ...(tenant ? { tenantName: tenant.name } : {}),
          now: ctx.runtime.clock.now(),
          ...(options.since ? { since: options.since } : {}),
          ...(options.until ? { until: options.until } : {}),
          ...(options.unusedAfterDays !== undefined ? { unusedAfterDays: options.unusedAfterDays } : {}),
          records: auditRecords(store, t),
          principals,
          servers,
          credentials,
          grants,
          requests,
          inventories,
          rotationPolicies,
          projects,
          roles,
          bindings,
        });
      });
    },

    checkpoint: async (): Promise<AuditCheckpoint> => {
      const ctx = internals();
      const key = ctx.runtime.auditSigningKey;
      if (!key) {
        throw new CapabilityMissingError(
          'audit checkpoints need a signing key: createFleet({ auditSigningKey })',
        );
      }
      return ctx.write(
        'audit.read',
        [{ type: 'audit' }],
        { type: 'audit', id: 'checkpoint' },
        async (tx) => {
          const head = intactHead(ctx.tenantId, await tx.audit.headRow(ctx.tenantId));
          const checkpoint = signAuditCheckpoint(
            {
              tenantId: ctx.tenantId,
              seq: head?.seq ?? 0,
              hash: head?.hash ?? GENESIS_HASH,
              at: ctx.runtime.clock.now().toISOString(),
            },
            key.privateKey,
          );
          await ctx.record(tx, { outbox: { eventType: 'audit.checkpoint', payload: { ...checkpoint } } });
          return checkpoint;
        },
        // The whole signed checkpoint goes into the log, so that verification finds it there.
        (cp) => ({ seq: cp.seq, hash: cp.hash, at: cp.at, keyId: cp.keyId, signature: cp.signature }),
      );
    },
  };
}
