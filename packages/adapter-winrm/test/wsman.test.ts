import {
  buildPowerShellInvocation,
  buildRunnerScript,
  ClixmlDecoder,
  encodePowerShell,
  escapeXml,
  MAX_COMMAND_LINE,
  normalizeFingerprint,
  WinRmAdapterOptionsSchema,
} from '@fleetward/adapter-winrm';
import { ParseError } from '@fleetward/core';
import { buildPowerShellRunner } from '@fleetward/core/os';
import fc from 'fast-check';
import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import {
  ACTIONS,
  buildEnvelope,
  commandBody,
  parseCommandId,
  parseReceive,
  parseReply,
  parseShellId,
  sendBody,
} from '../src/wsman.js';

const HOSTILE = [
  'a\r\nb\tc',
  '<',
  '&',
  ']]>',
  '"',
  "'",
  '</s:Body>',
  '&amp;',
  '<![CDATA[x]]>',
  "'; Remove-Item C:\\ -Recurse; '",
];
const rawParser = new XMLParser({
  htmlEntities: true,
  ignoreAttributes: false,
  removeNSPrefix: true,
  parseTagValue: false,
  trimValues: false,
});

describe('escapeXml', () => {
  it('escapeXml — hostile strings come back exactly from an XML parser, as text and as attributes', () => {
    for (const value of HOSTILE) {
      const doc = rawParser.parse(
        `<r a="${escapeXml(value)}" b='${escapeXml(value)}'>${escapeXml(value)}</r>`,
      );
      expect(doc.r['#text']).toBe(value);
      expect(doc.r['@_a']).toBe(value);
      expect(doc.r['@_b']).toBe(value);
    }
  });

  it('escapeXml — any XML-representable string survives a round trip through a parser', () => {
    fc.assert(
      fc.property(
        fc
          .string({ unit: 'grapheme' })
          .filter(
            (s) =>
              [...s].every((c) => c >= ' ' || c === '\t' || c === '\n' || c === '\r') &&
              !/[\uFFFE\uFFFF]/.test(s),
          ),
        (value) => {
          const doc = rawParser.parse(`<r a="${escapeXml(value)}">${escapeXml(value)}</r>`);
          expect(doc.r['#text'] ?? '').toBe(value);
          expect(doc.r['@_a']).toBe(value);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('escapeXml — refuses characters XML cannot carry instead of sending them', () => {
    expect(() => escapeXml('a\u0000b')).toThrow(RangeError);
    expect(() => escapeXml('\uD800')).toThrow(RangeError);
    expect(escapeXml('😀')).toBe('😀');
  });
});

describe('envelopes', () => {
  it('buildEnvelope — carries the headers pywinrm sends, and a hostile ShellId stays a value', () => {
    const { xml, messageId } = buildEnvelope(
      {
        to: 'https://h:5986/wsman',
        action: ACTIONS.receive,
        shellId: '</w:Selector><evil/>',
        options: { WINRS_CODEPAGE: '65001' },
      },
      commandBody('powershell.exe', ['-EncodedCommand', 'a<b']),
    );
    expect(messageId).toMatch(/^uuid:[0-9A-F-]{36}$/);
    const doc = rawParser.parse(xml);
    const header = doc.Envelope.Header;
    expect(header.MessageID).toBe(messageId);
    expect(header.Action['#text']).toBe(ACTIONS.receive);
    expect(header.ResourceURI['#text']).toBe('http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd');
    expect(header.MaxEnvelopeSize['#text']).toBe('153600');
    expect(header.OperationTimeout).toBe('PT20S');
    expect(header.SelectorSet.Selector['#text']).toBe('</w:Selector><evil/>');
    expect(header.OptionSet.Option['@_Name']).toBe('WINRS_CODEPAGE');
    expect(doc.Envelope.Body.CommandLine.Arguments).toEqual(['-EncodedCommand', 'a<b']);
  });

  it('sendBody — stdin travels base64-encoded with End on the last chunk', () => {
    const body = sendBody('C1', Buffer.from('héllo'), true);
    const doc = rawParser.parse(body);
    expect(Buffer.from(doc.Send.Stream['#text'], 'base64').toString()).toBe('héllo');
    expect(doc.Send.Stream['@_End']).toBe('true');
  });
});

const envelope = (body: string, relatesTo = 'uuid:1') =>
  `<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><s:Header><a:RelatesTo>${relatesTo}</a:RelatesTo></s:Header><s:Body>${body}</s:Body></s:Envelope>`;

describe('replies', () => {
  it('parseShellId / parseCommandId — read the ids where pywinrm reads them', () => {
    const created = parseReply(
      envelope(
        '<x:ResourceCreated xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer"><a:Address>u</a:Address><a:ReferenceParameters><w:ResourceURI>r</w:ResourceURI><w:SelectorSet><w:Selector Name="ShellId">S-1</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>',
      ),
    );
    expect(created.relatesTo).toBe('uuid:1');
    expect(parseShellId(created)).toBe('S-1');
    expect(
      parseCommandId(
        parseReply(envelope('<rsp:CommandResponse><rsp:CommandId>C-1</rsp:CommandId></rsp:CommandResponse>')),
      ),
    ).toBe('C-1');
    expect(() => parseShellId(parseReply(envelope('')))).toThrow(ParseError);
  });

  it('parseReceive — decodes both streams, keeps the exit code, ignores other commands', () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const reply = parseReply(
      envelope(
        `<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="C">${b64('héllo ')}</rsp:Stream><rsp:Stream Name="stdout" CommandId="C">${b64('wörld')}</rsp:Stream><rsp:Stream Name="stderr" CommandId="C">${b64('bad')}</rsp:Stream><rsp:Stream Name="stdout" CommandId="OTHER">${b64('no')}</rsp:Stream><rsp:Stream Name="stdout" CommandId="C" End="true"></rsp:Stream><rsp:CommandState CommandId="C" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"><rsp:ExitCode>3</rsp:ExitCode></rsp:CommandState></rsp:ReceiveResponse>`,
      ),
    );
    const out = parseReceive(reply, 'C');
    expect(out.done).toBe(true);
    expect(out.exitCode).toBe(3);
    expect(Buffer.concat(out.chunks.filter((c) => c.stream === 'stdout').map((c) => c.data)).toString()).toBe(
      'héllo wörld',
    );
    expect(out.chunks.filter((c) => c.stream === 'stderr').map((c) => c.data.toString())).toEqual(['bad']);
    const running = parseReceive(
      parseReply(
        envelope(
          '<rsp:ReceiveResponse><rsp:CommandState CommandId="C" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"/></rsp:ReceiveResponse>',
        ),
      ),
      'C',
    );
    expect(running).toEqual({ chunks: [], done: false, exitCode: null });
  });

  it('parseReply — a SOAP fault gives its WSManFault code and message', () => {
    const reply = parseReply(
      envelope(
        '<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:TimedOut</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">The WS-Management service cannot complete the operation within the time specified in OperationTimeout.</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="2150858793" Machine="h"><f:Message>timed out &lt;x&gt;</f:Message></f:WSManFault></s:Detail></s:Fault>',
      ),
    );
    expect(reply.fault).toEqual({ code: '2150858793', subcode: 'w:TimedOut', message: 'timed out <x>' });
  });

  it('parseReply — text that is not a SOAP envelope is a ParseError', () => {
    expect(() => parseReply('<html>nope</html>')).toThrow(ParseError);
    expect(() => parseReply('<<<')).toThrow(ParseError);
  });
});

describe('PowerShell runner', () => {
  it("buildRunnerScript — is core's runner, CRLF-joined, reading stdin from a line of its own; the invocation's stdin is base64 lines only", () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: 'binary' }), { minLength: 1, maxLength: 6 }),
        fc.dictionary(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/), fc.string({ unit: 'binary' }), {
          maxKeys: 4,
        }),
        fc.option(fc.string({ unit: 'binary' }), { nil: undefined }),
        (argv, env, stdin) => {
          const command = { argv, env, ...(stdin === undefined ? {} : { stdin }) };
          expect(buildRunnerScript(command)).toBe(
            buildPowerShellRunner(command, { stdin: 'stdin-line' }).join('\r\n'),
          );
          const invocation = buildPowerShellInvocation(command);
          expect(
            invocation.stdin === undefined ||
              /^[A-Za-z0-9+/=\r\n]*$/.test(invocation.stdin.toString('latin1')),
          ).toBe(true);
          expect(invocation.stdin === undefined).toBe(stdin === undefined && !invocation.runnerOnStdin);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('buildPowerShellInvocation — a 50 KB script travels on stdin; the command line stays short', () => {
    const script = 'Write-Output "x"\n'.repeat(3000);
    const invocation = buildPowerShellInvocation({
      interpreter: ['powershell.exe', '-Command', '-'],
      script,
    });
    expect([invocation.program, ...invocation.arguments].join(' ').length).toBeLessThan(MAX_COMMAND_LINE);
    expect(invocation.runnerOnStdin).toBe(false);
    expect(Buffer.from(invocation.stdin?.toString().trim() ?? '', 'base64').toString()).toBe(script);
  });

  it('buildPowerShellInvocation — a runner too long for the command line goes on stdin behind a bootstrap', () => {
    const argv = ['cmd.exe', '/c', 'echo', 'y'.repeat(10_000)];
    const invocation = buildPowerShellInvocation({ argv, stdin: 'in' });
    const line = [invocation.program, ...invocation.arguments].join(' ');
    expect(line.length).toBeLessThan(MAX_COMMAND_LINE);
    expect(invocation.runnerOnStdin).toBe(true);
    const [runner, input] = invocation.stdin?.toString().split('\r\n') ?? [];
    expect(Buffer.from(runner ?? '', 'base64').toString()).toBe(buildRunnerScript({ argv, stdin: 'in' }));
    expect(Buffer.from(input ?? '', 'base64').toString()).toBe('in');
  });

  it('encodePowerShell — is base64 of UTF-16LE', () => {
    expect(encodePowerShell('é')).toBe(Buffer.from([0xe9, 0]).toString('base64'));
  });
});

describe('ClixmlDecoder', () => {
  const clixml =
    '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV></PR></MS></Obj><S S="Error">Oops &lt;bad&gt; héllo_x000D__x000A_</S><S S="Error">second line_x000D__x000A_</S><S S="Warning">careful_x000D__x000A_</S></Objs>';

  it('ClixmlDecoder — turns the error stream into readable text, whatever the chunking', () => {
    const bytes = Buffer.from(clixml, 'utf8');
    for (const size of [1, 3, 7, 50, bytes.length]) {
      const decoder = new ClixmlDecoder();
      const parts: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += size) parts.push(decoder.push(bytes.subarray(i, i + size)));
      parts.push(decoder.end());
      expect(Buffer.concat(parts).toString()).toBe('Oops <bad> héllo\r\nsecond line\r\nWARNING: careful\r\n');
    }
  });

  it('ClixmlDecoder — a plain stream passes through unchanged', () => {
    const decoder = new ClixmlDecoder();
    const out = Buffer.concat([
      decoder.push(Buffer.from('#< not')),
      decoder.push(Buffer.from(' clixml')),
      decoder.end(),
    ]);
    expect(out.toString()).toBe('#< not clixml');
  });
});

describe('options', () => {
  it('WinRmAdapterOptionsSchema — needs credentials and accepts fingerprints with or without colons', () => {
    expect(WinRmAdapterOptionsSchema.safeParse({}).success).toBe(false);
    const fp = 'AB'.repeat(32);
    const parsed = WinRmAdapterOptionsSchema.parse({
      credentials: { username: 'u', password: 'p' },
      certificateFingerprint: fp,
    });
    expect(parsed.auth).toBe('ntlm');
    expect(parsed.https).toBe(true);
    expect(normalizeFingerprint(fp)).toBe(normalizeFingerprint(`sha256:${fp.match(/../g)?.join(':')}`));
    expect(
      WinRmAdapterOptionsSchema.safeParse({
        credentials: { username: 'u', password: 'p' },
        certificateFingerprint: 'zz',
      }).success,
    ).toBe(false);
    expect(
      WinRmAdapterOptionsSchema.safeParse({
        credentials: { username: 'u', password: 'p' },
        https: false,
        ca: 'x',
      }).success,
    ).toBe(false);
  });
});
