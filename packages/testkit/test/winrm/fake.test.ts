import { createHmac, randomUUID, X509Certificate } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { describeIfAvailable, unavailableWithout } from '@fleetward/testkit';
import {
  builtinCmd,
  createNtlmChallenge,
  decodePowerShellCommand,
  ntowfv2,
  parseNtlmAuthenticate,
  startWinRmFake,
  verifyNtlmV2Response,
  type WinRmFake,
  type WinRmFakeCommand,
} from '@fleetward/testkit/winrm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// MS-NLMP 4.2.4 (NTLMv2 authentication): user "User", domain "Domain", password "Password",
// server challenge 0123456789abcdef, client challenge aa…aa, time 0, target info Domain/Server.
const VECTOR = {
  serverChallenge: Buffer.from('0123456789abcdef', 'hex'),
  ntowfv2: '0c868a403bfd7a93a3001ef22ef02e3f',
  ntProofStr: '68cd0ab851e51c96aabc927bebef6a1c',
};

function avPair(id: number, value: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16LE(id, 0);
  head.writeUInt16LE(value.length, 2);
  return Buffer.concat([head, value]);
}

function vectorBlob(): Buffer {
  const info = Buffer.concat([
    avPair(2, Buffer.from('Domain', 'utf16le')),
    avPair(1, Buffer.from('Server', 'utf16le')),
    avPair(0, Buffer.alloc(0)),
  ]);
  return Buffer.concat([
    Buffer.from([1, 1, 0, 0, 0, 0, 0, 0]),
    Buffer.alloc(8),
    Buffer.alloc(8, 0xaa),
    Buffer.alloc(4),
    info,
    Buffer.alloc(4),
  ]);
}

/** A client-side AUTHENTICATE message, built independently of the fake's parser. */
function authenticateMessage(fields: {
  domain: string;
  user: string;
  workstation: string;
  nt: Buffer;
}): Buffer {
  const payload = [
    Buffer.alloc(24),
    fields.nt,
    ...[fields.domain, fields.user, fields.workstation].map((s) => Buffer.from(s, 'utf16le')),
    Buffer.alloc(0),
  ];
  const header = Buffer.alloc(88);
  header.write('NTLMSSP\0', 0, 'latin1');
  header.writeUInt32LE(3, 8);
  let offset = header.length;
  [12, 20, 28, 36, 44, 52].forEach((at, i) => {
    const part = payload[i] as Buffer;
    header.writeUInt16LE(part.length, at);
    header.writeUInt16LE(part.length, at + 2);
    header.writeUInt32LE(offset, at + 4);
    offset += part.length;
  });
  header.writeUInt32LE(0x00088201, 60);
  return Buffer.concat([header, ...payload]);
}

describe('NTLMv2 verification', () => {
  it('ntowfv2 — matches the MS-NLMP test vector', () => {
    expect(ntowfv2('Password', 'User', 'Domain').toString('hex')).toBe(VECTOR.ntowfv2);
  });

  it('verifyNtlmV2Response — accepts the MS-NLMP NTProofStr and rejects a wrong password or challenge', () => {
    const response = Buffer.concat([Buffer.from(VECTOR.ntProofStr, 'hex'), vectorBlob()]);
    expect(verifyNtlmV2Response(response, VECTOR.serverChallenge, 'Password', 'User', 'Domain')).toBe(true);
    expect(verifyNtlmV2Response(response, VECTOR.serverChallenge, 'password', 'User', 'Domain')).toBe(false);
    expect(verifyNtlmV2Response(response, Buffer.alloc(8), 'Password', 'User', 'Domain')).toBe(false);
    expect(
      verifyNtlmV2Response(Buffer.alloc(24, 1), VECTOR.serverChallenge, 'Password', 'User', 'Domain'),
    ).toBe(false);
  });

  it('createNtlmChallenge — a CHALLENGE message with the random server challenge and target info', () => {
    const negotiate = Buffer.alloc(32);
    negotiate.write('NTLMSSP\0', 0, 'latin1');
    negotiate.writeUInt32LE(1, 8);
    negotiate.writeUInt32LE(0xe2088297, 12);
    const a = createNtlmChallenge(negotiate, 'winhost');
    const b = createNtlmChallenge(negotiate, 'winhost');
    expect(a.message.readUInt32LE(8)).toBe(2);
    expect(a.message.subarray(24, 32)).toEqual(a.serverChallenge);
    expect(a.serverChallenge.equals(b.serverChallenge)).toBe(false);
    expect(a.message.readUInt32LE(20) & 0x00800000).not.toBe(0);
    const infoLength = a.message.readUInt16LE(40);
    const info = a.message.subarray(a.message.readUInt32LE(44), a.message.readUInt32LE(44) + infoLength);
    expect(info.toString('utf16le')).toContain('WINHOST');
  });

  it('parseNtlmAuthenticate — reads user, domain and the NT response of an AUTHENTICATE message', () => {
    const nt = Buffer.concat([Buffer.from(VECTOR.ntProofStr, 'hex'), vectorBlob()]);
    const parsed = parseNtlmAuthenticate(
      authenticateMessage({ domain: 'Domain', user: 'User', workstation: 'COMPUTER', nt }),
    );
    expect(parsed).toMatchObject({ domain: 'Domain', username: 'User', workstation: 'COMPUTER' });
    expect(parsed?.ntChallengeResponse.equals(nt)).toBe(true);
    expect(parseNtlmAuthenticate(Buffer.from('NTLMSSP\0garbage', 'latin1'))).toBeUndefined();
  });
});

