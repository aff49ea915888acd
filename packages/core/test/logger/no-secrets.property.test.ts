import {
  type Adapter,
  createDispatcher,
  createFleet,
  createLocalAdapter,
  createMemoryStore,
  type Fleet,
  MemorySecretStore,
  TransportError,
} from '@fleetward/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type CapturedRecord, capturingLogger, mentioning } from './capture.js';

// Rule of the `logger` option: no secret ever reaches it. Each run of the property builds a Fleet
// with generated secrets of the three kinds it handles (a secret script parameter, a webhook
// signing secret, a credential in the SecretStore), runs workflows that fail in ways that drag
// those secrets into error messages (a script printing its parameter, an adapter quoting its
// environment and its password, an HTTP client quoting the signature secret), and reads every
// record the logger got: none may contain any of the secrets, and the failures must be there.

const T = 'acme';
const CREDENTIAL_REF = `${T}/credentials/ssh-password`;

/** Secrets as people pick them: printable, with quotes, `$`, backslashes and spaces; no brackets (`[REDACTED]` has them). */
const secretText = fc
  .string({
    unit: fc.constantFrom(
      ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !"#$%&\'()*+,-./:;<=>?@\\^_`{|}~',
    ),
    minLength: 12,
    maxLength: 48,
  })
  .filter((s) => s.trim().length >= 12);

/** A valid Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 random bytes. */
const webhookSecret = fc
  .uint8Array({ minLength: 24, maxLength: 64 })
  .map((bytes) => `whsec_${Buffer.from(bytes).toString('base64')}`);

/**
 * s01 runs on this machine; s02's transport quotes what it was sending (the script's environment)
 * and the password it read from the Fleet's SecretStore, as a careless SSH library might.
 */
function leakyAdapter(fleet: () => Fleet): Adapter {
  const local = createLocalAdapter();
  const password = async () => (await fleet().secrets!.get(CREDENTIAL_REF)) ?? '';
  return {
    name: 'leaky',
    scan: {
      async scan(server) {
        if (server.id === 's02') {
          throw new TransportError(`authentication as deploy with password ${await password()} failed`);
        }
        return { patches: [], rebootRequired: false };
      },
    },
    exec: {
      async exec(server, command, options) {
        if (server.id === 's02') {
          const env = Object.entries(command.env ?? {})
            .map(([k, v]) => `${k}=${v}`)
            .join(' ');
          throw new TransportError(`channel closed while sending ${env} (password ${await password()})`);
        }
        return local.exec!.exec(server, command, options);
      },
    },
  };
}

async function runWorkflows(secrets: { param: string; webhook: string; credential: string }) {
  const logger = capturingLogger();
  const raw = new MemorySecretStore();
  let fleet!: Fleet;
  fleet = createFleet({
    store: createMemoryStore(),
    adapters: [leakyAdapter(() => fleet)],
    secrets: raw,
    logger,
  });
  try {
    await fleet.bootstrapTenant({
      tenant: { id: T, name: 'Acme' },
      admin: { id: 'alice', name: 'Alice', kind: 'human', affiliation: 'employee' },
    });
    const alice = fleet.as({ tenantId: T, principalId: 'alice' });
    for (const id of ['s01', 's02']) {
      await alice.servers.add({ id, name: id, accountId: 'dc', provider: 'ssh', adapter: 'leaky' });
    }
    // The application provisions the adapter's password through the Fleet's SecretStore.
    await fleet.secrets!.set(CREDENTIAL_REF, secrets.credential);
    const { endpoint } = await alice.notify.webhooks.add({
      url: 'https://hooks.example.test/fleetward',
      events: ['*'],
    });
    // Replaced underneath the Fleet, as another process rotating it would: only the dispatcher reads it.
    await raw.set(endpoint.secretRef, JSON.stringify({ current: secrets.webhook, previous: [] }));

    await alice.scan({ serverIds: ['s01', 's02'] });
    await alice.scripts.add({
      name: 'use-token',
      interpreter: 'sh',
      body: 'echo "token is $TOKEN"\necho "$TOKEN" >&2\nexit 1\n',
      parameters: [{ name: 'TOKEN', type: 'string', secret: true, required: true }],
    });
    const run = await alice.scripts.runScript({
      script: 'use-token',
      params: { TOKEN: secrets.param },
      targets: { serverIds: ['s01', 's02'] },
      rollout: { maxConcurrency: 1, errorBudget: { count: 2 } },
    });

    const dispatcher = createDispatcher({
      store: fleet.store,
      secrets: raw,
      logger,
      maxAttempts: 2,
      backoff: { baseMs: 0, capMs: 0 },
      webhook: {
        fetch: async (_url, init) => {
          const headers = init?.headers as Record<string, string>;
          throw new Error(
            `socket hang up after signing with ${secrets.webhook} (${headers['webhook-signature']})`,
          );
        },
      },
    });
    await dispatcher.runOnce();
    await dispatcher.runOnce();
    return { records: logger.records, runId: run.run.id };
  } finally {
    await fleet.close();
  }
}

const failures = (records: readonly CapturedRecord[], kind: string) =>
  records.filter((r) => r.msg === 'server failed' && r.fields['kind'] === kind);

describe('logger — no secret reaches it', () => {
  it('createFleet({ logger }) — scans, script runs and webhook deliveries that fail with secrets in their messages log none of them', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ param: secretText, webhook: webhookSecret, credential: secretText }),
        async (secrets) => {
          fc.pre(!secrets.param.includes(secrets.credential) && !secrets.credential.includes(secrets.param));
          const { records, runId } = await runWorkflows(secrets);

          // The failures that carried the secrets were logged: the property is not vacuous.
          expect(failures(records, 'scan').map((r) => r.fields['serverId'])).toEqual(['s02']);
          expect(
            failures(records, 'script')
              .map((r) => r.fields['serverId'])
              .sort(),
          ).toEqual(['s01', 's02']);
          expect(records.find((r) => r.msg === 'script run finished')?.fields['runId']).toBe(runId);
          expect(records.filter((r) => r.msg?.startsWith('outbox')).length).toBeGreaterThan(0);
          expect(JSON.stringify(failures(records, 'scan'))).toContain('[REDACTED]');

          for (const [kind, secret] of Object.entries(secrets)) {
            expect(mentioning(records, secret), `${kind} secret in a log record`).toEqual([]);
          }
        },
      ),
      { numRuns: 15 },
    );
  });
});
