import type { PendingPatch, ScanResult, Server } from '@fleetward/core';

export interface ServerSummary {
  id: string;
  name: string;
  os: string | null;
  scannedAt: string | null;
  status: 'succeeded' | 'failed' | 'never-scanned';
  pending: number;
  security: number;
  rebootRequired: boolean;
  error: { code: string; message: string } | null;
}

export interface PatchRow extends PendingPatch {
  serverId: string;
}

export interface Report {
  generatedAt: string;
  servers: ServerSummary[];
  patches: PatchRow[];
}

/** The report the CLI prints: a summary per server and every pending patch. */
export function buildReport(rows: { server: Server; scan: ScanResult | undefined }[], now: Date): Report {
  const servers: ServerSummary[] = [];
  const patches: PatchRow[] = [];
  for (const { server, scan } of rows) {
    const ok = scan?.status === 'succeeded';
    servers.push({
      id: server.id,
      name: server.name,
      os: (scan?.os ?? server.os)?.prettyName || null,
      scannedAt: scan?.scannedAt ?? null,
      status: scan ? scan.status : 'never-scanned',
      pending: ok ? scan.patches.length : 0,
      security: ok ? scan.patches.filter((p) => p.category === 'security').length : 0,
      rebootRequired: ok ? scan.rebootRequired : false,
      error: scan?.error ?? null,
    });
    if (ok) for (const patch of scan.patches) patches.push({ serverId: server.id, ...patch });
  }
  return { generatedAt: now.toISOString(), servers, patches };
}
