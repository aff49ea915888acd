import { type FleetwardErrorOptions, TransportError } from '@fleetward/core';
import type { WsmanFault } from './wsman.js';

/**
 * The WinRM service answered with a SOAP fault: `wsmanCode` is the `WSManFault Code` (e.g.
 * `2150858770` for an unknown shell) and `subcode` the SOAP subcode, when the service gave them.
 */
export class WsmanFaultError extends TransportError {
  readonly wsmanCode: string | undefined;
  readonly subcode: string | undefined;

  constructor(message: string, fault: WsmanFault, options: FleetwardErrorOptions = {}) {
    super(message, {
      retryable: false,
      ...options,
      details: { ...options.details, wsmanCode: fault.code, subcode: fault.subcode, fault: fault.message },
    });
    this.wsmanCode = fault.code;
    this.subcode = fault.subcode;
  }
}
