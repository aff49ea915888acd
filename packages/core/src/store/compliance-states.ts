import {
  type ComplianceState,
  complianceStateOf,
  stateServerOf,
  withScan,
} from '../domain/compliance-state.js';
import type { EntityKind, ScanResult, Server } from '../domain/index.js';
import { ValidationError } from '../errors.js';
import type { BackendSession, ComplianceStateChanges, ComplianceStates } from '../ports/store.js';

const MAX_LIMIT = 10_000;

type Run = <T>(fn: (session: BackendSession) => Promise<T>) => Promise<T>;

/** Whether writes of `kind` change a server's compliance state. */
export const tracksComplianceState = (kind: EntityKind): boolean =>
  kind === 'servers' || kind === 'scanResults';

async function scansOf(s: BackendSession, tenantId: string, serverId: string): Promise<ScanResult[]> {
  const out: ScanResult[] = [];
  let after: string | undefined;
  for (;;) {
    const rows = await s.listRows('scanResults', tenantId, {
      where: { serverId },
      ...(after !== undefined ? { after } : {}),
      limit: MAX_LIMIT,
    });
    for (const row of rows) out.push(row.data as unknown as ScanResult);
    if (rows.length < MAX_LIMIT) return out;
    after = rows[rows.length - 1]!.id;
  }
}

async function store(s: BackendSession, tenantId: string, state: ComplianceState): Promise<void> {
  if (!state.server && !state.succeeded && !state.attempt)
    await s.deleteComplianceState(tenantId, state.serverId);
  else await s.putComplianceState(tenantId, state);
}

/** Builds one server's state again from its server row and every one of its scans. */
export async function rebuildComplianceState(
  s: BackendSession,
  tenantId: string,
  serverId: string,
): Promise<void> {
  const server = (await s.getRow('servers', tenantId, serverId))?.data as unknown as Server | undefined;
  await store(s, tenantId, complianceStateOf(serverId, server, await scansOf(s, tenantId, serverId)));
}

/**
 * Brings the compliance state of the server concerned up to date after a write of a server or a
 * scan result (`entity` is what was written, absent for a delete; `previous` what was replaced).
 * Runs in the write's own session, so both commit together. A recorded scan is merged into the
 * state (it replaces the latest attempt or success only when newer); a changed or deleted scan, or
 * a state that is missing, is rebuilt from the server's scans.
 */
export async function keepComplianceState(
  s: BackendSession,
  kind: EntityKind,
  tenantId: string,
  entity: Record<string, unknown> | undefined,
  previous?: Record<string, unknown>,
): Promise<void> {
  if (kind === 'servers') {
    const serverId = (entity ?? previous)!['id'] as string;
    const state = await s.getComplianceState(tenantId, serverId);
    if (!state) {
      if (entity) await rebuildComplianceState(s, tenantId, serverId);
      return;
    }
    const { server: _, ...rest } = state;
    await store(s, tenantId, entity ? { ...rest, server: stateServerOf(entity as unknown as Server) } : rest);
    return;
  }
  if (kind !== 'scanResults') return;
  const scan = entity as unknown as ScanResult | undefined;
  if (scan && !previous) {
    const state = await s.getComplianceState(tenantId, scan.serverId);
    if (state) await store(s, tenantId, withScan(state, scan));
    else await rebuildComplianceState(s, tenantId, scan.serverId);
    return;
  }
  const ids = new Set([scan?.serverId, previous?.['serverId'] as string | undefined]);
  for (const serverId of ids) if (serverId !== undefined) await rebuildComplianceState(s, tenantId, serverId);
}

function checkTenant(tenantId: unknown): asserts tenantId is string {
  if (typeof tenantId !== 'string' || tenantId.length === 0) {
    throw new ValidationError('complianceStates', [{ path: ['tenantId'], message: 'is required' }]);
  }
}

/** The read side of the states, on a scope's runner. */
export class StoredComplianceStates implements ComplianceStates {
  readonly #run: Run;

  constructor(run: Run) {
    this.#run = run;
  }

  async get(tenantId: string, serverId: string): Promise<ComplianceState | undefined> {
    checkTenant(tenantId);
    if (typeof serverId !== 'string' || serverId.length === 0) {
      throw new ValidationError('complianceStates', [
        { path: ['serverId'], message: 'must be a non-empty string' },
      ]);
    }
    return this.#run((s) => s.getComplianceState(tenantId, serverId));
  }

  async list(tenantId: string, options: { after?: string; limit?: number } = {}): Promise<ComplianceState[]> {
    checkTenant(tenantId);
    const limit = options.limit ?? 1000;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      throw new ValidationError('complianceStates.list', [
        { path: ['limit'], message: `must be an integer from 1 to ${MAX_LIMIT}` },
      ]);
    }
    const after = options.after;
    return this.#run((s) =>
      s.listComplianceStates(tenantId, { ...(after !== undefined ? { after } : {}), limit }),
    );
  }

  async getMany(tenantId: string, serverIds: readonly string[]): Promise<ComplianceState[]> {
    checkTenant(tenantId);
    if (
      !Array.isArray(serverIds) ||
      serverIds.length > MAX_LIMIT ||
      serverIds.some((id) => typeof id !== 'string' || id.length === 0)
    ) {
      throw new ValidationError('complianceStates.getMany', [
        { path: ['serverIds'], message: `must be at most ${MAX_LIMIT} non-empty strings` },
      ]);
    }
    if (serverIds.length === 0) return [];
    const ids = [...new Set(serverIds)];
    return this.#run(async (s) => {
      if (s.getComplianceStates) return s.getComplianceStates(tenantId, ids);
      const out: ComplianceState[] = [];
      for (const id of ids) {
        const state = await s.getComplianceState(tenantId, id);
        if (state) out.push(state);
      }
      return out;
    });
  }

  async changes(tenantId: string, since?: string): Promise<ComplianceStateChanges | undefined> {
    checkTenant(tenantId);
    if (since !== undefined && (typeof since !== 'string' || since.length === 0 || since.length > 64)) {
      throw new ValidationError('complianceStates.changes', [
        { path: ['since'], message: 'must be a cursor from an earlier answer' },
      ]);
    }
    return this.#run(async (s) =>
      s.complianceStateChanges ? s.complianceStateChanges(tenantId, since) : undefined,
    );
  }

  async listAll(tenantId: string): Promise<ComplianceState[]> {
    const out: ComplianceState[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.list(tenantId, { ...(after !== undefined ? { after } : {}), limit: MAX_LIMIT });
      for (const state of page) out.push(state);
      if (page.length < MAX_LIMIT) return out;
      after = page[page.length - 1]!.serverId;
    }
  }
}
