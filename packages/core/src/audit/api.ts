import type { KeyObject } from 'node:crypto';
import type { AuditRecord } from '../domain/index.js';
import { CapabilityMissingError } from '../errors.js';
import type { SessionInternals } from '../fleet/fleet.js';
import { enqueueEvent } from '../notify/outbox.js';
import type { AuditQuery, Store } from '../ports/store.js';
import { GENESIS_HASH } from './chain.js';
import { type AuditCheckpoint, signAuditCheckpoint } from './checkpoint.js';
import { type AuditLogVerification, exportAuditLog, verifyAuditRecords } from './export.js';
import { type AccessAuditReport, buildAccessAuditReportAsync } from './report.js';

const PAGE = 5_000;

/** Every record of the tenant up to `toSeq`, in `seq` order, a page at a time. */
export async function* auditRecords(
  store: Store,
  tenantId: string,
  toSeq = Number.MAX_SAFE_INTEGER,
): AsyncGenerator<AuditRecord> {
  let after = 0;
  for (;;) {
    const page = await store.audit.list(tenantId, { afterSeq: after, limit: PAGE });
    for (const record of page) {
      if (record.seq > toSeq) return;
      yield record;
    }
    if (page.length < PAGE) return;
    after = page.at(-1)!.seq;
  }
}

export interface VerifyAuditLogOptions {
  /** Signed checkpoints kept apart from the store (they catch truncation and a recomputed chain). */
  checkpoints?: readonly AuditCheckpoint[];
  /** Trusted checkpoint keys. @default the fleet's own signing key, when it has one */
  publicKeys?: readonly (KeyObject | string)[];
}

/** The audit log as an API: queries, verification, export and signed checkpoints. */
export function createAuditApi(internals: () => SessionInternals) {
  const trustedKeys = (ctx: SessionInternals, given?: readonly (KeyObject | string)[]) =>
    given ?? (ctx.fleet.auditSigningKey ? [ctx.fleet.auditSigningKey.publicKey] : []);

  return {
    /** The tenant's records matching `query`, in `seq` order. */
    list: (query: AuditQuery = {}): Promise<AuditRecord[]> => {
      const ctx = internals();
      return ctx.read('audit.read', [{ type: 'audit' }], { type: 'audit', id: '*' }, () =>
        ctx.fleet.store.audit.list(ctx.tenantId, query),
      );
    },

    /**
     * Checks the whole chain as stored: every record's hash, the links, no gaps or reordering,
     * and each checkpoint given (signature and the record at its `seq`). A problem names the
     * record (seq and id). Audited as a read of the log.
     */
    verify: (options: VerifyAuditLogOptions = {}): Promise<AuditLogVerification> => {
      const ctx = internals();
      return ctx.read('audit.read', [{ type: 'audit' }], { type: 'audit', id: 'verify' }, () =>
        verifyAuditRecords(auditRecords(ctx.fleet.store, ctx.tenantId), {
          tenantId: ctx.tenantId,
          ...(options.checkpoints ? { checkpoints: options.checkpoints } : {}),
          publicKeys: trustedKeys(ctx, options.publicKeys),
        }),
      );
    },

    /**
     * The log as JSON Lines for offline verification (`verifyAuditExport`), streamed: header,
     * checkpoints, then every record up to the head at the time of the call.
     */
    export: async (
      options: { checkpoints?: readonly AuditCheckpoint[] } = {},
    ): Promise<AsyncGenerator<string>> => {
      const ctx = internals();
      const store = ctx.fleet.store;
      const head = await ctx.read('audit.read', [{ type: 'audit' }], { type: 'audit', id: 'export' }, () =>
        store.audit.head(ctx.tenantId),
      );
      const at = head ? { seq: head.seq, hash: head.hash } : { seq: 0, hash: GENESIS_HASH };
      return exportAuditLog({
        tenantId: ctx.tenantId,
        records: auditRecords(store, ctx.tenantId, at.seq),
        head: at,
        exportedAt: ctx.fleet.clock.now(),
        ...(options.checkpoints ? { checkpoints: options.checkpoints } : {}),
      });
    },

    /**
     * The post-action audit of access: most common actions, scripts and denials; who accessed
     * which servers and whether that matched their roles; the keys on servers and whether they
     * are needed; last rotation per key and overdue keys. Built from the audit log (streamed),
     * the grants and requests, the newest key inventories and the rotation policies. Render it
     * with `renderAccessAuditHtml`, `renderAccessAuditCsv` or `renderAccessAuditJson`.
     */
    accessReport: (
      options: { since?: Date; until?: Date; unusedAfterDays?: number } = {},
    ): Promise<AccessAuditReport> => {
      const ctx = internals();
      const store = ctx.fleet.store;
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
          now: ctx.fleet.clock.now(),
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

    /**
     * Signs the log's head with the fleet's audit signing key and hands the checkpoint out: to the
     * caller, and as an `audit.checkpoint` webhook so another system keeps a copy. Keep
     * checkpoints away from the store: with them, truncation and a recomputed chain are caught.
     */
    checkpoint: async (): Promise<AuditCheckpoint> => {
      const ctx = internals();
      const key = ctx.fleet.auditSigningKey;
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
          const head = await tx.audit.head(ctx.tenantId);
          const checkpoint = signAuditCheckpoint(
            {
              tenantId: ctx.tenantId,
              seq: head?.seq ?? 0,
              hash: head?.hash ?? GENESIS_HASH,
              at: ctx.fleet.clock.now().toISOString(),
            },
            key.privateKey,
          );
          await enqueueEvent(tx, {
            tenantId: ctx.tenantId,
            eventType: 'audit.checkpoint',
            payload: { ...checkpoint },
            now: ctx.fleet.clock.now(),
          });
          return checkpoint;
        },
        (cp) => ({ seq: cp.seq, hash: cp.hash, keyId: cp.keyId }),
      );
    },
  };
}

export type AuditApi = ReturnType<typeof createAuditApi>;
