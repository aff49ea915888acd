import type { Decision } from '../authz/evaluate.js';
import type { AuditRecord, ScanResult } from '../domain/index.js';
import type { RunbookRunStatus, RunbookStepKind } from '../domain/runbook.js';

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

/** Every event on `fleet.events`, script runs' included. */
export interface FleetEvents extends ScriptEvents, RunbookEvents {
  'audit.recorded': [record: AuditRecord];
  'keys.rotation.completed': [
    event: { tenantId: string; credentialId: string; jobId: string; status: 'succeeded' | 'partial' },
  ];
  'keys.rotation.failed': [event: { tenantId: string; credentialId: string; jobId: string; reason: string }];
  /** One server of `keys.inventory` read (or not): for progress while the rest are read. */
  'keys.inventory.server.completed': [
    event: {
      tenantId: string;
      serverId: string;
      status: 'succeeded' | 'failed';
      keys: number;
      error?: { code: string; message: string };
    },
  ];
  'authz.denied': [decision: Decision];
  /** One account discovered (or not): its ids by outcome, as `inventory.discover` reports them. */
  'inventory.discovered': [
    event: {
      tenantId: string;
      accountId: string;
      status: 'succeeded' | 'partial' | 'failed' | 'skipped';
      added: number;
      changed: number;
      gone: number;
      unchanged: number;
      error?: { code: string; message: string };
    },
  ];
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

/** Typed events of script runs, emitted on `fleet.events` (see `scriptEvents`). */
export interface ScriptEvents {
  'script.run.started': [
    event: {
      tenantId: string;
      runId: string;
      jobId: string;
      scriptName: string;
      contentHash: string;
      resumed: boolean;
    },
  ];
  'script.wave.started': [
    event: { tenantId: string; runId: string; jobId: string; wave: string; serverIds: string[] },
  ];
  'script.server.started': [event: { tenantId: string; runId: string; jobId: string; serverId: string }];
  'script.server.completed': [
    event: {
      tenantId: string;
      runId: string;
      jobId: string;
      serverId: string;
      status: 'succeeded' | 'failed' | 'cancelled';
      exitCode: number | null;
      reason?: string;
    },
  ];
  'script.run.completed': [
    event: {
      tenantId: string;
      runId: string;
      jobId: string;
      scriptName: string;
      contentHash: string;
      status: string;
      reason?: string;
    },
  ];
}

/** Typed events of runbook runs, emitted on `fleet.events`. */
export interface RunbookEvents {
  'runbook.run.started': [
    event: { tenantId: string; runId: string; runbook: string; contentHash: string; resumed: boolean },
  ];
  'runbook.step.started': [
    event: {
      tenantId: string;
      runId: string;
      stepId: string;
      kind: RunbookStepKind;
      index: number;
      /** 2 and more when a resume entered the step again. */
      attempt: number;
    },
  ];
  /** A wait step is waiting until `until` (on the Fleet's clock). */
  'runbook.step.waiting': [
    event: { tenantId: string; runId: string; stepId: string; until: string; remainingMs: number },
  ];
  'runbook.step.approved': [
    event: {
      tenantId: string;
      runId: string;
      stepId: string;
      principalId: string;
      approvals: number;
      required: number;
    },
  ];
  'runbook.step.completed': [
    event: {
      tenantId: string;
      runId: string;
      stepId: string;
      kind: RunbookStepKind;
      status: 'succeeded' | 'failed';
      error?: { code: string; message: string };
    },
  ];
  /** The call returned with the run paused: awaiting approval, or waiting (`returnWhenWaiting`). */
  'runbook.run.paused': [
    event: {
      tenantId: string;
      runId: string;
      stepId: string;
      status: 'awaiting-approval' | 'waiting';
      until?: string;
    },
  ];
  'runbook.run.completed': [
    event: {
      tenantId: string;
      runId: string;
      runbook: string;
      contentHash: string;
      status: RunbookRunStatus;
      reason?: string;
    },
  ];
}