describe('command emulation', () => {
  it('decodePowerShellCommand — decodes -EncodedCommand and its prefixes, ignores other programs', () => {
    const b64 = Buffer.from("Get-Date; 'x'", 'utf16le').toString('base64');
    expect(decodePowerShellCommand(`powershell -encodedcommand ${b64}`)).toBe("Get-Date; 'x'");
    expect(
      decodePowerShellCommand(`C:\\Windows\\powershell.exe -NoProfile -NonInteractive -Enc ${b64}`),
    ).toBe("Get-Date; 'x'");
    expect(decodePowerShellCommand(`pwsh /e ${b64}`)).toBe("Get-Date; 'x'");
    expect(decodePowerShellCommand(`powershell -Command Get-Date`)).toBeUndefined();
    expect(decodePowerShellCommand(`cmd /c powershell -enc ${b64}`)).toBeUndefined();
  });

  it('builtinCmd — echo to stdout or stderr, exit codes, unknown programs', () => {
    expect(builtinCmd('cmd /c echo hi & exit 0')).toEqual({ stdout: 'hi\r\n', stderr: '', exitCode: 0 });
    expect(builtinCmd('echo oops 1>&2 & exit /b 7')).toEqual({ stdout: '', stderr: 'oops\r\n', exitCode: 7 });
    expect(builtinCmd('frobnicate --now')).toMatchObject({
      exitCode: 1,
      stderr: expect.stringContaining("'frobnicate' is not recognized"),
    });
  });
});

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  fingerprint?: string;
}

const SHELL = 'http://schemas.microsoft.com/wbem/wsman/1/windows/shell';
const TRANSFER = 'http://schemas.xmlsoap.org/ws/2004/09/transfer';

function envelope(action: string, body: string, shellId?: string): { xml: string; messageId: string } {
  const messageId = `uuid:${randomUUID()}`;
  const selector = shellId
    ? `<w:SelectorSet><w:Selector Name="ShellId">${shellId}</w:Selector></w:SelectorSet>`
    : '';
  const xml =
    `<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" ` +
    `xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="${SHELL}"><env:Header>` +
    `<a:Action mustUnderstand="true">${action}</a:Action><a:MessageID>${messageId}</a:MessageID>` +
    `<w:OperationTimeout>PT1S</w:OperationTimeout><w:ResourceURI mustUnderstand="true">${SHELL}/cmd</w:ResourceURI>${selector}` +
    `</env:Header><env:Body>${body}</env:Body></env:Envelope>`;
  return { xml, messageId };
}

function tag(xml: string, name: string): string | undefined {
  return xml.match(new RegExp(`<(?:\\w+:)?${name}[^>]*>([^<]*)<`))?.[1];
}

