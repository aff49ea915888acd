import type { EventEmitter } from 'eventemitter3';
import type { Fleet } from '../fleet/fleet.js';

/** Typed events of script runs, emitted on `fleet.events` (see {@link scriptEvents}). */
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

/**
 * `fleet.events`, typed with the script-run events. It is the same emitter, so listeners added
 * here hear what the script workflow emits:
 * `scriptEvents(fleet).on('script.server.completed', (e) => …)`.
 */
export function scriptEvents(fleet: Fleet): EventEmitter<ScriptEvents> {
  // FleetEvents extends ScriptEvents; eventemitter3's types are invariant in the event map.
  return fleet.events as unknown as EventEmitter<ScriptEvents>;
}
