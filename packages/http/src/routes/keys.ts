import {
  AbortedError,
  type DueCredential,
  IdSchema,
  type KeysApi,
  LoginSchema,
  NotFoundError,
  PublicKeyLineSchema,
  type RegisterCredentialInput,
  type RotationReport,
} from '@fleetward/core';
import { z } from '@hono/zod-openapi';
import { PageQuery, pageList } from '../pagination.js';
import { withoutSecrets } from '../redact.js';
import { Credential, KeyInventory, KeyRotationPolicy, pageOf, type Same, Targets } from '../schemas.js';
import { openapi } from '../zod-openapi.js';
import {
  apiRoute,
  idParams,
  jsonBody,
  jsonResponse,
  locationHeader,
  optionalJsonBody,
  problems,
  type RouteModule,
} from './route.js';

/** How long `POST …/rotation` waits for the rotation before answering 202. */
export const DEFAULT_ROTATION_WAIT_MS = 60_000;
// The rotation holds its lease for ten minutes: an answer never waits longer than that.
const MAX_ROTATION_WAIT_MS = 600_000;

const CredentialRegistration = z
  .strictObject({
    id: IdSchema.optional(),
    login: LoginSchema,
    publicKey: PublicKeyLineSchema,
    privateKey: z
      .string()
      .min(1)
      .max(64 * 1024)
      .optional()
      .openapi({
        description:
          'The private key, when Fleetward is to hold and rotate it. It goes to the SecretStore only: ' +
          'no answer, log or audit record ever contains it.',
      }),
    caretakerId: openapi(IdSchema, { description: 'The one principal responsible for the key.' }),
    serverIds: z.array(IdSchema).min(1).max(10_000),
  })
  .openapi('CredentialRegistration');
const sameRegistration: Same<z.input<typeof CredentialRegistration>, RegisterCredentialInput> = true;
void sameRegistration;

const CaretakerChange = z.strictObject({ caretakerId: IdSchema }).openapi('CaretakerChange');

const RotationRequest = z
  .strictObject({
    verifySudo: z
      .boolean()
      .optional()
      .openapi({ description: 'Also require `sudo -n true` to work with the new key. Default false.' }),
    graceMinutes: z
      .number()
      .int()
      .min(1)
      .max(1440)
      .optional()
      .openapi({ description: 'How long the retired key’s `expiry-time` runs. Default 5.' }),
    waitMs: z
      .number()
      .int()
      .min(0)
      .max(MAX_ROTATION_WAIT_MS)
      .optional()
      .openapi({
        description: `How long the answer waits for the rotation to end. Default ${DEFAULT_ROTATION_WAIT_MS}.`,
      }),
  })
  .openapi('RotationRequest');

const ServerStep = z.strictObject({
  serverId: z.string(),
  step: z.string(),
  error: z.strictObject({ code: z.string(), message: z.string() }).optional(),
});
const RotationReportSchema = z
  .strictObject({
    credentialId: z.string(),
    jobId: z.string(),
    status: z.enum(['succeeded', 'failed', 'rolled-back']),
    oldFingerprint: z.string(),
    newFingerprint: z.string(),
    servers: z.array(ServerStep),
    reason: z.string().optional(),
  })
  .openapi('RotationReport', {
    description:
      '`succeeded`: only the new key works now. `rolled-back`: the new key failed to log in somewhere and ' +
      'was taken off again; the old key was proven to work. `failed`: the new key works everywhere but ' +
      'the old one could not be retired everywhere (it still expires by itself).',
  });
const sameReport: Same<z.infer<typeof RotationReportSchema>, RotationReport> = true;
void sameReport;

const RotationRunning = z
  .strictObject({
    credentialId: z.string(),
    status: z.literal('running'),
  })
  .openapi('RotationRunning', {
    description:
      'The rotation goes on after the answer. The credential’s `status` is `rotating` until it ends; ' +
      'its end is in the audit log (`keys.rotate`, `details.step` `completed` or `rolled-back`).',
  });

const RotationPolicyInput = z
  .strictObject({
    intervalHours: z
      .number()
      .int()
      .min(1)
      .max(24 * 366),
    graceMinutes: z.number().int().min(1).max(1440).optional(),
    enabled: z.boolean().optional(),
  })
  .openapi('RotationPolicyInput');
const samePolicy: Same<
  z.input<typeof RotationPolicyInput> & { projectId: string },
  Parameters<KeysApi['policies']['set']>[0]
> = true;
void samePolicy;

const DueCredentialSchema = z
  .strictObject({
    credential: Credential,
    policy: KeyRotationPolicy,
    since: z.string().openapi({ description: 'When it was last rotated (or registered).' }),
    dueAt: z.string(),
  })
  .openapi('DueCredential');