describeIfAvailable('WinRM fake over HTTPS', unavailableWithout({ commands: ['openssl'] }), () => {
  const basic = `Basic ${Buffer.from('ops:pw').toString('base64')}`;
  const started: { command: WinRmFakeCommand; script?: string }[] = [];
  let fake: WinRmFake;

  beforeAll(async () => {
    fake = await startWinRmFake({
      users: [{ username: 'ops', password: 'pw', domain: 'CORP' }],
      powershell: (script, command) => {
        started.push({ command, script });
        return { stdout: `ran ${script}`, exitCode: 5 };
      },
      run: async (command) => {
        started.push({ command });
        if (command.command !== 'wait') return undefined;
        await new Promise((resolve) => command.signal.addEventListener('abort', resolve));
        return { stdout: 'interrupted', exitCode: 130 };
      },
    });
  });

  afterAll(() => fake?.close());

  function post(xml: string, headers: Record<string, string> = { Authorization: basic }): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        fake.endpoint,
        {
          method: 'POST',
          ca: fake.ca,
          agent: false,
          headers: { 'Content-Type': 'application/soap+xml;charset=UTF-8', ...headers },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              body: Buffer.concat(chunks).toString('utf8'),
              headers: res.headers,
              fingerprint: (res.socket as TLSSocket).getPeerX509Certificate?.()?.fingerprint256,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(xml);
    });
  }

  async function openShell(): Promise<string> {
    const reply = await post(
      envelope(
        `${TRANSFER}/Create`,
        `<rsp:Shell><rsp:WorkingDirectory>D:\\ops</rsp:WorkingDirectory><rsp:Environment><rsp:Variable Name="A">1 &amp; 2</rsp:Variable></rsp:Environment></rsp:Shell>`,
      ).xml,
    );
    expect(reply.status).toBe(200);
    return reply.body.match(/<w:Selector Name="ShellId">([^<]+)</)?.[1] as string;
  }

  async function startCommand(shellId: string, command: string, args: string[] = []): Promise<string> {
    const argXml = args.map((a) => `<rsp:Arguments>${a}</rsp:Arguments>`).join('');
    const reply = await post(
      envelope(
        `${SHELL}/Command`,
        `<rsp:CommandLine><rsp:Command>${command}</rsp:Command>${argXml}</rsp:CommandLine>`,
        shellId,
      ).xml,
    );
    expect(reply.status).toBe(200);
    return tag(reply.body, 'CommandId') as string;
  }

  function receive(shellId: string, commandId: string): Promise<Reply> {
    return post(
      envelope(
        `${SHELL}/Receive`,
        `<rsp:Receive><rsp:DesiredStream CommandId="${commandId}">stdout stderr</rsp:DesiredStream></rsp:Receive>`,
        shellId,
      ).xml,
    );
  }

  async function receiveAll(
    shellId: string,
    commandId: string,
  ): Promise<{ stdout: string; exitCode: number; timeouts: number }> {
    let stdout = '';
    let timeouts = 0;
    for (let i = 0; i < 10; i++) {
      const reply = await receive(shellId, commandId);
      if (reply.body.includes('Code="2150858793"')) {
        timeouts++;
        continue;
      }
      expect(reply.status).toBe(200);
      for (const m of reply.body.matchAll(/<rsp:Stream Name="stdout"[^>]*>([^<]*)</g))
        stdout += Buffer.from(m[1] as string, 'base64').toString('utf8');
      const exit = tag(reply.body, 'ExitCode');
      if (reply.body.includes('CommandState/Done') && exit !== undefined)
        return { stdout, exitCode: Number(exit), timeouts };
    }
    throw new Error('command never finished');
  }

  it('certificate — the served certificate is signed by `ca` and has `certificateFingerprint`', async () => {
    const reply = await post(envelope(`${TRANSFER}/Create`, '<rsp:Shell/>').xml);
    expect(reply.status).toBe(200);
    expect(reply.fingerprint).toBe(fake.certificateFingerprint);
    expect(new X509Certificate(fake.ca).subject).toContain('test CA');
    expect(fake.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/wsman$/);
  });

  it('Create/Command/Send/Receive/Delete — stdin, env, working directory and RelatesTo reach the client and host', async () => {
    const shellId = await openShell();
    const commandId = await startCommand(shellId, 'findstr', ['x']);
    const send = envelope(
      `${SHELL}/Send`,
      `<rsp:Send><rsp:Stream Name="stdin" CommandId="${commandId}" End="true">${Buffer.from('line x\r\n').toString('base64')}</rsp:Stream></rsp:Send>`,
      shellId,
    );
    const sent = await post(send.xml);
    expect(sent.status).toBe(200);
    expect(tag(sent.body, 'RelatesTo')).toBe(send.messageId);
    const output = await receiveAll(shellId, commandId);
    expect(output.exitCode).toBe(1);
    const seen = started.find((s) => s.command.commandId === commandId)?.command;
    expect(seen).toMatchObject({
      command: 'findstr',
      arguments: ['x'],
      env: { A: '1 & 2' },
      workingDirectory: 'D:\\ops',
      codepage: 437,
      username: 'ops',
    });
    expect(seen?.stdin?.toString()).toBe('line x\r\n');
    const del = envelope(`${TRANSFER}/Delete`, '', shellId);
    const deleted = await post(del.xml);
    expect(deleted.status).toBe(200);
    expect(tag(deleted.body, 'RelatesTo')).toBe(del.messageId);
    expect(fake.shells().some((s) => s.shellId === shellId)).toBe(false);
  });

  it('Receive — a PowerShell -EncodedCommand reaches the hook decoded; exit code kept', async () => {
    const shellId = await openShell();
    const script = `Write-Output 'it''s "quoted" & <tagged>'`;
    const commandId = await startCommand(shellId, 'powershell.exe', [
      '-NoProfile',
      '-EncodedCommand',
      Buffer.from(script, 'utf16le').toString('base64'),
    ]);
    expect(await receiveAll(shellId, commandId)).toEqual({
      stdout: `ran ${script}`,
      exitCode: 5,
      timeouts: 0,
    });
  });

  it('Receive — a command still running answers the operation time-out fault; Signal ctrl_c aborts it', async () => {
    const shellId = await openShell();
    const commandId = await startCommand(shellId, 'wait');
    const pending = await receive(shellId, commandId);
    expect(pending.status).toBe(500);
    expect(pending.body).toContain('Code="2150858793"');
    const signal = envelope(
      `${SHELL}/Signal`,
      `<rsp:Signal CommandId="${commandId}"><rsp:Code>${SHELL}/signal/ctrl_c</rsp:Code></rsp:Signal>`,
      shellId,
    );
    const signalled = await post(signal.xml);
    expect(tag(signalled.body, 'RelatesTo')).toBe(signal.messageId);
    expect(await receiveAll(shellId, commandId)).toEqual({
      stdout: 'interrupted',
      exitCode: 130,
      timeouts: 0,
    });
    expect(fake.shells().find((s) => s.shellId === shellId)?.commands[0]?.signals).toEqual(['ctrl_c']);
  });

  it('faults — unknown shell, unknown command and unsupported action are SOAP faults', async () => {
    const unknownShell = await post(
      envelope(`${SHELL}/Command`, '<rsp:CommandLine><rsp:Command>x</rsp:Command></rsp:CommandLine>', 'NOPE')
        .xml,
    );
    expect(unknownShell.status).toBe(500);
    expect(unknownShell.body).toContain('Code="2150858843"');
    expect(unknownShell.body).toContain('InvalidSelectors');
    const shellId = await openShell();
    const unknownCommand = await receive(shellId, 'NOT-A-COMMAND');
    expect(unknownCommand.body).toContain('s:Fault');
    const badAction = await post(envelope(`${SHELL}/Frobnicate`, '', shellId).xml);
    expect(badAction.status).toBe(500);
    expect(badAction.body).toContain('ActionNotSupported');
  });

  it('faults — receiveTimeouts, serverError, slowReceive and dropNextConnection', async () => {
    const shellId = await openShell();
    const commandId = await startCommand(shellId, 'cmd', ['/c', 'echo', 'ok']);
    fake.faults.receiveTimeouts(2);
    expect(await receiveAll(shellId, commandId)).toEqual({ stdout: 'ok\r\n', exitCode: 0, timeouts: 2 });

    fake.faults.serverError(1);
    const failed = await post(envelope(`${TRANSFER}/Create`, '<rsp:Shell/>').xml);
    expect(failed.status).toBe(500);
    expect(failed.body).toContain('InternalError');
    expect((await post(envelope(`${TRANSFER}/Create`, '<rsp:Shell/>').xml)).status).toBe(200);

    const slowCommand = await startCommand(shellId, 'cmd', ['/c', 'exit', '4']);
    fake.faults.slowReceive(300);
    const before = Date.now();
    await receive(shellId, slowCommand);
    expect(Date.now() - before).toBeGreaterThanOrEqual(290);
    fake.faults.slowReceive(0);

    fake.faults.dropNextConnection();
    await expect(post(envelope(`${TRANSFER}/Create`, '<rsp:Shell/>').xml)).rejects.toThrow(
      /socket hang up|ECONNRESET/,
    );
    expect((await post(envelope(`${TRANSFER}/Create`, '<rsp:Shell/>').xml)).status).toBe(200);
  });

  it('auth — no or wrong credentials get 401 with the offered schemes; sealed NTLM bodies get 415', async () => {
    const none = await post(envelope(`${TRANSFER}/Create`, '<rsp:Shell/>').xml, {});
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toEqual(expect.stringContaining('Negotiate'));
    expect(none.headers['www-authenticate']).toEqual(expect.stringContaining('Basic realm="WSMAN"'));
    const wrong = await post(envelope(`${TRANSFER}/Create`, '<rsp:Shell/>').xml, {
      Authorization: `Basic ${Buffer.from('ops:nope').toString('base64')}`,
    });
    expect(wrong.status).toBe(401);
    const otherDomain = await post(envelope(`${TRANSFER}/Create`, '<rsp:Shell/>').xml, {
      Authorization: `Basic ${Buffer.from('EVIL\\ops:pw').toString('base64')}`,
    });
    expect(otherDomain.status).toBe(401);
    const sealed = await post('--Encrypted Boundary--', {
      Authorization: basic,
      'Content-Type': 'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted"',
    });
    expect(sealed.status).toBe(415);
  });

  it('auth — NTLM: a forged NTProofStr is refused, a real one authenticates the connection', async () => {
    // One keep-alive connection carries the NEGOTIATE and the AUTHENTICATE legs, as NTLM requires.
    const negotiate = Buffer.alloc(32);
    negotiate.write('NTLMSSP\0', 0, 'latin1');
    negotiate.writeUInt32LE(1, 8);
    negotiate.writeUInt32LE(0xe2088297, 12);
    const { Agent } = await import('node:https');
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: fake.ca });
    const leg = (authorization: string): Promise<Reply> =>
      new Promise((resolve, reject) => {
        const headers: Record<string, string> = authorization ? { Authorization: authorization } : {};
        const req = httpsRequest(fake.endpoint, { method: 'POST', agent, headers }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: '', headers: res.headers }));
        });
        req.on('error', reject);
        req.end(envelope(`${TRANSFER}/Create`, '<rsp:Shell/>').xml);
      });
    const challenged = await leg(`NTLM ${negotiate.toString('base64')}`);
    expect(challenged.status).toBe(401);
    const challenge = Buffer.from(
      String(challenged.headers['www-authenticate']).split(' ')[1] as string,
      'base64',
    );
    const serverChallenge = challenge.subarray(24, 32);
    const blob = vectorBlob();
    const forge = (password: string) =>
      createHmac('md5', ntowfv2(password, 'ops', 'CORP'))
        .update(Buffer.concat([serverChallenge, blob]))
        .digest();
    const bad = authenticateMessage({
      domain: 'CORP',
      user: 'ops',
      workstation: 'W',
      nt: Buffer.concat([forge('guess'), blob]),
    });
    expect((await leg(`NTLM ${bad.toString('base64')}`)).status).toBe(401);

    const again = await leg(`Negotiate ${negotiate.toString('base64')}`);
    const secondChallenge = Buffer.from(
      String(again.headers['www-authenticate']).split(' ')[1] as string,
      'base64',
    );
    const proof = createHmac('md5', ntowfv2('pw', 'ops', 'CORP'))
      .update(Buffer.concat([secondChallenge.subarray(24, 32), blob]))
      .digest();
    const good = authenticateMessage({
      domain: 'CORP',
      user: 'ops',
      workstation: 'W',
      nt: Buffer.concat([proof, blob]),
    });
    expect((await leg(`Negotiate ${good.toString('base64')}`)).status).toBe(200);
    expect((await leg('')).status).toBe(200);
    expect(fake.requests.at(-1)).toMatchObject({
      authScheme: 'connection',
      username: 'ops',
      action: 'Create',
    });
    agent.destroy();
  });

  it('faults — expirePassword makes later log-ons fail', async () => {
    const other = await startWinRmFake({
      users: [{ username: 'a', password: 'b' }],
      http: true,
      auth: ['basic'],
    });
    try {
      const postHttp = (authorization: string) =>
        new Promise<number>((resolve, reject) => {
          const req = httpRequest(
            other.endpoint,
            { method: 'POST', headers: { Authorization: authorization } },
            (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            },
          );
          req.on('error', reject);
          req.end(envelope(`${TRANSFER}/Create`, '<rsp:Shell/>').xml);
        });
      const auth = `Basic ${Buffer.from('a:b').toString('base64')}`;
      expect(other.endpoint).toMatch(/^http:\/\//);
      expect(other.ca).toBe('');
      expect(await postHttp(auth)).toBe(200);
      other.faults.expirePassword('A');
      expect(await postHttp(auth)).toBe(401);
      expect(await postHttp(`NTLM ${Buffer.from('NTLMSSP\0\x01\0\0\0', 'latin1').toString('base64')}`)).toBe(
        401,
      );
      expect(other.requests.map((r) => r.status)).toEqual([200, 401, 401]);
    } finally {
      await other.close();
    }
  });
});
