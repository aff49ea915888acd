import type { Server } from '@fleetward/core';
import { z } from 'zod';

/** `setTimeout` silently turns longer delays into 1 ms, so every delay is capped here. */
export const MAX_TIMER_MS = 2_147_483_647;

/** A SHA-256 certificate fingerprint: 64 hex digits, optionally colon-separated, optionally `sha256:`-prefixed. */
export const CERTIFICATE_FINGERPRINT_PATTERN = /^(sha256:)?([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$/i;

const fn = <T>(what: string) =>
  z.custom<T>((v) => typeof v === 'function', { message: `must be a function (${what})` });

/** A Windows login. */
export const WinRmCredentialsSchema = z.strictObject({
  /** Account name, e.g. `Administrator`; for a domain account also give `domain` (or write `DOMAIN\\user`). */
  username: z.string().min(1).max(256),
  password: z.string().min(1),
  /** NTLM domain or computer name. @default the domain part of `DOMAIN\\user`, else none */
  domain: z.string().min(1).max(256).optional(),
});

/** A Windows login; see {@link WinRmCredentialsSchema}. */
export type WinRmCredentials = z.input<typeof WinRmCredentialsSchema>;

/** Options of {@link createWinRmAdapter}. */
export const WinRmAdapterOptionsSchema = z
  .strictObject({
    /** Registration name. @default 'winrm' */
    name: z.string().min(1).max(64).default('winrm'),
    /** Login used for every server that `credentialsFor` does not cover. */
    credentials: WinRmCredentialsSchema.optional(),
    /**
     * Per-server login, e.g. fetched from a `SecretStore`; called for every `exec`. Returning
     * `undefined` falls back to `credentials`.
     */
    credentialsFor: fn<(server: Server) => Promise<WinRmCredentials | undefined>>(
      'server => Promise<WinRmCredentials | undefined>',
    ).optional(),
    /** Authentication scheme. Basic works only with local accounts and must be enabled on the host. @default 'ntlm' */
    auth: z.enum(['ntlm', 'basic']).default('ntlm'),
    /**
     * WinRM over HTTPS (port 5986). `false` selects plain HTTP (port 5985): the messages, and with
     * Basic the password, cross the network readable, and the host must allow unencrypted
     * traffic (NTLM message sealing is not implemented). A warning is emitted once per adapter.
     * @default true
     */
    https: z.boolean().default(true),
    /** @default server.port, else 5986 over https and 5985 over http */
    port: z.number().int().min(1).max(65535).optional(),
    /** @default '/wsman' */
    path: z
      .string()
      .regex(/^\/[A-Za-z0-9/_.-]*$/, 'must be an absolute URL path')
      .default('/wsman'),
    /**
     * PEM of the CA(s) that sign the hosts' certificates (e.g. the domain's CA). Without `ca` or
     * `certificateFingerprint` the system's trusted CAs are used. The host name is checked too.
     */
    ca: z.union([z.string().min(1), z.instanceof(Buffer)]).optional(),
    /**
     * SHA-256 fingerprint of the host certificate (as `Get-ChildItem Cert:\LocalMachine\My` shows
     * it, colons optional). Alone it trusts that one certificate whoever signed it (self-signed
     * WinRM listeners); with `ca` the chain must verify as well.
     */
    certificateFingerprint: z
      .string()
      .regex(CERTIFICATE_FINGERPRINT_PATTERN, 'must be a SHA-256 fingerprint')
      .optional(),
    /** Per-server fingerprint, in addition to (and taking precedence over) `certificateFingerprint`. */
    certificateFingerprintFor: fn<(server: Server) => Promise<string | undefined>>(
      'server => Promise<string | undefined>',
    ).optional(),
    /** PowerShell executable on the hosts. @default 'powershell.exe' (Windows PowerShell 5.1) */
    powershell: z
      .string()
      .min(1)
      .max(260)
      .regex(/^[^"\s]+$/, 'must be a path without spaces or quotes')
      .default('powershell.exe'),
    /** Bound on TCP connect and TLS handshake. @default 20_000 */
    connectTimeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).default(20_000),
    /** WS-Man `OperationTimeout`: how long the host holds a Receive open when there is no output. @default 20 */
    operationTimeoutSec: z.number().int().min(1).max(3600).default(20),
    /**
     * A connection that ended a command cleanly is kept this long for the next command to the same
     * endpoint with the same login (NTLM then needs no new handshake); 0 closes it at once.
     * Keep it under the host's HTTP idle timeout (HTTP.sys: 120 s). @default 30_000
     */
    idleTimeoutMs: z.number().int().min(0).max(MAX_TIMER_MS).default(30_000),
    /** Used when `ExecOptions.timeoutMs` is not given. @default 300_000 */
    defaultTimeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).default(300_000),
    /** Used when `ExecOptions.maxOutputBytes` is not given. @default 1_048_576 */
    defaultMaxOutputBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(1_048_576),
  })
  .superRefine((o, ctx) => {
    if (o.credentials === undefined && o.credentialsFor === undefined) {
      ctx.addIssue({ code: 'custom', path: ['credentials'], message: 'give credentials or credentialsFor' });
    }
    if (!o.https) {
      for (const field of ['ca', 'certificateFingerprint', 'certificateFingerprintFor'] as const) {
        if (o[field] !== undefined) {
          ctx.addIssue({ code: 'custom', path: [field], message: 'has no effect with https: false' });
        }
      }
    }
  });

/**
 * Options of {@link createWinRmAdapter}; see {@link WinRmAdapterOptionsSchema}.
 *
 * @useDeclaredType
 */
export type WinRmAdapterOptions = z.input<typeof WinRmAdapterOptionsSchema>;

/** Options after validation and defaults. */
export type WinRmAdapterConfig = z.output<typeof WinRmAdapterOptionsSchema>;
