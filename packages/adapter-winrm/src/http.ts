import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { isIP, type Socket } from 'node:net';
import tls from 'node:tls';
import { AbortedError, HostKeyMismatchError, TimeoutError, TransportError } from '@fleetward/core';
import { createType1Message, createType3Message, parseType2Message } from '@node-ntlm/core';
import { WsmanFaultError } from './errors.js';
import { type Envelope, parseReply, type WsmanReply } from './wsman.js';

/** A login on the Windows host. */
export interface WinRmLogin {
  username: string;
  password: string;
  /** NTLM domain; for `DOMAIN\user` logins. */
  domain?: string;
}

/** Where and how one connection reaches the WinRM service. */
export interface ConnectionOptions {
  host: string;
  port: number;
  https: boolean;
  path: string;
  auth: 'ntlm' | 'basic';
  login: WinRmLogin;
  /** PEM of the CA(s) that sign the server certificate. */
  ca?: string | Buffer | undefined;
  /** SHA-256 of the server certificate, uppercase hex with colons. */
  certificateFingerprint?: string | undefined;
  connectTimeoutMs: number;
  /** Bound on one HTTP exchange. */
  requestTimeoutMs: number;
}

/** Canonical form of a SHA-256 fingerprint: uppercase hex pairs joined by colons, as Node prints it. */
export function normalizeFingerprint(value: string): string {
  const hex = value
    .replace(/^sha256:/i, '')
    .replaceAll(':', '')
    .toUpperCase();
  return hex.match(/../g)?.join(':') ?? hex;
}

const CERT_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_SIGNATURE_FAILURE',
]);

type CreateConnection = (
  options: http.ClientRequestArgs,
  callback: (error: Error | null, socket?: Socket) => void,
) => undefined;

/**
 * A keep-alive agent with one socket, so that an NTLM handshake and the messages after it share
 * the connection it authenticated. Over https the socket is handed to HTTP only after the server
 * certificate is trusted (CA chain and host name, or the pinned fingerprint): no byte of a request,
 * and no Basic password, reaches a server that is not.
 */
function createAgent(options: ConnectionOptions): http.Agent {
  if (!options.https) return new http.Agent({ keepAlive: true, maxSockets: 1 });
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const pinned = options.certificateFingerprint;
  const createConnection: CreateConnection = (_args, callback) => {
    let done = false;
    const finish = (error: Error | null, socket?: Socket) => {
      if (done) return;
      done = true;
      if (error) {
        tlsSocket.destroy();
        callback(error);
      } else callback(null, socket);
    };
    const tlsSocket = tls.connect({
      host: options.host,
      port: options.port,
      ...(isIP(options.host) ? {} : { servername: options.host }),
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      // A pinned certificate is trusted by its fingerprint alone; otherwise the chain must verify.
      rejectUnauthorized: pinned === undefined || options.ca !== undefined,
      minVersion: 'TLSv1.2',
    });
    tlsSocket.setTimeout(options.connectTimeoutMs, () =>
      finish(new TimeoutError(`TLS connection to ${options.host}:${options.port} timed out`)),
    );
    tlsSocket.once('error', (error) => finish(error));
    tlsSocket.once('secureConnect', () => {
      tlsSocket.setTimeout(0);
      const seen = tlsSocket.getPeerCertificate().fingerprint256;
      if (pinned !== undefined && normalizeFingerprint(seen ?? '') !== pinned) {
        finish(
          new HostKeyMismatchError(
            `The certificate of ${options.host}:${options.port} does not match the pinned fingerprint`,
            {
              details: {
                host: options.host,
                port: options.port,
                seenFingerprint: seen,
                pinnedFingerprint: pinned,
              },
            },
          ),
        );
        return;
      }
      finish(null, tlsSocket);
    });
    return undefined;
  };
  (agent as unknown as { createConnection: CreateConnection }).createConnection = createConnection;
  return agent;
}

interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * One authenticated HTTP(S) connection to a WinRM endpoint, used for one shell's messages in
 * order. NTLM authenticates the connection once; when the server closes it, the next message meets
 * a 401 and the handshake runs again on the new connection.
 */
export class WsmanConnection {
  readonly endpoint: string;
  readonly #options: ConnectionOptions;
  readonly #agent: http.Agent;
  #ntlmReady = false;
  #reused = false;
  #closed = false;
  #inFlight = new Set<http.ClientRequest>();

  constructor(options: ConnectionOptions) {
    this.#options = options;
    this.#agent = createAgent(options);
    const host = isIP(options.host) === 6 ? `[${options.host}]` : options.host;
    this.endpoint = `${options.https ? 'https' : 'http'}://${host}:${options.port}${options.path}`;
  }