const sameDue: Same<z.infer<typeof DueCredentialSchema>, DueCredential> = true;
void sameDue;

const InventoryRequest = z
  .strictObject({
    targets: Targets,
    concurrency: z.number().int().min(1).max(64).optional().openapi({ description: 'Default 16.' }),
  })
  .openapi('KeyInventoryRequest');
const InventoryOutcome = z
  .strictObject({ inventories: z.array(KeyInventory) })
  .openapi('KeyInventoryOutcome', {
    description: 'One per server, in server-id order; a server that could not be read has `status: failed`.',
  });

/** Managed SSH keys with one caretaker each, their rotation, and the key inventory of servers. */
export const keyRoutes: RouteModule = (app, { background }) => {
  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/keys/credentials',
      operationId: 'listCredentials',
      tags: ['keys'],
      summary: 'The tenant’s managed keys (public halves only) and their caretakers.',
      request: { query: PageQuery },
      responses: { 200: jsonResponse(pageOf(Credential), 'A page of credentials.') },
    }),
    async (c) => {
      const credentials = await c.get('session').keys.list();
      return c.json(
        pageList('keys/credentials', credentials, (k) => k.id, c.req.valid('query')),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/keys/credentials',
      operationId: 'registerCredential',
      tags: ['keys'],
      summary: 'Registers a managed key with its one caretaker; `keys.rotate` on each of its servers.',
      description:
        'A key (fingerprint) is managed once per tenant. With `privateKey`, Fleetward keeps the key in its ' +
        'SecretStore and can rotate it; a Fleet without a SecretStore refuses it (422 naming `privateKey`).',
      request: {
        body: jsonBody(CredentialRegistration, {
          id: 'deploy-web',
          login: 'deploy',
          publicKey:
            'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMzOeD/7DN/gsQZUG0LkrgXP67W/KzUrJH6jjhdvmRao deploy@ci',
          caretakerId: 'ci-bot',
          serverIds: ['web-1'],
        }),
      },
      responses: {
        201: { ...jsonResponse(Credential, 'The credential as stored.'), headers: locationHeader },
      },
    }),
    async (c) => {
      const input = c.req.valid('json');
      const session = c.get('session');
      const credential = await withoutSecrets(input.privateKey ? [input.privateKey] : [], () =>
        session.keys.register(input),
      );
      c.header('Location', `/v1/keys/credentials/${encodeURIComponent(credential.id)}`);
      return c.json(credential, 201);
    },
  );

  app.openapi(
    apiRoute({
      method: 'put',
      path: '/v1/keys/credentials/{credentialId}/caretaker',
      operationId: 'setCredentialCaretaker',
      tags: ['keys'],
      summary: 'Hands a key to another caretaker (still exactly one).',
      request: {
        params: idParams('credentialId'),
        body: jsonBody(CaretakerChange, { caretakerId: 'ci-bot' }),
      },
      responses: { 200: jsonResponse(Credential, 'The credential as stored.') },
    }),
    async (c) => {
      const { credentialId } = c.req.valid('param');
      const { caretakerId } = c.req.valid('json');
      return c.json(await c.get('session').keys.setCaretaker(credentialId, caretakerId), 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/keys/credentials/{credentialId}/rotation',
      operationId: 'rotateCredential',
      tags: ['keys'],
      summary: 'Rotates a managed key on all its servers without locking anyone out.',
      description:
        'A new key is added next to the old one, must log in over a new connection on every server, and ' +
        'only then is the old key retired. The answer waits up to `waitMs` for the rotation and gives its ' +
        'report; a rotation that takes longer goes on in the background and the answer is 202. A client ' +
        'that hangs up does not stop it. A server shutting down stops it before it touches another ' +
        'server; rotating again resumes it, doing nothing twice. Needs `keys.rotate` on every server of ' +
        'the key, a SecretStore and adapters that can prove a login.',
      request: {
        params: idParams('credentialId'),
        body: optionalJsonBody(RotationRequest, { verifySudo: false, graceMinutes: 5, waitMs: 120_000 }),
      },
      responses: {
        200: jsonResponse(RotationReportSchema, 'The rotation ended: see `status`.'),
        202: jsonResponse(RotationRunning, 'The rotation is still running.'),
        ...problems(501, 503),
      },
    }),
    async (c) => {
      const { credentialId } = c.req.valid('param');
      const { waitMs = DEFAULT_ROTATION_WAIT_MS, verifySudo, graceMinutes } = c.req.valid('json');
      const session = c.get('session');
      let answered = false;
      const rotation = background.track(
        session.keys.rotate(credentialId, {
          ...(verifySudo === undefined ? {} : { verifySudo }),
          ...(graceMinutes === undefined ? {} : { graceMinutes }),
          signal: background.signal,
        }),
        () => !answered,
        `key rotation of ${credentialId}`,
      );
      let timer: NodeJS.Timeout | undefined;
      const waited = new Promise<'running'>((resolve) => {
        timer = setTimeout(() => resolve('running'), waitMs);
      });
      try {
        const first = await Promise.race([rotation, waited]);
        if (first === 'running') {
          answered = true;
          return c.json({ credentialId, status: 'running' as const }, 202);
        }
        return c.json(first, 200);
      } catch (error) {
        if (background.signal.aborted) {
          throw new AbortedError(
            `the server is shutting down: the rotation of ${credentialId} stopped before touching another server; rotate again to resume it`,
          );
        }
        throw error;
      } finally {
        clearTimeout(timer);
      }
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/keys/due',
      operationId: 'listDueCredentials',
      tags: ['keys'],
      summary: 'Managed keys overdue for rotation under their projects’ policies (used or not).',
      request: { query: PageQuery },
      responses: { 200: jsonResponse(pageOf(DueCredentialSchema), 'A page of overdue keys.') },
    }),
    async (c) => {
      const due = await c.get('session').keys.due();
      return c.json(
        pageList('keys/due', due, (d) => d.credential.id, c.req.valid('query')),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/keys/rotation-policies',
      operationId: 'listRotationPolicies',
      tags: ['keys'],
      request: { query: PageQuery },
      responses: { 200: jsonResponse(pageOf(KeyRotationPolicy), 'A page of rotation policies.') },
    }),
    async (c) => {
      const policies = await c.get('session').keys.policies.list();
      return c.json(
        pageList('keys/rotation-policies', policies, (p) => p.id, c.req.valid('query')),
        200,
      );
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/keys/rotation-policies/{projectId}',
      operationId: 'getRotationPolicy',
      tags: ['keys'],
      summary: 'The rotation policy of a project’s keys.',
      request: { params: idParams('projectId') },
      responses: { 200: jsonResponse(KeyRotationPolicy, 'The policy.') },
    }),
    async (c) => {
      const { projectId } = c.req.valid('param');
      const policy = (await c.get('session').keys.policies.list()).find((p) => p.projectId === projectId);
      if (!policy) throw new NotFoundError('key rotation policy of project', projectId);
      return c.json(policy, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'put',
      path: '/v1/keys/rotation-policies/{projectId}',
      operationId: 'setRotationPolicy',
      tags: ['keys'],
      summary: 'Sets how often the keys of a project’s servers are rotated (one policy per project).',
      request: {
        params: idParams('projectId'),
        body: jsonBody(RotationPolicyInput, { intervalHours: 720, graceMinutes: 10 }),
      },
      responses: { 200: jsonResponse(KeyRotationPolicy, 'The policy as stored.') },
    }),
    async (c) => {
      const { projectId } = c.req.valid('param');
      return c.json(await c.get('session').keys.policies.set({ ...c.req.valid('json'), projectId }), 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'post',
      path: '/v1/keys/inventories',
      operationId: 'runKeyInventory',
      tags: ['keys'],
      summary:
        'Reads every login’s authorized_keys and the sshd log on the servers, and stores what is there.',
      description:
        'Each key is told apart as managed, granted, cloud-agent or unmanaged, with its use in the log. ' +
        'Answers when every server is read or failed. Needs `keys.read` on every server.',
      request: { body: jsonBody(InventoryRequest, { targets: { serverIds: ['web-1'] } }) },
      responses: { 200: jsonResponse(InventoryOutcome, 'The new inventories.') },
    }),
    async (c) => {
      const { targets, concurrency } = c.req.valid('json');
      const inventories = await c
        .get('session')
        .keys.inventory(targets, concurrency === undefined ? {} : { concurrency });
      return c.json({ inventories }, 200);
    },
  );

  app.openapi(
    apiRoute({
      method: 'get',
      path: '/v1/keys/inventories/latest',
      operationId: 'listLatestKeyInventories',
      tags: ['keys'],
      summary: 'The newest key inventory of each server that has one, by server id.',
      request: { query: PageQuery },
      responses: { 200: jsonResponse(pageOf(KeyInventory), 'A page of inventories.') },
    }),
    async (c) => {
      const latest = await c.get('session').keys.latestInventory();
      return c.json(
        pageList('keys/inventories/latest', latest, (i) => i.serverId, c.req.valid('query')),
        200,
      );
    },
  );
};
