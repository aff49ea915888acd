import type { IncomingMessage } from 'node:http';
import {
  createNtlmChallenge,
  type NtlmChallenge,
  ntlmMessageType,
  parseNtlmAuthenticate,
  verifyNtlmV2Response,
} from './ntlm.js';
import type { WinRmFakeAuthScheme, WinRmFakeUser } from './types.js';

/** What the fake remembers about one TCP connection: NTLM authenticates the connection, not the request. */
export interface ConnectionState {
  id: number;
  user?: WinRmFakeUser;
  challenge?: NtlmChallenge;
}

/** The outcome of checking a request's credentials. */
export type AuthOutcome =
  | { ok: true; user: WinRmFakeUser; scheme: string }
  | { ok: false; scheme: string | undefined; challenge?: string };

/** Checks Basic and NTLM (`NTLM` or `Negotiate` header) credentials against the fake's accounts. */
export class Authenticator {
  readonly #users: WinRmFakeUser[];
  readonly #schemes: ReadonlySet<WinRmFakeAuthScheme>;
  readonly #computerName: string;
  readonly #expired = new Set<string>();

  constructor(users: WinRmFakeUser[], schemes: WinRmFakeAuthScheme[], computerName: string) {
    this.#users = users;
    this.#schemes = new Set(schemes);
    this.#computerName = computerName;
  }

  /** Log-ons as this user fail from now on. */
  expire(username: string): void {
    this.#expired.add(username.toLowerCase());
  }

  /** `WWW-Authenticate` values of a bare 401. */
  offers(): string[] {
    const offers: string[] = [];
    if (this.#schemes.has('ntlm')) offers.push('Negotiate');
    if (this.#schemes.has('basic')) offers.push('Basic realm="WSMAN"');
    return offers;
  }

  authenticate(req: IncomingMessage, connection: ConnectionState): AuthOutcome {
    const header = req.headers.authorization;
    if (!header) {
      return connection.user
        ? { ok: true, user: connection.user, scheme: 'connection' }
        : { ok: false, scheme: undefined };
    }
    const [scheme = '', token = ''] = header.trim().split(/\s+/, 2);
    const lower = scheme.toLowerCase();
    if (lower === 'basic' && this.#schemes.has('basic')) return this.#basic(scheme, token);
    if ((lower === 'ntlm' || lower === 'negotiate') && this.#schemes.has('ntlm')) {
      return this.#ntlm(scheme, Buffer.from(token, 'base64'), connection);
    }
    return { ok: false, scheme };
  }

  #basic(scheme: string, token: string): AuthOutcome {
    // Clients disagree on the charset (python-requests sends Latin-1), so either decoding may match.
    const raw = Buffer.from(token, 'base64');
    for (const decoded of [raw.toString('utf8'), raw.toString('latin1')]) {
      const colon = decoded.indexOf(':');
      if (colon < 0) continue;
      const { username, domain } = splitAccount(decoded.slice(0, colon));
      const user = this.#find(username, domain);
      if (user !== undefined && user.password === decoded.slice(colon + 1)) return { ok: true, user, scheme };
    }
    return { ok: false, scheme };
  }

  #ntlm(scheme: string, token: Buffer, connection: ConnectionState): AuthOutcome {
    const type = ntlmMessageType(token);
    if (type === 1) {
      connection.user = undefined;
      connection.challenge = createNtlmChallenge(token, this.#computerName);
      return { ok: false, scheme, challenge: `${scheme} ${connection.challenge.message.toString('base64')}` };
    }
    const challenge = connection.challenge;
    connection.challenge = undefined;
    const message = type === 3 ? parseNtlmAuthenticate(token) : undefined;
    if (!challenge || !message) return { ok: false, scheme };
    const user = this.#find(message.username, message.domain);
    if (!user) return { ok: false, scheme };
    const proven = verifyNtlmV2Response(
      message.ntChallengeResponse,
      challenge.serverChallenge,
      user.password,
      message.username,
      message.domain,
    );
    if (!proven) return { ok: false, scheme };
    connection.user = user;
    return { ok: true, user, scheme };
  }

  #find(username: string, domain: string): WinRmFakeUser | undefined {
    const user = this.#users.find((u) => u.username.toLowerCase() === username.toLowerCase());
    if (!user || this.#expired.has(user.username.toLowerCase())) return undefined;
    if (user.domain && domain && user.domain.toLowerCase() !== domain.toLowerCase()) return undefined;
    return user;
  }
}

/** `DOMAIN\user` or `user@domain` or `user`. */
function splitAccount(account: string): { username: string; domain: string } {
  const slash = account.indexOf('\\');
  if (slash >= 0) return { domain: account.slice(0, slash), username: account.slice(slash + 1) };
  const at = account.lastIndexOf('@');
  if (at > 0) return { username: account.slice(0, at), domain: account.slice(at + 1) };
  return { username: account, domain: '' };
}