  /**
   * Sends `envelope` and returns the parsed reply.
   * @throws WsmanFaultError when the service answers with a SOAP fault.
   * @throws TransportError when the server cannot be reached, refuses the login (`details.phase`
   *   `authentication`, not retryable) or answers something that is not WS-Management.
   * @throws HostKeyMismatchError when the certificate does not match the pinned fingerprint.
   */
  async call(envelope: Envelope, what: string): Promise<WsmanReply> {
    const response = await this.#authenticatedPost(envelope.xml);
    if (response.status !== 200 && response.status !== 500 && response.status !== 400) {
      throw new TransportError(`WinRM ${what} on ${this.#where()} answered HTTP ${response.status}`, {
        details: { ...this.#details(), status: response.status, phase: what },
        retryable: response.status >= 500,
      });
    }
    const reply = parseReply(response.body);
    if (reply.fault) {
      throw new WsmanFaultError(
        `WinRM ${what} on ${this.#where()} failed: ${reply.fault.message}`,
        reply.fault,
        {
          details: { ...this.#details(), phase: what, status: response.status },
        },
      );
    }
    if (response.status !== 200) {
      throw new TransportError(
        `WinRM ${what} on ${this.#where()} answered HTTP ${response.status} without a fault`,
        {
          details: { ...this.#details(), status: response.status, phase: what },
        },
      );
    }
    if (reply.relatesTo !== undefined && reply.relatesTo !== envelope.messageId) {
      throw new TransportError(`WinRM ${what} reply from ${this.#where()} relates to another message`, {
        retryable: false,
        details: {
          ...this.#details(),
          phase: what,
          messageId: envelope.messageId,
          relatesTo: reply.relatesTo,
        },
      });
    }
    return reply;
  }

  /** Cuts every exchange in progress (e.g. a long-polling Receive); they reject with `AbortedError`. */
  interrupt(): void {
    for (const request of this.#inFlight) request.destroy(new AbortedError('WinRM request interrupted'));
    this.#ntlmReady = false;
  }

  /** Closes the connection. */
  close(): void {
    this.#closed = true;
    this.interrupt();
    this.#agent.destroy();
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Marks the connection as taken from the pool after sitting idle (see `#post`). */
  markReused(): void {
    this.#reused = true;
  }

  #where(): string {
    return `${this.#options.host}:${this.#options.port}`;
  }

  #details(): Record<string, unknown> {
    return {
      host: this.#options.host,
      port: this.#options.port,
      auth: this.#options.auth,
      username: this.#options.login.username,
    };
  }

  async #authenticatedPost(body: string): Promise<HttpResponse> {
    const { auth, login } = this.#options;
    if (auth === 'basic') {
      const token = Buffer.from(`${login.username}:${login.password}`, 'utf8').toString('base64');
      const response = await this.#post(body, `Basic ${token}`);
      if (response.status === 401) throw this.#loginRefused('Basic');
      return response;
    }
    if (this.#ntlmReady) {
      const response = await this.#post(body);
      if (response.status !== 401) return response;
      this.#ntlmReady = false;
    }
    return this.#ntlmHandshake(body);
  }

  /** Type 1 → 401 with the challenge → Type 3 carrying the message, on one connection. */
  async #ntlmHandshake(body: string): Promise<HttpResponse> {
    const { login } = this.#options;
    const domain = login.domain ?? '';
    const type1 = createType1Message({ domain, workstation: '' }).replace(/^NTLM /, '');
    let scheme = 'Negotiate';
    let challenge = await this.#post('', `${scheme} ${type1}`);
    let offered = challengeOf(challenge.headers['www-authenticate'], scheme);
    if (offered === undefined) {
      scheme = 'NTLM';
      challenge = await this.#post('', `${scheme} ${type1}`);
      offered = challengeOf(challenge.headers['www-authenticate'], scheme);
    }
    if (challenge.status !== 401 || offered === undefined) {
      throw new TransportError(`WinRM on ${this.#where()} did not offer an NTLM challenge`, {
        retryable: false,
        fault: 'caller',
        details: { ...this.#details(), phase: 'authentication', status: challenge.status },
      });
    }
    let type3: string;
    try {
      type3 = createType3Message(parseType2Message(`NTLM ${offered}`), {
        username: login.username,
        password: login.password,
        domain,
        workstation: '',
      }).replace(/^NTLM /, '');
    } catch (error) {
      throw new TransportError(`WinRM on ${this.#where()} sent an NTLM challenge that cannot be read`, {
        cause: error,
        retryable: false,
        details: { ...this.#details(), phase: 'authentication' },
      });
    }
    const response = await this.#post(body, `${scheme} ${type3}`);
    if (response.status === 401) throw this.#loginRefused('NTLM');
    this.#ntlmReady = true;
    return response;
  }

  #loginRefused(method: string): TransportError {
    return new TransportError(
      `WinRM login as ${this.#options.login.username} on ${this.#where()} refused (${method})`,
      {
        retryable: false,
        fault: 'caller',
        details: { ...this.#details(), phase: 'authentication', reason: 'login-refused' },
      },
    );
  }

  /**
   * A keep-alive socket that sat idle in the pool may have been closed by the server just as it
   * was reused; such a request never reached the service, so it is sent once more (Node's advice
   * for `reusedSocket`). Only the first exchange after the pool hands the connection out.
   */
  async #post(body: string, authorization?: string): Promise<HttpResponse> {
    const fresh = this.#reused;
    this.#reused = false;
    try {
      return await this.#postOnce(body, authorization);
    } catch (error) {
      if (!fresh || !(error instanceof TransportError) || error.details.stale !== true) throw error;
      this.#ntlmReady = false;
      return this.#authenticatedPost(body);
    }
  }

  #postOnce(body: string, authorization?: string): Promise<HttpResponse> {
    const { host, port, path, requestTimeoutMs } = this.#options;
    const payload = Buffer.from(body, 'utf8');
    return new Promise<HttpResponse>((resolve, reject) => {
      const request = (this.#options.https ? https : http).request({
        agent: this.#agent as https.Agent,
        host,
        port,
        path,
        method: 'POST',
        headers: {
          'Content-Type': 'application/soap+xml;charset=UTF-8',
          'Content-Length': payload.length,
          'User-Agent': 'Fleetward WinRM client',
          ...(authorization ? { Authorization: authorization } : {}),
        },
      });
      this.#inFlight.add(request);
      request.setTimeout(requestTimeoutMs, () =>
        request.destroy(
          new TimeoutError(`WinRM request to ${this.#where()} got no answer in ${requestTimeoutMs} ms`),
        ),
      );
      request.on('response', (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (c: Buffer) => chunks.push(c));
        response.on('error', (error) => request.destroy(error));
        response.on('end', () => {
          this.#inFlight.delete(request);
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          });
        });
      });
      request.on('error', (error) => {
        this.#inFlight.delete(request);
        this.#ntlmReady = false;
        const stale = request.reusedSocket && (error as { code?: unknown }).code === 'ECONNRESET';
        reject(this.#connectionError(error, stale));
      });
      request.end(payload);
    });
  }

  #connectionError(error: Error, stale: boolean): Error {
    if (
      error instanceof HostKeyMismatchError ||
      error instanceof AbortedError ||
      error instanceof TimeoutError
    ) {
      return error;
    }
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && CERT_ERRORS.has(code)) {
      return new TransportError(`The certificate of ${this.#where()} is not trusted (${code})`, {
        cause: error,
        retryable: false,
        fault: 'caller',
        details: { ...this.#details(), phase: 'tls', reason: 'certificate-not-trusted', errno: code },
      });
    }
    return new TransportError(
      `WinRM connection to ${this.#where()} failed: ${typeof code === 'string' ? code : error.message}`,
      {
        cause: error,
        details: {
          ...this.#details(),
          phase: 'http',
          ...(typeof code === 'string' ? { errno: code } : {}),
          ...(stale ? { stale } : {}),
        },
      },
    );
  }
}

/** The base64 token after `scheme` in a `WWW-Authenticate` header, if the server sent one. */
function challengeOf(header: string | string[] | undefined, scheme: string): string | undefined {
  const values = Array.isArray(header) ? header : header === undefined ? [] : header.split(',');
  for (const value of values) {
    const match = new RegExp(`^\\s*${scheme}\\s+([A-Za-z0-9+/=]+)\\s*$`, 'i').exec(value);
    if (match?.[1]) return match[1];
  }
  return undefined;
}

/** SHA-256 fingerprint of a PEM or DER certificate, as {@link normalizeFingerprint} writes it. */
export function certificateFingerprintOf(certificate: string | Buffer): string {
  const der =
    typeof certificate === 'string' || certificate.includes('-----BEGIN')
      ? Buffer.from(
          certificate
            .toString()
            .replace(/-----(BEGIN|END) CERTIFICATE-----/g, '')
            .replace(/\s+/g, ''),
          'base64',
        )
      : certificate;
  return normalizeFingerprint(createHash('sha256').update(der).digest('hex'));
}
