import type { Decision } from '../authz/evaluate.js';
import type { AuditRecord, ScanResult } from '../domain/index.js';
import type { ScriptEvents } from '../sop/events.js';
import type { RunbookEvents } from '../sop/runbook.js';

/** What a ticket about a failed server or a stopped run needs. */
export interface Escalation {
  tenantId: string;
  planId: string;
  planHash: string;
  jobId: string;
  kind: 'server-failed' | 'run-stopped';
  serverId?: string;
  step?: string;
  reason: string;
  /** The end of the failing command's output, if any. */
  outputExcerpt?: string;
}

/** Typed events of a Fleet. Listeners run in-process; they must not throw. */
/** Every event on `fleet.events`, script runs' included. */
export interface FleetEvents extends ScriptEvents, RunbookEvents {
  'audit.recorded': [record: AuditRecord];
  'keys.rotation.completed': [
    event: { tenantId: string; credentialId: string; jobId: string; status: 'succeeded' | 'partial' },
  ];
  'keys.rotation.failed': [event: { tenantId: string; credentialId: string; jobId: string; reason: string }];
  'authz.denied': [decision: Decision];
  'scan.started': [event: { tenantId: string; jobId: string; total: number }];
  'scan.server.started': [event: { tenantId: string; jobId: string; serverId: string }];
  'scan.server.completed': [event: { tenantId: string; jobId: string; serverId: string; result: ScanResult }];
  'scan.server.failed': [
    event: { tenantId: string; jobId: string; serverId: string; error: { code: string; message: string } },
  ];
  'patch.run.started': [event: { tenantId: string; planId: string; jobId: string; resumed: boolean }];
  'patch.run.waiting': [
    event: { tenantId: string; planId: string; jobId: string; nextWindow: string | null },
  ];
  'patch.wave.started': [
    event: { tenantId: string; planId: string; jobId: string; wave: string; serverIds: string[] },
  ];
  'patch.server.step': [
    event: { tenantId: string; planId: string; jobId: string; serverId: string; step: string },
  ];
  'patch.server.completed': [
    event: {
      tenantId: string;
      planId: string;
      jobId: string;
      serverId: string;
      status: 'succeeded' | 'failed' | 'skipped';
      reason?: string;
    },
  ];
  'patch.run.completed': [
    event: { tenantId: string; planId: string; jobId: string; status: string; reason?: string },
  ];
  'patch.escalation': [event: Escalation];
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
