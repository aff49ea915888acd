import {
  AbortedError,
  type EmailMessage,
  type EmailSender,
  type FleetwardError,
  TimeoutError,
  TransportError,
  ValidationError,
  type ValidationIssue,
} from '@fleetward/core';
import nodemailer from 'nodemailer';
import addressparser from 'nodemailer/lib/addressparser';
import { IntegrationError } from './errors.js';
import { isLoopbackHost, scrub } from './http.js';

/** Options of {@link createSmtpSender}. The password comes from the caller's SecretStore. */
export interface SmtpSenderOptions {
  /** The SMTP server's host name or address. */
  host: string;
  /** 587 (submission, STARTTLS) or 465 (TLS); 1–65535. */
  port: number;
  /** TLS from the first byte (port 465). Default: `port === 465`; otherwise STARTTLS when offered. */
  secure?: boolean;
  /** Login; `user` and `pass` go together. Without it the server must accept mail unauthenticated. */
  auth?: { user: string; pass: string };
  /** Sender, `ops@example.com` or `Fleetward <ops@example.com>`. */
  from: string;
  /** TLS settings of the connection (certificate checks, SNI name, extra CAs). */
  tls?: { rejectUnauthorized?: boolean; servername?: string; ca?: string | Buffer | (string | Buffer)[] };
  /**
   * Refuse to send unless STARTTLS succeeds. Default: on when `auth` is set, `secure` is not and
   * the host is not loopback, so that a stripped STARTTLS offer cannot make the password travel
   * in the clear.
   */
  requireTLS?: boolean;
  /** Connection and greeting time-out, and twice that for an idle socket; default 30 s. */
  timeoutMs?: number;
}

const MAX_RECIPIENTS = 100;

// Each entry must be exactly one mailbox: `a@x, b@y` in one entry would add a recipient the
// caller did not list, and control characters have no business in an address.
function checkAddress(value: unknown, path: (string | number)[], issues: ValidationIssue[]): void {
  const parsed = typeof value === 'string' && !/\p{Cc}/u.test(value) ? addressparser(value) : [];
  const only = parsed.length === 1 ? parsed[0] : undefined;
  if (!only || only.group || !/^[^@\s]+@[^@\s]+$/.test(only.address ?? '')) {
    issues.push({ path, message: 'must be one email address' });
  }
}

interface SmtpFailure extends Error {
  code?: string;
  responseCode?: number;
  permanent?: boolean;
}

function classify(error: unknown, secrets: readonly string[], aborted: boolean): FleetwardError {
  const e = (error instanceof Error ? error : new Error(String(error))) as SmtpFailure;
  const message = `SMTP: ${scrub(e.message, secrets, 300)}`;
  const details = { integration: 'smtp', smtpCode: e.code, status: e.responseCode };
  if (aborted || e.code === 'EABORT') return new AbortedError('SMTP send aborted', { cause: e });
  if (e.code === 'EAUTH' || e.code === 'ENOAUTH') {
    return new IntegrationError('UNAUTHORIZED', message, {
      integration: 'smtp',
      status: e.responseCode,
      details,
    });
  }
  if (e.code === 'ETIMEDOUT') return new TimeoutError(message, { cause: e, details });
  // A reply code decides when there is one (RFC 5321: 5yz is final except 503, 4yz transient).
  if (e.responseCode !== undefined) {
    const permanent = e.permanent ?? (e.responseCode >= 500 && e.responseCode !== 503);
    if (!permanent) return new TransportError(message, { cause: e, details });
    return new IntegrationError('COMMAND_FAILED', message, {
      integration: 'smtp',
      status: e.responseCode,
      bodyExcerpt: scrub(String((e as { response?: unknown }).response ?? ''), secrets),
      details,
    });
  }
  if (e.code === 'ECONFIG' || e.code === 'EENVELOPE') {
    return new IntegrationError('COMMAND_FAILED', message, {
      integration: 'smtp',
      status: e.responseCode,
      details,
    });
  }
  // No reply at all: the connection failed, which trying again later can fix.
  return new TransportError(message, { cause: e, details });
}

/**
 * An {@link EmailSender} over SMTP (nodemailer). One connection per message, no pool: reports
 * are infrequent and a pooled connection would outlive a rotated password.
 *
 * Every header value is encoded by nodemailer, which folds CR/LF in the subject and names into
 * spaces, so no message field can add a header or a recipient; the subject is also flattened
 * here. Content is only ever the given strings or buffers: nodemailer's file and URL access is
 * off, so no field can make it read a local file or fetch a URL. The password is in no log line
 * (logging off) nor error.
 */
export function createSmtpSender(options: SmtpSenderOptions): EmailSender {
  const issues: ValidationIssue[] = [];
  if (!options.host || /[\s/]/.test(options.host))
    issues.push({ path: ['host'], message: 'must be a host name' });
  if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
    issues.push({ path: ['port'], message: 'must be 1-65535' });
  }
  if (options.auth && (!options.auth.user || !options.auth.pass)) {
    issues.push({ path: ['auth'], message: 'user and pass go together' });
  }
  checkAddress(options.from, ['from'], issues);
  if (issues.length) throw new ValidationError('SmtpSenderOptions', issues);

  const secure = options.secure ?? options.port === 465;
  const requireTLS =
    options.requireTLS ?? (options.auth !== undefined && !secure && !isLoopbackHost(options.host));
  const timeoutMs = options.timeoutMs ?? 30_000;
  const secrets = options.auth ? [options.auth.pass] : [];
  const transport = nodemailer.createTransport({
    host: options.host,
    port: options.port,
    secure,
    requireTLS,
    ...(options.auth ? { auth: { user: options.auth.user, pass: options.auth.pass } } : {}),
    ...(options.tls ? { tls: { ...options.tls } } : {}),
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs * 2,
    logger: false,
    debug: false,
    disableFileAccess: true,
    disableUrlAccess: true,
    maxRecipients: MAX_RECIPIENTS,
  });

  return {
    async send(message: EmailMessage, opts: { signal?: AbortSignal } = {}) {
      const problems: ValidationIssue[] = [];
      if (!Array.isArray(message.to) || message.to.length === 0 || message.to.length > MAX_RECIPIENTS) {
        problems.push({ path: ['to'], message: `must list 1-${MAX_RECIPIENTS} recipients` });
      } else {
        message.to.forEach((to, i) => {
          checkAddress(to, ['to', i], problems);
        });
      }
      (message.attachments ?? []).forEach((a, i) => {
        if (!a.filename || /\p{Cc}/u.test(a.filename)) {
          problems.push({ path: ['attachments', i, 'filename'], message: 'must be a file name' });
        }
        if (!/^[\w.+-]+\/[\w.+-]+$/.test(a.contentType)) {
          problems.push({ path: ['attachments', i, 'contentType'], message: 'must be a MIME type' });
        }
      });
      if (problems.length) throw new ValidationError('EmailMessage', problems);
      if (opts.signal?.aborted) throw new AbortedError('SMTP send aborted');

      try {
        const info = await transport.sendMail({
          from: options.from,
          to: message.to,
          // nodemailer folds line breaks too; doing it here keeps the subject identical whatever
          // transport ends up sending it.
          subject: message.subject.replace(/[\r\n]+/g, ' '),
          text: message.text,
          ...(message.html !== undefined ? { html: message.html } : {}),
          attachments: (message.attachments ?? []).map((a) => ({
            filename: a.filename,
            content: a.content,
            contentType: a.contentType,
          })),
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
        return { messageId: info.messageId };
      } catch (error) {
        throw classify(error, secrets, opts.signal?.aborted ?? false);
      }
    },
  };
}
