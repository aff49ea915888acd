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

/** Options of {@link createJiraIntegration}. The API token comes from the caller's SecretStore. */
export interface JiraIntegrationOptions {
  /** Site URL, e.g. `https://acme.atlassian.net`. */
  baseUrl: string;
  /** Account email and API token, sent as Basic auth. */
  email: string;
  apiToken: string;
  /** Project key, e.g. `OPS`. */
  projectKey: string;
  /** Issue type name; default `Task`. */
  issueType?: string;
  /** Extra labels; `fleetward` and the idempotency label are always added. */
  labels?: string[];
  /** The `fetch` to send requests with (a proxy, a test double); default the global one. */
  fetch?: FetchLike;
  /** Per request; default 30 s. */
  timeoutMs?: number;
  /** Allow plain http to a non-loopback host (labs only: credentials travel in the clear). */
  allowInsecureHttp?: boolean;
}

/** A node of the Atlassian Document Format. */
export interface AdfNode {
  /** Node type: `paragraph`, `text`, `hardBreak`, `bulletList`, `table`… */
  type: string;
  /** Type-specific attributes, e.g. a heading's `level`. */
  attrs?: Record<string, unknown>;
  /** Child nodes of a block. */
  content?: AdfNode[];
  /** The text of a `text` node; never empty. */
  text?: string;
}

/** An ADF document, as Jira REST v3 takes for rich-text fields. */
export interface AdfDoc {
  /** Always `doc`. */
  type: 'doc';
  /** Always 1, the ADF version Jira reads. */
  version: 1;
  /** The document's blocks. */
  content: AdfNode[];
}

const SUMMARY_MAX = 255;
// Jira refuses a description over 32,767 characters of stored ADF; keep a margin for the
// closing nodes added after the budget check.
const DESCRIPTION_BUDGET = 30_000;
const TABLE_COLUMNS = ['Server', 'Package', 'Installed', 'Candidate', 'Category', 'Severity'];

// ADF forbids empty text nodes, so empty strings become no node at all.
function text(value: string): AdfNode[] {
  return value ? [{ type: 'text', text: value }] : [];
}

function paragraph(lines: readonly string[]): AdfNode {
  const content: AdfNode[] = [];
  lines.forEach((line, i) => {
    if (i > 0) content.push({ type: 'hardBreak' });
    content.push(...text(line));
  });
  return { type: 'paragraph', content };
}

/**
 * Plain text as ADF blocks: blank lines separate paragraphs, line breaks inside one become
 * `hardBreak`s, and runs of `- item` lines become bullet lists. Text is only ever text nodes, so
 * markup in it (`<script>`, `*bold*`, `[link|…]`) is shown literally.
 */
export function plainTextToAdf(value: string): AdfNode[] {
  const blocks: AdfNode[] = [];
  for (const block of value.split(/(?:\r\n|\r|\n)[ \t]*(?:\r\n|\r|\n)/)) {
    const lines = block.split(/\r\n|\r|\n/).filter((l, i, all) => l.trim() || (i > 0 && i < all.length - 1));
    let run: string[] = [];
    let bullets: string[] = [];
    const flush = () => {
      if (run.length) blocks.push(paragraph(run));
      if (bullets.length) {
        blocks.push({
          type: 'bulletList',
          content: bullets.map((b) => ({ type: 'listItem', content: [paragraph([b])] })),
        });
      }
      run = [];
      bullets = [];
    };
    for (const line of lines) {
      const bullet = /^\s*[-*] (.*)$/.exec(line);
      if (bullet) {
        if (run.length) flush();
        bullets.push(bullet[1] ?? '');
      } else {
        if (bullets.length) flush();
        run.push(line);
      }
    }
    flush();
  }
  return blocks;
}

// Cell attrs are optional in ADF and left out: every byte counts against the size limit.
function cell(type: 'tableHeader' | 'tableCell', value: string): AdfNode {
  return { type, content: [paragraph([value])] };
}

const size = (node: AdfNode) => JSON.stringify(node).length;

/**
 * The Jira description of a change request: the description's paragraphs and lists, a table of
 * the pending patches, and the idempotency key. Kept under Jira's 32,767-character limit by
 * cutting the table (and, if need be, the text) with an explicit "… and N more" note.
 */
export function buildJiraDescription(input: ChangeRequestPayload, idempotencyKey: string): AdfDoc {
  const content: AdfNode[] = [];
  let used = 100;
  const blocks = plainTextToAdf(input.description);
  for (const [i, block] of blocks.entries()) {
    if (used + size(block) > DESCRIPTION_BUDGET / 2) {
      content.push(paragraph([`… (${blocks.length - i} more paragraphs cut; all patches are in the table)`]));
      break;
    }
    content.push(block);
    used += size(block);
  }

  const patches = input.pendingPatches;
  if (patches.length) {
    const heading: AdfNode = { type: 'heading', attrs: { level: 3 }, content: text('Pending patches') };
    const rows: AdfNode[] = [{ type: 'tableRow', content: TABLE_COLUMNS.map((c) => cell('tableHeader', c)) }];
    used += size(heading) + size(rows[0]!) + 200;
    let shown = 0;
    for (const p of patches) {
      const row: AdfNode = {
        type: 'tableRow',
        content: [
          p.serverName,
          p.name,
          p.installedVersion ?? '(new)',
          p.candidateVersion,
          p.category,
          p.severity,
        ].map((v) => cell('tableCell', v)),
      };
      if (used + size(row) > DESCRIPTION_BUDGET) break;
      rows.push(row);
      used += size(row);
      shown++;
    }
    content.push(heading, {
      type: 'table',
      attrs: { isNumberColumnEnabled: false, layout: 'default' },
      content: rows,
    });
    if (shown < patches.length)
      content.push(paragraph([`… and ${patches.length - shown} more pending patches.`]));
  }
  content.push(paragraph([`Fleetward idempotency key: ${idempotencyKey}`]));
  return { type: 'doc', version: 1, content };
}

