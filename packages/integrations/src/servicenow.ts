import {
  type ChangeRequestPayload,
  type ChangeRequestReceipt,
  type OpenChangeRequestOptions,
  ParseError,
  type TicketingIntegration,
  ValidationError,
  type ValidationIssue,
} from '@fleetward/core';
import {
  asRecord,
  callJson,
  checkIdempotencyKey,
  DEFAULT_TIMEOUT_MS,
  type FetchLike,
  fieldString,
  idempotencyTag,
  oneLine,
  parseBaseUrl,
} from './http.js';

/** Options of {@link createServiceNowIntegration}. Credentials come from the caller's SecretStore. */
export interface ServiceNowIntegrationOptions {
  /** Instance URL, e.g. `https://acme.service-now.com`. */
  baseUrl: string;
  /** Basic auth: both `username` and `password`. */
  username?: string;
  password?: string;
  /** Bearer auth (an OAuth access token), instead of username and password. */
  token?: string;
  /** `assignment_group`: the sys_id of the group. */
  assignmentGroup?: string;
  /** Change model of the Table API; default `normal`. */
  type?: 'normal' | 'standard' | 'emergency';
  /** `cmdb_ci`: the configuration item the change is about. */
  cmdbCi?: string;
  /** The `fetch` to send requests with (a proxy, a test double); default the global one. */
  fetch?: FetchLike;
  /** Per request; default 30 s. */
  timeoutMs?: number;
  /** Allow plain http to a non-loopback host (labs only: credentials travel in the clear). */
  allowInsecureHttp?: boolean;
}

// Default max_length of task.short_description and task.description; longer text is cut
// silently by the instance, which would lose the idempotency line at the end.
const SHORT_DESCRIPTION_MAX = 160;
const DESCRIPTION_MAX = 4000;
const TABLE_PATH = '/api/now/table/change_request';

/**
 * A ServiceNow date-time as the Table API reads it without `sysparm_input_display_value`:
 * `YYYY-MM-DD HH:mm:ss` in UTC (display values would be read in the API user's time zone).
 */
export function toServiceNowDateTime(value: Date | string): string {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) {
    throw new ValidationError('ChangeRequestPayload', [
      { path: ['window'], message: 'must be a valid date' },
    ]);
  }
  return date.toISOString().slice(0, 19).replace('T', ' ');
}

function remoteMessage(body: unknown): string | undefined {
  const error = asRecord(asRecord(body)?.['error']);
  const message = typeof error?.['message'] === 'string' ? error['message'] : undefined;
  const detail = typeof error?.['detail'] === 'string' ? error['detail'] : undefined;
  return message && detail ? `${message}: ${detail}` : (message ?? detail);
}

/**
 * ServiceNow through the Table API (`POST /api/now/table/change_request`).
 *
 * ServiceNow has no idempotency header, so the change carries `correlation_id` =
 * `fleetward-<hash of the idempotency key>` (and the key itself at the end of its description),
 * and every call first looks that correlation id up; a retried delivery returns the change the
 * first attempt opened. The lookup needs read access to `change_request` (role `itil` has it).
 *
 * Credentials stay in this closure: they are in no property, log line or error.
 */
