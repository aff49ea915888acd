import { type ChangeRequestPayload, TransportError, ValidationError } from '@fleetward/core';
import {
  type AdfNode,
  buildJiraDescription,
  createJiraIntegration,
  IntegrationError,
  idempotencyTag,
  plainTextToAdf,
} from '@fleetward/integrations';
import { afterEach, describe, expect, it } from 'vitest';
import {
  errorSurface,
  type FakeReply,
  type FakeServer,
  type RecordedRequest,
  startFakeHttp,
} from './fake-http.js';

const EMAIL = 'ops-bot@example.com';
const TOKEN = 'ATATT3xFfGF0-secret-api-token';
const BASIC = `Basic ${Buffer.from(`${EMAIL}:${TOKEN}`).toString('base64')}`;

const payload: ChangeRequestPayload = {
  title: 'Patch web: 2 updates on 2 servers (1 security)',
  description:
    'Fleetward requests a change.\n\nSummary: 2 updates.\nBy category: security 1, bugfix 1\n\nweb-1:\n- openssl 3.0.11 -> 3.0.13',
  projectId: 'proj-web',
  projectName: 'web',
  pendingPatches: [
    {
      serverName: 'web-1',
      name: 'openssl',
      installedVersion: '3.0.11',
      candidateVersion: '3.0.13',
      category: 'security',
      severity: 'important',
    },
    {
      serverName: 'web-2',
      name: 'libfoo',
      installedVersion: null,
      candidateVersion: '1.2',
      category: 'bugfix',
      severity: 'unspecified',
    },
  ],
};

/**
 * Checks a document against the ADF rules Jira enforces for what we emit: `doc` v1 at the root,
 * block nodes at the top, only known keys, no empty text nodes, tables built from rows of
 * header/data cells holding paragraphs, lists built from list items starting with a paragraph.
 */
function assertValidAdf(doc: unknown): void {
  const fail = (path: string, why: string): never => {
    throw new Error(`invalid ADF at ${path}: ${why}`);
  };
  const keys = (node: object, allowed: string[], path: string) => {
    for (const k of Object.keys(node)) if (!allowed.includes(k)) fail(path, `unexpected key ${k}`);
  };
  const inline = (node: AdfNode, path: string) => {
    if (node.type === 'text') {
      keys(node, ['type', 'text'], path);
      if (typeof node.text !== 'string' || node.text.length === 0)
        fail(path, 'text must be a non-empty string');
    } else if (node.type === 'hardBreak') {
      keys(node, ['type'], path);
    } else fail(path, `inline node ${node.type} not allowed`);
  };
  const block = (node: AdfNode, path: string): void => {
    const content = node.content ?? [];
    if (!Array.isArray(content)) fail(path, 'content must be an array');
    const children = content.entries();
    switch (node.type) {
      case 'paragraph':
        keys(node, ['type', 'content'], path);
        for (const [i, c] of children) inline(c, `${path}.${i}`);
        return;
      case 'heading': {
        keys(node, ['type', 'attrs', 'content'], path);
        const level = node.attrs?.['level'];
        if (typeof level !== 'number' || level < 1 || level > 6) fail(path, 'heading level 1-6');
        for (const [i, c] of children) inline(c, `${path}.${i}`);
        return;
      }
      case 'bulletList':
        keys(node, ['type', 'content'], path);
        if (!content.length) fail(path, 'empty list');
        for (const [i, item] of children) {
          keys(item, ['type', 'content'], `${path}.${i}`);
          if (item.type !== 'listItem') fail(`${path}.${i}`, 'list holds listItems');
          const parts = item.content ?? [];
          if (parts[0]?.type !== 'paragraph') fail(`${path}.${i}`, 'listItem starts with a paragraph');
          for (const [j, c] of parts.entries()) block(c, `${path}.${i}.${j}`);
        }
        return;
      case 'table':
        keys(node, ['type', 'attrs', 'content'], path);
        if (!content.length) fail(path, 'empty table');
        for (const [i, row] of children) {
          keys(row, ['type', 'content'], `${path}.${i}`);
          if (row.type !== 'tableRow' || !row.content?.length) fail(`${path}.${i}`, 'table holds tableRows');
          for (const [j, c] of (row.content ?? []).entries()) {
            keys(c, ['type', 'attrs', 'content'], `${path}.${i}.${j}`);
            if (c.type !== 'tableHeader' && c.type !== 'tableCell') fail(`${path}.${i}.${j}`, 'cell type');
            if (!c.content?.length) fail(`${path}.${i}.${j}`, 'cells need a block');
            for (const [k, b] of (c.content ?? []).entries()) block(b, `${path}.${i}.${j}.${k}`);
          }
        }
        return;
      default:
        fail(path, `block node ${node.type} not allowed`);
    }
  };
  const root = doc as { type?: unknown; version?: unknown; content?: unknown };
  if (root.type !== 'doc' || root.version !== 1) fail('$', 'root must be {type: "doc", version: 1}');
  keys(root, ['type', 'version', 'content'], '$');
  if (!Array.isArray(root.content)) fail('$', 'content must be an array');
  for (const [i, b] of (root.content as AdfNode[]).entries()) block(b, `$.${i}`);
}

