import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { Authenticator, type ConnectionState } from './auth.js';
import { createTestCertificates } from './certificate.js';
import { type ShellFaultState, ShellService, WSMAN_FAULT } from './shell.js';
import { faultEnvelope, text } from './soap.js';
import type { WinRmFake, WinRmFakeOptions, WinRmFakeRequest } from './types.js';
import { withWindowsUpdate } from './windows-update.js';

const SOAP_CONTENT_TYPE = 'application/soap+xml;charset=UTF-8';
const MAX_BODY_BYTES = 512 * 1024;

/**
 * Starts a WinRM (WS-Management) fake on 127.0.0.1 with a free port: HTTPS with a certificate
 * for `localhost`/127.0.0.1 signed by a CA generated for this fake (needs the `openssl` CLI), or
 * plain http with `http: true`. Close it with `close()`.
 *
 * @throws Error when `users` is empty or `auth` names no scheme.
 */
export async function startWinRmFake(options: WinRmFakeOptions): Promise<WinRmFake> {
  if (options.users.length === 0) throw new Error('startWinRmFake: `users` must name at least one account');
  const schemes = options.auth ?? ['basic', 'ntlm'];
  if (schemes.length === 0) throw new Error('startWinRmFake: `auth` must name at least one scheme');
  const authenticator = new Authenticator(options.users, schemes, options.computerName ?? 'WINFAKE');
  const shellFaults: ShellFaultState = { receiveTimeouts: 0, slowReceiveMs: 0 };
  const shells = new ShellService(withWindowsUpdate(options), shellFaults);
  const requests: WinRmFakeRequest[] = [];
  const connections = new WeakMap<Socket, ConnectionState>();
  let connectionCount = 0;
  let dropNext = false;
  let serverErrors = 0;

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    let connection = connections.get(req.socket);
    if (!connection) {
      connection = { id: ++connectionCount };
      connections.set(req.socket, connection);
    }
    const state = connection;
    readBody(req).then(
      (body) => serve(req, res, body, state),
      () => req.socket.destroy(),
    );
  };

  const serve = async (
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    connection: ConnectionState,
  ) => {
    if (dropNext) {
      dropNext = false;
      req.socket.destroy();
      return;
    }
    const log = (status: number, fields: Partial<WinRmFakeRequest>): void => {
      requests.push({
        action: undefined,
        status,
        authScheme: undefined,
        username: undefined,
        connection: connection.id,
        ...fields,
      });
    };
    if (req.method !== 'POST' || (req.url ?? '').split('?')[0] !== '/wsman') {
      res.writeHead(404).end();
      log(404, {});
      return;
    }
    const outcome = authenticator.authenticate(req, connection);
    if (!outcome.ok) {
      res.writeHead(401, {
        'WWW-Authenticate': outcome.challenge ? [outcome.challenge] : authenticator.offers(),
        'Content-Length': 0,
      });
      res.end();
      log(401, { authScheme: outcome.scheme });
      return;
    }
    const who = { authScheme: outcome.scheme, username: outcome.user.username };
    if (body.length === 0) {
      // pywinrm authenticates with an empty POST before sealing messages; Windows answers 200.
      res.writeHead(200, { 'Content-Length': 0 }).end();
      log(200, who);
      return;
    }
    if (/multipart\/encrypted/i.test(req.headers['content-type'] ?? '')) {
      res.writeHead(415, { 'Content-Length': 0 }).end();
      log(415, who);
      return;
    }
    const xml = body.toString('utf8');
    if (serverErrors > 0) {
      serverErrors--;
      const reply = faultEnvelope(text(xml, 'MessageID'), {
        code: 'Receiver',
        subcode: 'w:InternalError',
        wsmanCode: WSMAN_FAULT.internalError,
        message: 'The WS-Management service encountered an internal error (injected by the fake).',
      });
      send(res, 500, reply);
      log(500, {
        ...who,
        action: text(xml, 'Action')?.split('/').pop(),
        faultCode: WSMAN_FAULT.internalError,
      });
      return;
    }
    const reply = await shells.handle(xml, outcome.user);
    send(res, reply.status, reply.body);
    log(reply.status, {
      ...who,
      action: reply.action,
      ...(reply.faultCode ? { faultCode: reply.faultCode } : {}),
    });
  };

  let ca = '';
  let certificateFingerprint = '';
  let server: Server;
  if (options.http) {
    server = createHttpServer(handler);
  } else {
    const certificates = await createTestCertificates();
    ca = certificates.caPem;
    certificateFingerprint = certificates.fingerprint256;
    server = createHttpsServer({ cert: certificates.certPem, key: certificates.keyPem }, handler);
  }
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    endpoint: `${options.http ? 'http' : 'https'}://127.0.0.1:${port}/wsman`,
    port,
    ca,
    certificateFingerprint,
    requests,
    shells: () => shells.snapshot(),
    faults: {
      dropNextConnection: () => {
        dropNext = true;
      },
      serverError: (count) => {
        serverErrors = count;
      },
      slowReceive: (ms) => {
        shellFaults.slowReceiveMs = ms;
      },
      receiveTimeouts: (count) => {
        shellFaults.receiveTimeouts = count;
      },
      expirePassword: (username) => authenticator.expire(username),
    },
    close: async () => {
      shells.abortAll();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function send(res: ServerResponse, status: number, body: string): void {
  const bytes = Buffer.from(body, 'utf8');
  res.writeHead(status, { 'Content-Type': SOAP_CONTENT_TYPE, 'Content-Length': bytes.length });
  res.end(bytes);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) reject(new Error('request body too large'));
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