export function createServiceNowIntegration(options: ServiceNowIntegrationOptions): TicketingIntegration {
  const issues: ValidationIssue[] = [];
  const hasBasic = options.username !== undefined || options.password !== undefined;
  if (hasBasic && (!options.username || !options.password)) {
    issues.push({ path: ['password'], message: 'username and password go together' });
  }
  if (hasBasic === (options.token !== undefined)) {
    issues.push({ path: ['token'], message: 'give either username and password, or a token' });
  } else if (options.token !== undefined && !options.token) {
    issues.push({ path: ['token'], message: 'must not be empty' });
  }
  if (options.username?.includes(':')) issues.push({ path: ['username'], message: 'must not contain ":"' });
  const type = options.type ?? 'normal';
  if (!['normal', 'standard', 'emergency'].includes(type)) {
    issues.push({ path: ['type'], message: 'must be normal, standard or emergency' });
  }
  if (issues.length) throw new ValidationError('ServiceNowIntegrationOptions', issues);
  const baseUrl = parseBaseUrl('ServiceNowIntegrationOptions', options.baseUrl, options.allowInsecureHttp);

  const fetchImpl = options.fetch ?? globalThis.fetch;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const secrets: string[] = [];
  let authorization: string;
  if (options.token !== undefined) {
    authorization = `Bearer ${options.token}`;
    secrets.push(options.token);
  } else {
    const encoded = Buffer.from(`${options.username}:${options.password}`, 'utf8').toString('base64');
    authorization = `Basic ${encoded}`;
    secrets.push(options.password!, encoded);
  }

  const call = (method: 'GET' | 'POST', url: string, signal: AbortSignal | undefined, body?: unknown) =>
    callJson({
      integration: 'servicenow',
      fetch: fetchImpl,
      method,
      url,
      headers: { Authorization: authorization },
      body,
      signal,
      timeoutMs,
      secrets,
      remoteMessage,
    });

  const receipt = (record: Record<string, unknown>, reused: boolean): ChangeRequestReceipt => {
    const sysId = fieldString(record['sys_id']);
    if (!sysId) {
      throw new ParseError('ServiceNow answered without result.sys_id', {
        details: { integration: 'servicenow', fields: Object.keys(record) },
      });
    }
    const out: ChangeRequestReceipt = {
      externalId: sysId,
      externalUrl: `${baseUrl}/nav_to.do?uri=${encodeURIComponent(`change_request.do?sys_id=${sysId}`)}`,
      reused,
    };
    const number = fieldString(record['number']);
    if (number) out.number = number;
    return out;
  };

  const findExisting = async (tag: string, signal?: AbortSignal) => {
    const query = new URLSearchParams({
      sysparm_query: `correlation_id=${tag}`,
      sysparm_limit: '1',
      sysparm_fields: 'sys_id,number,correlation_id',
    });
    const reply = await call('GET', `${baseUrl}${TABLE_PATH}?${query}`, signal);
    const rows = asRecord(reply)?.['result'];
    if (!Array.isArray(rows)) {
      throw new ParseError('ServiceNow answered the change_request lookup without a result list', {
        details: { integration: 'servicenow' },
      });
    }
    // An instance ignores a query on a field it cannot read and returns every row
    // (glide.invalid_query.returns_no_rows=false): only a row that really carries the tag counts.
    const row = rows.map(asRecord).find((r) => r && fieldString(r['correlation_id']) === tag);
    return row;
  };

  return {
    kind: 'servicenow',
    async openChangeRequest(input: ChangeRequestPayload, opts: OpenChangeRequestOptions) {
      checkIdempotencyKey(opts.idempotencyKey);
      const tag = idempotencyTag(opts.idempotencyKey);
      const existing = await findExisting(tag, opts.signal);
      if (existing) return receipt(existing, true);

      const keyLine = `\n\nFleetward idempotency key: ${opts.idempotencyKey}`;
      const room = DESCRIPTION_MAX - keyLine.length;
      const text =
        input.description.length <= room ? input.description : `${input.description.slice(0, room - 1)}…`;
      const body: Record<string, unknown> = {
        short_description: oneLine(input.title, SHORT_DESCRIPTION_MAX),
        description: `${text}${keyLine}`,
        type,
        correlation_id: tag,
        correlation_display: 'Fleetward',
      };
      if (options.assignmentGroup) body['assignment_group'] = options.assignmentGroup;
      if (options.cmdbCi) body['cmdb_ci'] = options.cmdbCi;
      if (input.windowStart) body['start_date'] = toServiceNowDateTime(input.windowStart);
      if (input.windowEnd) body['end_date'] = toServiceNowDateTime(input.windowEnd);

      const reply = await call('POST', `${baseUrl}${TABLE_PATH}`, opts.signal, body);
      const record = asRecord(asRecord(reply)?.['result']);
      if (!record) {
        throw new ParseError('ServiceNow answered the change_request insert without a result object', {
          details: { integration: 'servicenow' },
        });
      }
      return receipt(record, false);
    },
  };
}
