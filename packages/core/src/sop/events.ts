import type { EventEmitter } from 'eventemitter3';
import type { ScriptEvents } from '../kernel/events.js';
import type { Runtime } from '../kernel/runtime.js';

export type { ScriptEvents } from '../kernel/events.js';

/**
 * `fleet.events`, typed with the script-run events. It is the same emitter, so listeners added
 * here hear what the script workflow emits:
 * `scriptEvents(fleet).on('script.server.completed', (e) => …)`.
 */
export function scriptEvents(fleet: Pick<Runtime, 'events'>): EventEmitter<ScriptEvents> {
  // FleetEvents extends ScriptEvents; eventemitter3's types are invariant in the event map.
  return fleet.events as unknown as EventEmitter<ScriptEvents>;
}
