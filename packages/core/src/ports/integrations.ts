import type { Integration } from '../domain/index.js';
import type { PatchCategory, Severity } from '../domain/patch.js';

/**
 * The contracts of ticketing and email integrations.
 *
 * Core never talks to a ticketing or mail system itself. It writes what has to go out into the
 * outbox, in the same transaction as the change that caused it:
 *
 * - channel `ticket`: a scan that finds patches pending under a policy with `changeRequests`
 *   records a `ChangeRequest` and queues a {@link TicketOutboxPayload};
 * - channel `email`: `reports.emailCompliance` queues an {@link EmailOutboxPayload}.
 *
 * The message's `destinationId` is the id of the {@link Integration} entity (kind, non-secret
 * `config`, `secretRef`) it goes to. A dispatcher (`createDispatcher({ deliver: { ticket, email } })`)
 * hands each message to the `DeliveryHandler` of its channel; a channel without a handler stays
 * pending. `@fleetward/integrations` provides handlers built on the interfaces below
 * (ServiceNow, Jira Cloud, SMTP); another package may provide its own.
 *
 * Implementations make one attempt per call and never retry by themselves: retrying belongs to the
 * dispatcher, which knows the back-off and the attempt count. They fail with a `FleetwardError`
 * whose `retryable` says whether a later attempt can help, and they keep credentials out of every
 * message, property and error.
 *
 * @module
 */

/** What an integration entity is, as stored in `Integration.kind`. */
export type IntegrationKind = Integration['kind'];

/** One pending update on one server, as a change request lists it. */
export interface ChangeRequestPatch {
  /** The server's name, as a human approver knows it. */
  serverName: string;
  /** Package name. */
  name: string;
  /** `null` when the package is not installed yet (a new dependency). */
  installedVersion: string | null;
  /** The version the change installs. */
  candidateVersion: string;
  category: PatchCategory;
  severity: Severity;
}

/**
 * What a ticketing system is asked to open: a system-neutral change request, built by
 * `buildChangeRequest`. Each integration maps it onto its own fields (a ServiceNow
 * `change_request`, a Jira issue). Every string is plain text: an integration must never let it
 * be read as markup, a query or a header.
 */
export interface ChangeRequestPayload {
  /**
   * One line meant for the ticket's summary. It may still contain line breaks: integrations fold
   * them and cut the title to their field's limit.
   */
  title: string;
  /** Plain text, line breaks allowed. An integration that must cut it says so in the text. */
  description: string;
  /** The project whose servers the change is about. */
  projectId: string;
  projectName: string;
  /** Every pending update of the change, sorted by server, then by urgency. Never empty. */
  pendingPatches: ChangeRequestPatch[];
  /** Planned start, ISO 8601 with `Z` or an offset; absent when no window is planned. */
  windowStart?: string;
  /** Planned end, ISO 8601 with `Z` or an offset; after `windowStart` when both are given. */
  windowEnd?: string;
}

/** Per-call options of {@link TicketingIntegration.openChangeRequest}. */
export interface OpenChangeRequestOptions {
  /**
   * Stable across retries of one delivery: the `ChangeRequest` id, or the outbox `deliveryId`.
   * A second call with the same key must return the ticket the first one opened (with
   * `reused: true`) instead of opening another, including when the first call's answer was lost.
   * 1–256 characters without control characters.
   */
  idempotencyKey: string;
  /** Cancels the call; it then rejects with an `AbortedError`. */
  signal?: AbortSignal;
}

/** The ticket a change request was opened as. */
export interface ChangeRequestReceipt {
  /** The system's stable id (ServiceNow `sys_id`, Jira issue id), stored as `ChangeRequest.externalId`. */
  externalId: string;
  /** A link a human can open, stored as `ChangeRequest.externalUrl`. */
  externalUrl?: string;
  /** The human-facing number: ServiceNow `CHG0030001`, Jira `OPS-42`. */
  number?: string;
  /** `true` when an earlier call with the same idempotency key had already opened this ticket. */
  reused?: boolean;
}

/** A ticketing system that can open change requests. */
export interface TicketingIntegration {
  /** Which system it is; matches the `kind` of the integration entity it was built from. */
  readonly kind: 'servicenow' | 'jira';
  /**
   * Opens a change request, or returns the one already opened under the same idempotency key.
   * Makes one attempt: it never retries by itself.
   * @throws ValidationError when the idempotency key or the payload is unusable; nothing was sent.
   * @throws TransportError (retryable) when the system could not be reached, or answered with a
   *   failure that trying again can fix (5xx, 408, 429).
   * @throws TimeoutError (retryable) when the system did not answer in time.
   * @throws AbortedError when `signal` fired.
   * @throws FleetwardError (not retryable) when the system refused the request (bad credentials,
   *   missing permission, a field it rejects), or answered with something it cannot read.
   */
  openChangeRequest(
    input: ChangeRequestPayload,
    opts: OpenChangeRequestOptions,
  ): Promise<ChangeRequestReceipt>;
}

/** A file attached to an email. */
export interface EmailAttachment {
  /** The name the recipient sees; no control characters. */
  filename: string;
  /** The file's content: text as given, or bytes. */
  content: string | Buffer;
  /** MIME type, e.g. `text/csv`. */
  contentType: string;
}

/**
 * One email. Every string is data: an implementation must make sure none of it can add a header
 * or a recipient, nor make it read a file or fetch a URL.
 */
export interface EmailMessage {
  /** Recipients, one address per entry (`ops@example.com` or `Ops <ops@example.com>`). */
  to: string[];
  /** One line; line breaks are folded into spaces. */
  subject: string;
  /** Plain-text body, always sent (the HTML body, if any, is the alternative). */
  text: string;
  /** HTML alternative of `text`. */
  html?: string;
  attachments?: EmailAttachment[];
}

/** Sends emails (reports, notifications). */
export interface EmailSender {
  /**
   * Sends one message. Makes one attempt: it never retries by itself.
   * @throws ValidationError when a recipient, file name or MIME type is unusable; nothing was sent.
   * @throws TransportError (retryable) when the server could not be reached or refused for now
   *   (a 4xx reply).
   * @throws TimeoutError (retryable) when the server did not answer in time.
   * @throws AbortedError when `opts.signal` fired.
   * @throws FleetwardError (not retryable) when the server refused the login or the message.
   */
  send(message: EmailMessage, opts?: { signal?: AbortSignal }): Promise<{ messageId: string }>;
}

/**
 * The payload of an outbox message on channel `ticket`: open `request` in the system of the
 * integration named by the message's `destinationId`, then record the ticket on the change request.
 */
export interface TicketOutboxPayload {
  /**
   * The `ChangeRequest` the ticket is for. Use it as the idempotency key (it outlives the message's
   * replays), and update that record to `status: 'opened'` with the receipt's `externalId` and
   * `externalUrl` once the ticket exists.
   */
  changeRequestId: string;
  /** What to open. */
  request: ChangeRequestPayload;
}

/**
 * The payload of an outbox message on channel `email`: send `message` through the integration
 * named by the message's `destinationId`. Core queues text attachments; a store that persists
 * payloads as JSON turns a `Buffer` content into its JSON form, which a handler should turn back
 * into bytes (`Buffer.from`).
 */
export interface EmailOutboxPayload {
  /** What to send. */
  message: EmailMessage;
}
