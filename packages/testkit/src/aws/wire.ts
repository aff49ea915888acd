import type { IncomingMessage, ServerResponse } from 'node:http';

/** A failure answered in the protocol of the request. */
export class WireError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type Protocol = 'json' | 'ec2' | 'sts';

/** `Credential=<key>/<date>/<region>/<service>/aws4_request` of a SigV4 `Authorization` header. */
export function credentialScope(
  authorization: string | undefined,
): { accessKeyId: string; region: string; service: string } | undefined {
  const m = /Credential=([^/,\s]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/.exec(authorization ?? '');
  if (!m) return undefined;
  return { accessKeyId: m[1] as string, region: m[2] as string, service: m[3] as string };
}

export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** An XML element; `undefined` children are left out so optional fields vanish. */
export function el(name: string, ...children: (string | undefined)[]): string {
  return `<${name}>${children.filter((c) => c !== undefined).join('')}</${name}>`;
}

export function text(name: string, value: string | number | boolean | undefined): string | undefined {
  return value === undefined ? undefined : `<${name}>${xmlEscape(String(value))}</${name}>`;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, requestId: string): void {
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.1',
    'x-amzn-requestid': requestId,
  });
  res.end(JSON.stringify(body));
}

export function sendXml(res: ServerResponse, status: number, xml: string, requestId: string): void {
  res.writeHead(status, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId });
  res.end(xml);
}

export function sendError(res: ServerResponse, protocol: Protocol, err: WireError, requestId: string): void {
  if (protocol === 'json') {
    sendJson(res, err.status, { __type: err.code, message: err.message }, requestId);
  } else if (protocol === 'ec2') {
    sendXml(
      res,
      err.status,
      el(
        'Response',
        el('Errors', el('Error', text('Code', err.code), text('Message', err.message))),
        text('RequestID', requestId),
      ),
      requestId,
    );
  } else {
    sendXml(
      res,
      err.status,
      el(
        'ErrorResponse',
        el(
          'Error',
          text('Type', err.status >= 500 ? 'Receiver' : 'Sender'),
          text('Code', err.code),
          text('Message', err.message),
        ),
        text('RequestId', requestId),
      ),
      requestId,
    );
  }
}

export function sendHtml(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'content-type': 'text/html' });
  res.end(`<html><head><title>${status} Bad Gateway</title></head><body><h1>${status}</h1></body></html>`);
}

/**
 * Query-protocol lists: `Filter.1.Name=x&Filter.1.Value.1=y` → `[{ Name: 'x', Value: ['y'] }]`,
 * `InstanceId.1=i-a` → `['i-a']`.
 */
export function queryList(form: URLSearchParams, prefix: string): string[] {
  const out: string[] = [];
  for (let i = 1; form.has(`${prefix}.${i}`); i++) out.push(form.get(`${prefix}.${i}`) as string);
  return out;
}

export function queryFilters(form: URLSearchParams): { name: string; values: string[] }[] {
  const out: { name: string; values: string[] }[] = [];
  for (let i = 1; form.has(`Filter.${i}.Name`); i++) {
    out.push({ name: form.get(`Filter.${i}.Name`) as string, values: queryList(form, `Filter.${i}.Value`) });
  }
  return out;
}

/** An opaque page token: the offset, base64url. */
export function pageOf<T>(
  items: T[],
  nextToken: string | undefined,
  maxResults: number | undefined,
  pageSize: number,
  protocol: Protocol,
): { page: T[]; nextToken: string | undefined } {
  let start = 0;
  if (nextToken) {
    const n = Number(
      Buffer.from(nextToken, 'base64url')
        .toString('utf8')
        .replace(/^offset:/, ''),
    );
    if (!Number.isInteger(n) || n < 0 || n > items.length) {
      throw new WireError(
        400,
        protocol === 'json' ? 'InvalidNextToken' : 'InvalidParameterValue',
        'The specified token is not valid.',
      );
    }
    start = n;
  }
  const size = Math.min(maxResults && maxResults > 0 ? maxResults : pageSize, pageSize);
  const end = start + size;
  return {
    page: items.slice(start, end),
    nextToken: end < items.length ? Buffer.from(`offset:${end}`).toString('base64url') : undefined,
  };
}