function allText(node: AdfNode): string[] {
  return [...(node.text ? [node.text] : []), ...(node.content ?? []).flatMap(allText)];
}

interface JiraIssue {
  id: string;
  key: string;
  fields: Record<string, unknown>;
}

/** Plays Jira Cloud REST v3: issue creation and the JQL search endpoint. */
class FakeJira {
  issues: JiraIssue[] = [];
  forced: { method: string; reply: FakeReply }[] = [];
  server!: FakeServer;

  async start() {
    this.server = await startFakeHttp((req) => this.handle(req));
    return this;
  }

  get requests(): RecordedRequest[] {
    return this.server.requests;
  }

  private handle(req: RecordedRequest): FakeReply {
    if (req.headers.authorization !== BASIC) {
      return {
        status: 401,
        body: {
          errorMessages: [`Client must be authenticated (got ${req.headers.authorization})`],
          errors: {},
        },
      };
    }
    const i = this.forced.findIndex((f) => f.method === req.method);
    if (i >= 0) return this.forced.splice(i, 1)[0]!.reply;
    if (req.method === 'GET' && req.url.pathname === '/rest/api/3/search/jql') {
      const jql = req.url.searchParams.get('jql') ?? '';
      const m = /^project = "([A-Z]+)" AND labels = "([^"]+)" ORDER BY created ASC$/.exec(jql);
      if (!m) return { status: 400, body: { errorMessages: [`bad JQL ${jql}`], errors: {} } };
      const found = this.issues.filter(
        (issue) =>
          (issue.fields['project'] as { key: string }).key === m[1] &&
          (issue.fields['labels'] as string[]).includes(m[2]!),
      );
      const max = Number(req.url.searchParams.get('maxResults') ?? '50');
      return {
        status: 200,
        body: {
          issues: found.slice(0, max).map((issue) => ({
            id: issue.id,
            key: issue.key,
            self: `${this.server.baseUrl}/rest/api/3/issue/${issue.id}`,
            fields: { labels: issue.fields['labels'] },
          })),
          isLast: true,
        },
      };
    }
    if (req.method === 'POST' && req.url.pathname === '/rest/api/3/issue') {
      expect(req.headers['content-type']).toBe('application/json');
      const body = JSON.parse(req.body) as { fields: Record<string, unknown> };
      assertValidAdf(body.fields['description']);
      const id = String(10000 + this.issues.length + 1);
      const key = `OPS-${this.issues.length + 1}`;
      this.issues.push({ id, key, fields: body.fields });
      return { status: 201, body: { id, key, self: `${this.server.baseUrl}/rest/api/3/issue/${id}` } };
    }
    return { status: 404, body: { errorMessages: ['not found'], errors: {} } };
  }
}

let jira: FakeJira | undefined;
afterEach(async () => {
  await jira?.server.close();
  jira = undefined;
});

async function fake() {
  jira = await new FakeJira().start();
  return jira;
}

function integration(f: FakeJira, extra: Partial<Parameters<typeof createJiraIntegration>[0]> = {}) {
  return createJiraIntegration({
    baseUrl: f.server.baseUrl,
    email: EMAIL,
    apiToken: TOKEN,
    projectKey: 'OPS',
    labels: ['patching'],
    ...extra,
  });
}

