import { readFile } from 'node:fs/promises';
import { createWinRmAdapter, type WinRmCredentials, WinRmCredentialsSchema } from '@fleetward/adapter-winrm';
import {
  type Adapter,
  type AdapterContext,
  NotFoundError,
  type SecretStore,
  type Server,
  ValidationError,
} from '@fleetward/core';
import type { WinRmConfig } from './config.js';
import { lazyAdapter } from './lazy-adapter.js';

/**
 * Server label naming that server's WinRM login: a name `winrm credentials set <name>` stored in the
 * server's tenant (see {@link winRmCredentialsRef}). Servers without it use `winrm.credentialsRef`.
 */
export const WINRM_CREDENTIALS_LABEL = 'fleetward.dev/winrm-credentials';

/** A login's name: a label value, so that a server's label can name it. */
export const WINRM_CREDENTIALS_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;

/**
 * `<tenant>/winrm/<name>`: where `winrm credentials set <name>` stores a Windows login. A label can
 * only name a login of its server's own tenant, never another secret of the store.
 */
export function winRmCredentialsRef(tenantId: string, name: string): string {
  return `${tenantId}/winrm/${name}`;
}

/** The capabilities of `createWinRmAdapter` (a test checks that they are all of them). */
export const WINRM_CAPABILITIES = ['exec', 'login'] as const;

/**
 * The WinRM login stored under `ref`: a JSON document `{ "username", "password", "domain"? }`.
 * Errors name the reference, never the value.
 * @throws NotFoundError when there is no secret under `ref`.
 * @throws ValidationError when the secret is not JSON or not such a document.
 */
export async function readWinRmCredentials(secrets: SecretStore, ref: string): Promise<WinRmCredentials> {
  const text = await secrets.get(ref);
  if (text === undefined) {
    throw new NotFoundError('secret', ref, {
      details: {
        hint: `Store the login with: fleetward winrm credentials set <name> --username <user> --password-stdin (it is stored as <tenant>/winrm/<name>)`,
      },
    });
  }
  const subject = `WinRM credentials secret ${JSON.stringify(ref)}`;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // JSON.parse quotes the text it failed on: say only that it is not JSON.
    throw new ValidationError(subject, [{ path: [], message: 'is not JSON' }]);
  }
  const parsed = WinRmCredentialsSchema.safeParse(json);
  if (!parsed.success) {
    // zod's messages state the expectation, never the input.
    throw new ValidationError(
      subject,
      parsed.error.issues.map((i) => ({ path: i.path as (string | number)[], message: i.message })),
    );
  }
  return parsed.data;
}

/** The secret reference of `server`'s login: its label's, else `winrm.credentialsRef`. */
function credentialsRefOf(server: Server, winrm: WinRmConfig): string {
  const name = server.labels[WINRM_CREDENTIALS_LABEL];
  if (name) return winRmCredentialsRef(server.tenantId, name);
  if (winrm.credentialsRef) return winrm.credentialsRef;
  throw new ValidationError('winrm configuration', [
    {
      path: ['winrm', 'credentialsRef'],
      message: `no login for ${server.id}: label it ${WINRM_CREDENTIALS_LABEL}=<secret> or set winrm.credentialsRef in the configuration file`,
    },
  ]);
}

async function readCa(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new ValidationError('winrm.caFile', [
      { path: [], message: `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` },
    ]);
  }
}

/**
 * The WinRM adapter (named `winrm`, for `provider: 'winrm'` servers) the configuration describes.
 * Each server's login is read from the Fleet's secret store for every command: the login its
 * {@link WINRM_CREDENTIALS_LABEL} label names in its tenant, else `winrm.credentialsRef`; its certificate pin is
 * `pinnedCertificates[server.id]`, else `pinnedCertificates[server.address]`. The adapter is created,
 * and `caFile` read (once), on first use: a command that reaches no Windows server never reads it.
 */
export function winRmAdapterFrom(winrm: WinRmConfig): Adapter {
  let context: AdapterContext | undefined;
  const credentialsFor = async (server: Server): Promise<WinRmCredentials> => {
    const ref = credentialsRefOf(server, winrm);
    const secrets = context?.secrets;
    if (!secrets) {
      throw new ValidationError('winrm configuration', [
        {
          path: ['secrets'],
          message: `the login of ${server.id} is in the secret store (${ref}), which is not usable: set "secrets" in the configuration file (a SQLite store has one beside it), or its passphrase variable`,
        },
      ]);
    }
    return readWinRmCredentials(secrets, ref);
  };
  const pins = winrm.pinnedCertificates;
  const lazy = lazyAdapter('winrm', WINRM_CAPABILITIES, async () =>
    createWinRmAdapter({
      credentialsFor,
      auth: winrm.auth,
      https: winrm.https,
      ...(winrm.port ? { port: winrm.port } : {}),
      ...(winrm.caFile ? { ca: await readCa(winrm.caFile) } : {}),
      ...(Object.keys(pins).length > 0
        ? {
            certificateFingerprintFor: async (server: Server) =>
              pins[server.id] ?? (server.address ? pins[server.address] : undefined),
          }
        : {}),
      ...(winrm.connectTimeoutSeconds ? { connectTimeoutMs: winrm.connectTimeoutSeconds * 1000 } : {}),
    }),
  );
  return {
    ...lazy,
    attach(c) {
      context = c;
      lazy.attach?.(c);
    },
  };
}
