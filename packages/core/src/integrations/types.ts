import type { PatchCategory, Severity } from '../domain/patch.js';
import { FleetwardError, type FleetwardErrorCode, type FleetwardErrorOptions } from '../errors.js';

/** Which kind of integration, as stored in `Integration.kind`. */
export type IntegrationKind = 'servicenow' | 'jira' | 'smtp';

/** One pending update on one server, as a change request lists it. */
export interface ChangeRequestPatch {
  serverName: string;
  /** Package name. */
  name: string;
  /** `null` when the package is not installed yet (a new dependency). */
  installedVersion: string | null;
  candidateVersion: string;
  category: PatchCategory;
  severity: Severity;
}

/**
 * What a ticketing system is asked to open: a system-neutral change request. Each integration
 * maps it onto its own fields (ServiceNow `change_request`, a Jira issue with an ADF description).
 * Every string is plain text; integrations never interpret it as markup.
 */
export interface ChangeRequestPayload {
  /** One line; integrations fold line breaks and cut it to their field's limit. */
  title: string;
  /** Plain text, line breaks allowed. */
  description: string;
  projectId: string;
  projectName: string;
  pendingPatches: ChangeRequestPatch[];
  /** Planned start, ISO 8601 with `Z` or an offset. */
  windowStart?: string;
  /** Planned end, ISO 8601 with `Z` or an offset. */
  windowEnd?: string;
}

/** Per-call options of {@link TicketingIntegration.openChangeRequest}. */
export interface OpenChangeRequestOptions {
  /**
   * Stable across retries of one delivery (the outbox `deliveryId`, or the ChangeRequest id). A
   * second call with the same key returns the ticket the first one opened instead of a new one.
   */
  idempotencyKey: string;
  signal?: AbortSignal;
}

/** The ticket a change request was opened as. */
export interface ChangeRequestReceipt {
  /** The system's stable id: ServiceNow `sys_id`, Jira issue id. */
  externalId: string;
  /** A link a human can open. */
  externalUrl?: string;
  /** The human-facing number: ServiceNow `CHG0030001`, Jira `OPS-42`. */
  number?: string;
  /** `true` when an earlier call with the same idempotency key had already opened this ticket. */
  reused?: boolean;
}

/** A ticketing system that can open change requests. */
export interface TicketingIntegration {
  readonly kind: 'servicenow' | 'jira';
  /**
   * Opens a change request, or returns the one already opened under the same idempotency key.
   * Makes one attempt: it never retries by itself. Failures are FleetwardErrors whose `retryable`
   * tells the caller (the outbox dispatcher) whether trying again later can help.
   */
  openChangeRequest(
    input: ChangeRequestPayload,
    opts: OpenChangeRequestOptions,
  ): Promise<ChangeRequestReceipt>;
}

/** A file attached to an email. */
export interface EmailAttachment {
  filename: string;
  content: string | Buffer;
  /** MIME type, e.g. `text/csv`. */
  contentType: string;
}

/** One email. Every string is data: none of it can add headers or recipients. */
export interface EmailMessage {
  to: string[];
  subject: string;
  /** Plain-text body, always sent (the HTML body, if any, is the alternative). */
  text: string;
  html?: string;
  attachments?: EmailAttachment[];
}

/** Sends emails (reports, notifications). */
export interface EmailSender {
  /** Sends one message; one attempt, failures carry `retryable` as for ticketing. */
  send(message: EmailMessage, opts?: { signal?: AbortSignal }): Promise<{ messageId: string }>;
}

/** Extra options of {@link IntegrationError}. */
export interface IntegrationErrorOptions extends FleetwardErrorOptions {
  integration: IntegrationKind;
  /** HTTP status (or SMTP reply code) when the remote system answered. */
  status?: number;
  /** The start of the remote answer, with credentials removed. */
  bodyExcerpt?: string;
}

/**
 * A ticketing or mail system answered, and refused. Not retryable unless said otherwise: the same
 * request would be refused again. Failures where trying again can help (5xx, 429, network,
 * time-outs) are {@link TransportError}s / {@link TimeoutError}s instead, with the same `details`.
 *
 * `errors.ts` has no integration-specific code, so the closest existing one is used: `UNAUTHORIZED`
 * (401, bad SMTP login), `FORBIDDEN` (403) and `COMMAND_FAILED` for every other refusal ("the
 * remote system ran our request and said no"), as a failed package-manager run does.
 */
export class IntegrationError extends FleetwardError {
  readonly integration: IntegrationKind;
  readonly status: number | undefined;
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
