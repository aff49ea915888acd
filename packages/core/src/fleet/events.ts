import type { Decision } from '../authz/evaluate.js';
import type { AuditRecord, ScanResult } from '../domain/index.js';

/** Typed events of a Fleet. Listeners run in-process; they must not throw. */
export interface FleetEvents {
  'audit.recorded': [record: AuditRecord];
  'authz.denied': [decision: Decision];
  'scan.started': [event: { tenantId: string; jobId: string; total: number }];
  'scan.server.started': [event: { tenantId: string; jobId: string; serverId: string }];
  'scan.server.completed': [event: { tenantId: string; jobId: string; serverId: string; result: ScanResult }];
  'scan.server.failed': [
    event: { tenantId: string; jobId: string; serverId: string; error: { code: string; message: string } },
  ];
  'scan.completed': [
    event: {
      tenantId: string;
      jobId: string;
      status: string;
      total: number;
      succeeded: number;
      failed: number;
    },
  ];
}
