import { createFleet, createMemoryStore } from '@fleetward/core';
import { createFleetwardApi, openApiDocument } from '@fleetward/http';
import { compileErrors, validate } from '@readme/openapi-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support/harness.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

type Operation = {
  operationId?: string;
  security?: unknown[];
  parameters?: { name: string; in: string; required?: boolean }[];
  requestBody?: { content: Record<string, { example?: unknown }> };
  responses: Record<string, { $ref?: string }>;
};

async function served() {
  const response = await h.call('GET', '/openapi.json');
  expect(response.status).toBe(200);
  return response.json() as { openapi: string; paths: Record<string, Record<string, Operation>> };
}

function operations(doc: { paths: Record<string, Record<string, Operation>> }) {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    METHODS.filter((m) => item[m]).map((method) => ({ path, method, op: item[method]! })),
  );
}

function patterns(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) patterns(n, out);
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === 'pattern' && typeof v === 'string') out.push(v);
      else patterns(v, out);
    }
  }
  return out;
}

describe('openApiDocument', () => {
  it('GET /openapi.json — serves an OpenAPI 3.1 document that the validator accepts', async () => {
    const doc = await served();
    expect(doc.openapi).toBe('3.1.0');
    const result = await validate(structuredClone(doc) as never);
    expect(result.valid, result.valid ? '' : compileErrors(result)).toBe(true);
  });

  it('openApiDocument — is what the server serves, and covers every area of the API', async () => {
    const doc = await served();
    expect(openApiDocument(h.server.app)).toEqual(doc);
    const paths = Object.keys(doc.paths);
    for (const prefix of [
      '/v1/servers',
      '/v1/accounts',
      '/v1/projects',
      '/v1/scans',
      '/v1/compliance/standards',
      '/v1/compliance/evaluations',
      '/v1/compliance/summary',
      '/v1/compliance/report',
      '/v1/patch/policies',
      '/v1/patch/plans',
      '/v1/audit',
      '/v1/audit/verification',
      '/v1/principals',
      '/v1/tokens',
      '/v1/audit/export',
      '/v1/audit/checkpoints',
      '/v1/audit/access-report',
      '/v1/access-requests',
      '/v1/access-requests/{requestId}/approval',
      '/v1/access-grants/{grantId}/revocation',
      '/v1/access/sweep',
      '/v1/keys/credentials',
      '/v1/keys/credentials/{credentialId}/rotation',
      '/v1/keys/rotation-policies/{projectId}',
      '/v1/keys/due',
      '/v1/keys/inventories',
      '/v1/scripts',
      '/v1/scripts/{scriptName}/approvals',
      '/v1/script-runs',
      '/v1/script-runs/{runId}/start',
    ]) {
      expect(paths, prefix).toContain(prefix);
    }
  });

  it('openApiDocument — every operation has an id, bearer security, problem responses and documented parameters', async () => {
    const doc = await served();
    const ids = new Set<string>();
    for (const { path, method, op } of operations(doc)) {
      const where = `${method.toUpperCase()} ${path}`;
      expect(op.operationId, where).toBeTruthy();
      expect(ids.has(op.operationId!), `${where}: duplicate operationId`).toBe(false);
      ids.add(op.operationId!);
      expect(op.security, where).toEqual([{ bearerAuth: [] }]);
      expect(op.responses['401']?.$ref, where).toBe('#/components/responses/Unauthorized');
      expect(op.responses['404']?.$ref, where).toBe('#/components/responses/NotFound');
      for (const name of [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1])) {
        expect(
          op.parameters?.some((p) => p.in === 'path' && p.name === name && p.required),
          `${where}: path parameter ${name}`,
        ).toBe(true);
      }
      if (op.requestBody) {
        expect(op.requestBody.content['application/json']?.example, `${where}: body example`).toBeDefined();
        expect(op.responses['413']?.$ref, where).toBe('#/components/responses/PayloadTooLarge');
      }
    }
    expect(ids.size).toBeGreaterThan(60);
  });

  it('openApiDocument — every pattern is a valid Unicode regular expression without stray flags', async () => {
    const found = patterns(await served());
    expect(found.length).toBeGreaterThan(10);
    for (const pattern of found) {
      expect(() => new RegExp(pattern, 'u'), pattern).not.toThrow();
      expect(pattern, 'a regex literal’s flags leaked into the pattern').not.toMatch(/[^\\]\/[a-z]+$/);
    }
    // Names may not hold control characters: the SDK's rule, kept intact in the document.
    expect(found).toContain('^[^\\p{Cc}]+$');
  });

  it('openApiDocument — takes the title, version and servers given to createFleetwardApi', async () => {
    const fleet = createFleet({ store: createMemoryStore(), adapters: [] });
    const app = createFleetwardApi(fleet, {
      document: { title: 'Acme fleet', version: '7.1.0', servers: [{ url: 'https://fleet.acme.test' }] },
    });
    const doc = openApiDocument(app);
    expect(doc.info).toMatchObject({ title: 'Acme fleet', version: '7.1.0' });
    expect(doc.servers).toEqual([{ url: 'https://fleet.acme.test' }]);
    const result = await validate(structuredClone(doc) as never);
    expect(result.valid, result.valid ? '' : compileErrors(result)).toBe(true);
    await fleet.close();
  });
});
