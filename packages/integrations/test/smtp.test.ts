import type { AddressInfo } from 'node:net';
import { AbortedError, FleetwardError, TransportError, ValidationError } from '@fleetward/core';
import { createSmtpSender, IntegrationError, type SmtpSenderOptions } from '@fleetward/integrations';
import { type AddressObject, simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { SMTPServer, type SMTPServerEnvelope } from 'smtp-server';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { closedPort, errorSurface } from './fake-http.js';

const USER = 'reports@fleet.test';
const PASS = 'smtp-Pa55-word-9';

interface Received {
  envelope: SMTPServerEnvelope;
  raw: string;
}

/** A real SMTP server on loopback (no TLS, so AUTH is allowed in the clear on loopback only). */
let server: SMTPServer;
let port: number;
const inbox: Received[] = [];

beforeAll(async () => {
  server = new SMTPServer({
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    authMethods: ['PLAIN', 'LOGIN'],
    logger: false,
    onAuth(auth, _session, callback) {
      if (auth.username === USER && auth.password === PASS) return callback(null, { user: USER });
      return callback(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }));
    },
    onRcptTo(address, _session, callback) {
      if (address.address.startsWith('full@')) {
        return callback(Object.assign(new Error('Mailbox full, try later'), { responseCode: 452 }));
      }
      if (address.address.startsWith('nobody@')) {
        return callback(Object.assign(new Error('No such user'), { responseCode: 550 }));
      }
      return callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        inbox.push({
          envelope: structuredClone(session.envelope),
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  inbox.length = 0;
});

function sender(extra: Partial<SmtpSenderOptions> = {}) {
  return createSmtpSender({
    host: '127.0.0.1',
    port,
    auth: { user: USER, pass: PASS },
    from: 'Fleetward Reports <reports@fleet.test>',
    ...extra,
  });
}

const addresses = (value: AddressObject | AddressObject[] | undefined) =>
  (Array.isArray(value) ? value : value ? [value] : []).flatMap((a) => a.value.map((v) => v.address));

const headerBlock = (raw: string) => raw.slice(0, raw.indexOf('\r\n\r\n'));

const CSV =
  'server,package,installed,candidate\r\nweb-1,openssl,3.0.11,3.0.13\r\nweb-2,"curl, the tool",7.88,8.0\r\n';

describe('SMTP email', () => {
  it('createSmtpSender — delivers an HTML report with a CSV attachment to a real SMTP server', async () => {
    const { messageId } = await sender().send({
      to: ['ops@example.test', 'Security Team <sec@example.test>'],
      subject: 'Weekly patch report — web',
      text: 'See the attached CSV.',
      html: '<h1>Patch report</h1><p>2 pending</p>',
      attachments: [{ filename: 'patch-report.csv', content: CSV, contentType: 'text/csv' }],
    });

    expect(inbox).toHaveLength(1);
    const { envelope, raw } = inbox[0]!;
    expect(envelope.mailFrom).toMatchObject({ address: 'reports@fleet.test' });
    expect(envelope.rcptTo.map((r) => r.address)).toEqual(['ops@example.test', 'sec@example.test']);

    const mail = await simpleParser(raw);
    expect(mail.from?.value).toEqual([{ name: 'Fleetward Reports', address: 'reports@fleet.test' }]);
    expect(addresses(mail.to)).toEqual(['ops@example.test', 'sec@example.test']);
    expect(mail.subject).toBe('Weekly patch report — web');
    expect(mail.text?.trim()).toBe('See the attached CSV.');
    expect(mail.html).toBe('<h1>Patch report</h1><p>2 pending</p>');
    expect(mail.messageId).toBe(messageId);
    expect(mail.attachments).toHaveLength(1);
    const [attachment] = mail.attachments;
    expect(attachment!.filename).toBe('patch-report.csv');
    expect(attachment!.contentType).toBe('text/csv');
    expect(attachment!.content.toString('utf8')).toBe(CSV);
  });

  it('createSmtpSender — a CRLF in the subject cannot add a header or a recipient', async () => {
    await sender().send({
      to: ['ops@example.test'],
      subject: 'x\r\nBcc: evil@x',
      text: 'body </td><script>alert(1)</script>\r\nBcc: evil2@x',
      html: '<td></td><script>alert(1)</script>',
      attachments: [
        { filename: 'a"b\\c; X-Evil: 1.csv', content: Buffer.from(CSV), contentType: 'text/csv' },
      ],
    });
    const { envelope, raw } = inbox[0]!;
    expect(envelope.rcptTo.map((r) => r.address)).toEqual(['ops@example.test']);
    const headers = headerBlock(raw);
    expect(headers).not.toMatch(/^bcc:/im);
    // The only header line mentioning evil@x is the (folded) subject itself.
    expect(headers.split(/\r\n(?![ \t])/).filter((h) => h.includes('evil@x'))).toEqual([
      expect.stringMatching(/^Subject: /),
    ]);
    const mail = await simpleParser(raw);
    expect(mail.subject).toBe('x Bcc: evil@x');
    expect(mail.bcc).toBeUndefined();
    expect(mail.headers.has('x-evil')).toBe(false);
    // The body is data: its "Bcc:" line stays inside the body.
    expect(mail.text).toContain('Bcc: evil2@x');
    expect(mail.html).toBe('<td></td><script>alert(1)</script>');
    expect(mail.attachments[0]!.filename).toBe('a"b\\c; X-Evil: 1.csv');
  });

  it('nodemailer — folds CR/LF in header values by itself, without our own flattening', async () => {
    const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' });
    const info = await transport.sendMail({
      from: 'a@fleet.test',
      to: 'ops@example.test',
      subject: 'x\r\nBcc: evil@x',
      text: 'hi',
      attachments: [{ filename: 'r.csv\r\nBcc: evil3@x', content: 'a,b', contentType: 'text/csv' }],
    });
    const raw = (info.message as Buffer).toString('utf8');
    expect(info.envelope.to).toEqual(['ops@example.test']);
    expect(headerBlock(raw)).not.toMatch(/^bcc:/im);
    expect(raw).not.toMatch(/\r\nBcc:/i);
    const mail = await simpleParser(raw);
    expect(mail.subject).toBe('x Bcc: evil@x');
    expect(mail.bcc).toBeUndefined();
  });

  it('createSmtpSender — refuses recipient entries that smuggle another address or a header', async () => {
    for (const to of ['ops@example.test, evil@x', 'ops@example.test\r\nBcc: evil@x', 'not-an-address', '']) {
      await expect(sender().send({ to: [to], subject: 's', text: 't' })).rejects.toBeInstanceOf(
        ValidationError,
      );
    }
    await expect(sender().send({ to: [], subject: 's', text: 't' })).rejects.toBeInstanceOf(ValidationError);
    expect(() => sender({ from: 'a@x, b@y' })).toThrow(ValidationError);
    expect(inbox).toHaveLength(0);
  });

  it('createSmtpSender — a wrong password is UNAUTHORIZED, not retryable, and appears nowhere', async () => {
    const wrong = `${PASS}-wrong`;
    const error = await sender({ auth: { user: USER, pass: wrong } })
      .send({ to: ['ops@example.test'], subject: 's', text: 't' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrationError);
    expect(error).toMatchObject({ code: 'UNAUTHORIZED', retryable: false, integration: 'smtp', status: 535 });
    const surface = errorSurface(error);
    expect(surface).not.toContain(wrong);
    expect(surface).not.toContain(Buffer.from(`\0${USER}\0${wrong}`).toString('base64'));
    expect(inbox).toHaveLength(0);
  });

  it('createSmtpSender — a 4xx refusal is retryable, a 5xx refusal is not', async () => {
    const transient = await sender()
      .send({ to: ['full@example.test'], subject: 's', text: 't' })
      .catch((e: unknown) => e);
    expect(transient).toBeInstanceOf(TransportError);
    expect(transient).toMatchObject({ retryable: true, details: { status: 452 } });

    const permanent = await sender()
      .send({ to: ['nobody@example.test'], subject: 's', text: 't' })
      .catch((e: unknown) => e);
    expect(permanent).toBeInstanceOf(IntegrationError);
    expect(permanent).toMatchObject({ code: 'COMMAND_FAILED', retryable: false, status: 550 });
  });

  it('createSmtpSender — an unreachable server is a retryable TransportError; an aborted send is not retried', async () => {
    const down = await closedPort();
    const error = await sender({ port: down })
      .send({ to: ['ops@example.test'], subject: 's', text: 't' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect(error).toMatchObject({ retryable: true });
    expect(errorSurface(error)).not.toContain(PASS);

    const controller = new AbortController();
    controller.abort();
    await expect(
      sender().send({ to: ['ops@example.test'], subject: 's', text: 't' }, { signal: controller.signal }),
    ).rejects.toBeInstanceOf(AbortedError);
  });

  it('createSmtpSender — requires STARTTLS for a password to a remote host unless told otherwise', async () => {
    // Loopback without TLS is allowed (the test server above); for a remote host the default
    // turns requireTLS on. Forced on here against the loopback server, which offers no STARTTLS.
    const error = await sender({ requireTLS: true })
      .send({ to: ['ops@example.test'], subject: 's', text: 't' })
      .catch((e: unknown) => e);
    // The server refuses STARTTLS with a 500: a configuration problem, not worth retrying.
    expect(error).toBeInstanceOf(FleetwardError);
    expect(error).toMatchObject({ retryable: false });
    expect((error as Error).message).toContain('STARTTLS');
    expect(inbox).toHaveLength(0);
    expect(errorSurface(error)).not.toContain(PASS);
  });
});