function remoteMessage(body: unknown): string | undefined {
  const record = asRecord(body);
  const messages = Array.isArray(record?.['errorMessages'])
    ? (record['errorMessages'] as unknown[]).filter((m): m is string => typeof m === 'string')
    : [];
  const fields = asRecord(record?.['errors']) ?? {};
  for (const [field, message] of Object.entries(fields)) {
    if (typeof message === 'string') messages.push(`${field}: ${message}`);
  }
  return messages.length ? messages.join('; ') : undefined;
}

/**
 * Jira Cloud through REST v3 (`POST /rest/api/3/issue`, ADF description, Basic auth with an API
 * token).
 *
 * Jira has no idempotency header, so the issue carries the label `fleetward-<hash of the
 * idempotency key>` and every call first searches for it (`GET /rest/api/3/search/jql`); a retried
 * delivery returns the issue the first attempt opened. Jira's search index lags writes by a few
 * seconds, so retries should back off (the outbox does) rather than fire at once.
 *
 * Credentials stay in this closure: they are in no property, log line or error.
 */
export function createJiraIntegration(options: JiraIntegrationOptions): TicketingIntegration {
  const issues: ValidationIssue[] = [];
  if (!options.email || options.email.includes(':')) {
    issues.push({ path: ['email'], message: 'must be the account email' });
  }
  if (!options.apiToken) issues.push({ path: ['apiToken'], message: 'must not be empty' });
  // The key is quoted into JQL, so it must be a plain key.
  if (!/^[A-Za-z][A-Za-z0-9_]{0,99}$/.test(options.projectKey ?? '')) {
    issues.push({ path: ['projectKey'], message: 'must be a project key like OPS' });
  }
  const issueType = options.issueType ?? 'Task';
  if (!issueType.trim() || /\p{Cc}/u.test(issueType)) {
    issues.push({ path: ['issueType'], message: 'must be an issue type name' });
  }
  (options.labels ?? []).forEach((label, i) => {
    if (!/^\S{1,255}$/.test(label))
      issues.push({ path: ['labels', i], message: 'labels have no spaces, 1-255 chars' });
  });
  if (issues.length) throw new ValidationError('JiraIntegrationOptions', issues);
  const baseUrl = parseBaseUrl('JiraIntegrationOptions', options.baseUrl, options.allowInsecureHttp);

  const fetchImpl = options.fetch ?? globalThis.fetch;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const encoded = Buffer.from(`${options.email}:${options.apiToken}`, 'utf8').toString('base64');
  const authorization = `Basic ${encoded}`;
  const secrets = [options.apiToken, encoded];
  const projectKey = options.projectKey;

  const call = (method: 'GET' | 'POST', url: string, signal: AbortSignal | undefined, body?: unknown) =>
    callJson({
      integration: 'jira',
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

  const receipt = (issue: Record<string, unknown>, reused: boolean): ChangeRequestReceipt => {
    const id = fieldString(issue['id']);
    const key = fieldString(issue['key']);
    if (!id || !key) {
      throw new ParseError('Jira answered without an issue id and key', {
        details: { integration: 'jira', fields: Object.keys(issue) },
      });
    }
    return {
      externalId: id,
      number: key,
      externalUrl: `${baseUrl}/browse/${encodeURIComponent(key)}`,
      reused,
    };
  };

  const findExisting = async (tag: string, signal?: AbortSignal) => {
    const query = new URLSearchParams({
      jql: `project = "${projectKey}" AND labels = "${tag}" ORDER BY created ASC`,
      maxResults: '1',
      fields: 'labels',
    });
    const reply = await call('GET', `${baseUrl}/rest/api/3/search/jql?${query}`, signal);
    const found = asRecord(reply)?.['issues'];
    if (!Array.isArray(found)) {
      throw new ParseError('Jira answered the issue search without an issues list', {
        details: { integration: 'jira' },
      });
    }
    // Only an issue that really carries the label counts, whatever the search matched.
    return found.map(asRecord).find((issue) => {
      const labels = asRecord(issue?.['fields'])?.['labels'];
      return Array.isArray(labels) && labels.includes(tag);
    });
  };

  return {
    kind: 'jira',
    async openChangeRequest(input: ChangeRequestPayload, opts: OpenChangeRequestOptions) {
      checkIdempotencyKey(opts.idempotencyKey);
      const tag = idempotencyTag(opts.idempotencyKey);
      const existing = await findExisting(tag, opts.signal);
      if (existing) return receipt(existing, true);

      const body = {
        fields: {
          project: { key: projectKey },
          summary: oneLine(input.title, SUMMARY_MAX),
          issuetype: { name: issueType },
          description: buildJiraDescription(input, opts.idempotencyKey),
          labels: [...new Set([...(options.labels ?? []), 'fleetward', tag])],
        },
      };
      const reply = await call('POST', `${baseUrl}/rest/api/3/issue`, opts.signal, body);
      const issue = asRecord(reply);
      if (!issue) {
        throw new ParseError('Jira answered the issue creation without an object', {
          details: { integration: 'jira' },
        });
      }
      return receipt(issue, false);
    },
  };
}
