import {
  FleetwardError,
  type FleetwardErrorCode,
  type FleetwardErrorOptions,
  type IntegrationKind,
} from '@fleetward/core';

/** Extra options of {@link IntegrationError}. */
export interface IntegrationErrorOptions extends FleetwardErrorOptions {
  /** The system that refused. */
  integration: IntegrationKind;
  /** HTTP status (or SMTP reply code) when the remote system answered. */
  status?: number;
  /** The start of the remote answer, with credentials removed. */
  bodyExcerpt?: string;
}

/**
 * A ticketing or mail system answered, and refused. Not retryable unless said otherwise: the same
 * request would be refused again. Failures where trying again can help (5xx, 429, network,
 * time-outs) are `TransportError`s / `TimeoutError`s instead, with the same `details`.
 *
 * Core's `errors.ts` has no integration-specific code, so the closest existing one is used:
 * `UNAUTHORIZED` (401, bad SMTP login), `FORBIDDEN` (403) and `COMMAND_FAILED` for every other
 * refusal ("the remote system ran our request and said no"), as a failed package-manager run does.
 */
export class IntegrationError extends FleetwardError {
  /** Which system refused. */
  readonly integration: IntegrationKind;
  /** The HTTP status or SMTP reply code of the refusal, when there was an answer. */
  readonly status: number | undefined;
  /** The start of the remote answer, scrubbed of credentials; empty when there was none. */
  readonly bodyExcerpt: string;

  constructor(code: FleetwardErrorCode, message: string, options: IntegrationErrorOptions) {
    const { integration, status, bodyExcerpt = '', ...rest } = options;
    super(code, message, {
      fault: 'caller',
      ...rest,
      details: { integration, status, bodyExcerpt, ...rest.details },
    });
    this.integration = integration;
    this.status = status;
    this.bodyExcerpt = bodyExcerpt;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), integration: this.integration, status: this.status };
  }
}