describe('Jira change requests', () => {
  it('createJiraIntegration — searches the label, then creates an issue with the exact v3 payload and ADF', async () => {
    const f = await fake();
    const key = 'delivery-7';
    const tag = idempotencyTag(key);
    const receipt = await integration(f).openChangeRequest(payload, { idempotencyKey: key });

    expect(f.requests).toHaveLength(2);
    const [search, create] = f.requests as [RecordedRequest, RecordedRequest];
    expect(search.method).toBe('GET');
    expect(search.url.pathname).toBe('/rest/api/3/search/jql');
    expect(Object.fromEntries(search.url.searchParams)).toEqual({
      jql: `project = "OPS" AND labels = "${tag}" ORDER BY created ASC`,
      maxResults: '1',
      fields: 'labels',
    });
    expect(search.rawUrl).not.toMatch(/[" ]/);
    expect(search.headers.authorization).toBe(BASIC);

    expect(create.method).toBe('POST');
    expect(create.rawUrl).toBe('/rest/api/3/issue');
    expect(create.headers.authorization).toBe(BASIC);
    expect(create.headers.accept).toBe('application/json');
    const body = JSON.parse(create.body) as { fields: Record<string, unknown> };
    expect(Object.keys(body)).toEqual(['fields']);
    const { description, ...fields } = body.fields;
    expect(fields).toEqual({
      project: { key: 'OPS' },
      summary: payload.title,
      issuetype: { name: 'Task' },
      labels: ['patching', 'fleetward', tag],
    });
    assertValidAdf(description);
    expect(description).toEqual(buildJiraDescription(payload, key));

    const doc = description as { content: AdfNode[] };
    expect(doc.content.map((n) => n.type)).toEqual([
      'paragraph',
      'paragraph',
      'paragraph',
      'bulletList',
      'heading',
      'table',
      'paragraph',
    ]);
    // "Summary…" and "By category…" are one paragraph joined by a hard break.
    expect(doc.content[1]!.content!.map((n) => n.type)).toEqual(['text', 'hardBreak', 'text']);
    const table = doc.content[5]!;
    expect(table.content!.map((row) => row.content!.map((c) => allText(c).join('')))).toEqual([
      ['Server', 'Package', 'Installed', 'Candidate', 'Category', 'Severity'],
      ['web-1', 'openssl', '3.0.11', '3.0.13', 'security', 'important'],
      ['web-2', 'libfoo', '(new)', '1.2', 'bugfix', 'unspecified'],
    ]);
    expect(table.content![0]!.content![0]!.type).toBe('tableHeader');
    expect(allText(doc.content[6]!)).toEqual([`Fleetward idempotency key: ${key}`]);

    expect(receipt).toEqual({
      externalId: '10001',
      number: 'OPS-1',
      externalUrl: `${f.server.baseUrl}/browse/OPS-1`,
      reused: false,
    });
  });

  it('createJiraIntegration — a second call with the same key returns the first issue without a second POST', async () => {
    const f = await fake();
    const first = await integration(f).openChangeRequest(payload, { idempotencyKey: 'k1' });
    const second = await integration(f).openChangeRequest(payload, { idempotencyKey: 'k1' });
    expect(second).toEqual({ ...first, reused: true });
    expect(f.requests.filter((r) => r.method === 'POST')).toHaveLength(1);
    const third = await integration(f).openChangeRequest(payload, { idempotencyKey: 'k2' });
    expect(third.number).toBe('OPS-2');
  });

  it('createJiraIntegration — uses the configured issue type and never duplicates labels', async () => {
    const f = await fake();
    await integration(f, { issueType: 'Change', labels: ['fleetward', 'ops'] }).openChangeRequest(payload, {
      idempotencyKey: 'k',
    });
    const body = JSON.parse(f.requests[1]!.body) as { fields: Record<string, unknown> };
    expect(body.fields['issuetype']).toEqual({ name: 'Change' });
    expect(body.fields['labels']).toEqual(['fleetward', 'ops', idempotencyTag('k')]);
  });

  it('createJiraIntegration — a 500 is retryable and the retry creates exactly one issue', async () => {
    const f = await fake();
    f.forced.push({ method: 'POST', reply: { status: 503, body: 'Service Unavailable' } });
    const j = integration(f);
    const error = await j.openChangeRequest(payload, { idempotencyKey: 'r' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect(error).toMatchObject({ code: 'TRANSPORT_FAILED', retryable: true, details: { status: 503 } });
    await j.openChangeRequest(payload, { idempotencyKey: 'r' });
    expect(f.issues).toHaveLength(1);
  });

  it('createJiraIntegration — a 429 is retryable and keeps Retry-After', async () => {
    const f = await fake();
    f.forced.push({
      method: 'GET',
      reply: { status: 429, headers: { 'Retry-After': '7' }, body: { errorMessages: ['Rate limit'] } },
    });
    const error = await integration(f)
      .openChangeRequest(payload, { idempotencyKey: 'r' })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ retryable: true, details: { status: 429, retryAfter: '7' } });
  });

  it('createJiraIntegration — a 401 is not retryable and no error surface carries the token', async () => {
    const f = await fake();
    const j = createJiraIntegration({
      baseUrl: f.server.baseUrl,
      email: EMAIL,
      apiToken: `${TOKEN}x`,
      projectKey: 'OPS',
    });
    const error = await j.openChangeRequest(payload, { idempotencyKey: 'a' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrationError);
    expect(error).toMatchObject({ code: 'UNAUTHORIZED', retryable: false, status: 401, integration: 'jira' });
    const surface = errorSurface(error);
    expect(surface).toContain('Client must be authenticated');
    expect(surface).not.toContain(TOKEN);
    expect(surface).not.toContain(Buffer.from(`${EMAIL}:${TOKEN}x`).toString('base64'));
  });

  it('createJiraIntegration — a 400 names the refused field and is not retryable', async () => {
    const f = await fake();
    f.forced.push({
      method: 'POST',
      reply: {
        status: 400,
        body: { errorMessages: [], errors: { issuetype: 'Specify a valid issue type' } },
      },
    });
    const error = await integration(f)
      .openChangeRequest(payload, { idempotencyKey: 'b' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrationError);
    expect(error).toMatchObject({ code: 'COMMAND_FAILED', retryable: false, status: 400, fault: 'caller' });
    expect((error as Error).message).toContain('issuetype: Specify a valid issue type');
  });

  it('createJiraIntegration — hostile strings travel as plain ADF text, the summary on one line', async () => {
    const f = await fake();
    const hostile: ChangeRequestPayload = {
      ...payload,
      title: 'x\r\nBcc: evil@x',
      description: '</td><script>alert(1)</script>\n*bold* [link|http://evil] {code}',
      pendingPatches: [
        { ...payload.pendingPatches[0]!, serverName: '</td><script>alert(1)</script>', name: 'a"b' },
      ],
    };
    await integration(f).openChangeRequest(hostile, { idempotencyKey: 'h' });
    const body = JSON.parse(f.requests[1]!.body) as { fields: { summary: string; description: AdfNode } };
    expect(body.fields.summary).toBe('x Bcc: evil@x');
    const texts = allText(body.fields.description);
    expect(texts).toContain('</td><script>alert(1)</script>');
    expect(texts).toContain('*bold* [link|http://evil] {code}');
    expect(texts).toContain('a"b');
    assertValidAdf(body.fields.description);
  });

  it('createJiraIntegration — refuses bad configuration before any request', () => {
    const base = { baseUrl: 'https://acme.atlassian.net', email: EMAIL, apiToken: TOKEN, projectKey: 'OPS' };
    expect(() => createJiraIntegration({ ...base, projectKey: 'OPS" OR project = "X' })).toThrow(
      ValidationError,
    );
    expect(() => createJiraIntegration({ ...base, labels: ['has space'] })).toThrow(ValidationError);
    expect(() => createJiraIntegration({ ...base, apiToken: '' })).toThrow(ValidationError);
    expect(() => createJiraIntegration({ ...base, baseUrl: 'http://acme.atlassian.net' })).toThrow(
      ValidationError,
    );
    expect(JSON.stringify(createJiraIntegration(base))).not.toContain(TOKEN);
  });

  it('buildJiraDescription — cuts a huge table under Jira’s 32,767-character limit and says so', () => {
    const many: ChangeRequestPayload = {
      ...payload,
      pendingPatches: Array.from({ length: 5000 }, (_, i) => ({
        ...payload.pendingPatches[0]!,
        serverName: `server-${i}`,
      })),
    };
    const doc = buildJiraDescription(many, 'k');
    assertValidAdf(doc);
    expect(JSON.stringify(doc).length).toBeLessThan(32_767);
    const table = doc.content.find((n) => n.type === 'table')!;
    const shown = table.content!.length - 1;
    expect(shown).toBeGreaterThan(40);
    expect(allText(doc.content.at(-2)!)).toEqual([`… and ${5000 - shown} more pending patches.`]);
  });

  it('plainTextToAdf — paragraphs on blank lines, hard breaks inside, bullet lists, no empty text nodes', () => {
    const blocks = plainTextToAdf('\nfirst\nsecond\n\n- a\n- b\nafter\n\n\n \n\nlast\n');
    expect(blocks).toEqual([
      {
        type: 'paragraph',
        content: [{ type: 'text', text: 'first' }, { type: 'hardBreak' }, { type: 'text', text: 'second' }],
      },
      {
        type: 'bulletList',
        content: [
          { type: 'listItem', content: [{ type: 'paragraph', content: [{ type: 'text', text: 'a' }] }] },
          { type: 'listItem', content: [{ type: 'paragraph', content: [{ type: 'text', text: 'b' }] }] },
        ],
      },
      { type: 'paragraph', content: [{ type: 'text', text: 'after' }] },
      { type: 'paragraph', content: [{ type: 'text', text: 'last' }] },
    ]);
    assertValidAdf({ type: 'doc', version: 1, content: plainTextToAdf('') });
    assertValidAdf({ type: 'doc', version: 1, content: plainTextToAdf('- \n-  x') });
  });
});
