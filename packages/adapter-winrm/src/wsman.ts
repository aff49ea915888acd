import { randomUUID } from 'node:crypto';
import { ParseError } from '@fleetward/core';
import { XMLParser } from 'fast-xml-parser';

const NS = {
  s: 'http://www.w3.org/2003/05/soap-envelope',
  a: 'http://schemas.xmlsoap.org/ws/2004/08/addressing',
  w: 'http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd',
  p: 'http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd',
  rsp: 'http://schemas.microsoft.com/wbem/wsman/1/windows/shell',
} as const;

const ANONYMOUS = 'http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous';
/** The WinRS resource every message addresses. */
export const CMD_RESOURCE_URI = 'http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd';
const SHELL = 'http://schemas.microsoft.com/wbem/wsman/1/windows/shell';

/** The `a:Action` URIs of the WinRS messages. */
export const ACTIONS = {
  create: 'http://schemas.xmlsoap.org/ws/2004/09/transfer/Create',
  delete: 'http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete',
  command: `${SHELL}/Command`,
  send: `${SHELL}/Send`,
  receive: `${SHELL}/Receive`,
  signal: `${SHELL}/Signal`,
} as const;

/** The `Signal` code that ends a command's process. */
export const SIGNAL_TERMINATE = `${SHELL}/signal/terminate`;
/** WSManFault code of a Receive that saw no output within `OperationTimeout`: not an error. */
export const RECEIVE_TIMED_OUT = '2150858793';
const COMMAND_DONE = `${SHELL}/CommandState/Done`;

/** Whether every character of `value` is one XML 1.0 can carry (escaped or not). */
function isXmlText(value: string): boolean {
  for (const ch of value) {
    const c = ch.codePointAt(0) ?? 0;
    const allowed =
      c === 0x9 ||
      c === 0xa ||
      c === 0xd ||
      (c >= 0x20 && c <= 0xd7ff) ||
      (c >= 0xe000 && c <= 0xfffd) ||
      (c >= 0x10000 && c <= 0x10ffff);
    if (!allowed) return false;
  }
  return true;
}

/**
 * Escapes text for an XML element or a double- or single-quoted attribute. Every value that goes
 * into an envelope passes through here.
 * @throws RangeError when `value` holds a character XML 1.0 cannot represent (e.g. NUL, a lone surrogate).
 */
export function escapeXml(value: string): string {
  if (!isXmlText(value)) throw new RangeError('value holds a character XML cannot carry');
  return (
    value
      .replaceAll('&', '&amp;')
      .replaceAll('<', '&lt;')
      .replaceAll('>', '&gt;')
      .replaceAll('"', '&quot;')
      .replaceAll("'", '&apos;')
      // Parsers normalize CR, and whitespace in attributes, unless they arrive as character references.
      .replaceAll('\r', '&#13;')
      .replaceAll('\n', '&#10;')
      .replaceAll('\t', '&#9;')
  );
}

/** What every envelope's header holds. */
export interface EnvelopeHeader {
  /** Endpoint URL, e.g. `https://host:5986/wsman`. */
  to: string;
  action: string;
  /** `uuid:...`; a fresh one when not given. */
  messageId?: string;
  /** @default 20 */
  operationTimeoutSec?: number;
  /** Selects the shell, for every message after Create. */
  shellId?: string;
  /** `w:OptionSet` entries. */
  options?: Readonly<Record<string, string>>;
}

/** An envelope and its MessageID, which the reply's `RelatesTo` must repeat. */
export interface Envelope {
  messageId: string;
  xml: string;
}

/** Builds a SOAP 1.2 WS-Management envelope with the headers pywinrm sends. */
export function buildEnvelope(header: EnvelopeHeader, body: string): Envelope {
  const messageId = header.messageId ?? `uuid:${randomUUID().toUpperCase()}`;
  const options = Object.entries(header.options ?? {});
  const xml = [
    '<?xml version="1.0" encoding="utf-8"?>',
    `<s:Envelope xmlns:s="${NS.s}" xmlns:a="${NS.a}" xmlns:w="${NS.w}" xmlns:p="${NS.p}" xmlns:rsp="${NS.rsp}">`,
    '<s:Header>',
    `<a:To>${escapeXml(header.to)}</a:To>`,
    `<a:ReplyTo><a:Address s:mustUnderstand="true">${ANONYMOUS}</a:Address></a:ReplyTo>`,
    '<w:MaxEnvelopeSize s:mustUnderstand="true">153600</w:MaxEnvelopeSize>',
    `<a:MessageID>${escapeXml(messageId)}</a:MessageID>`,
    '<w:Locale xml:lang="en-US" s:mustUnderstand="false"/>',
    '<p:DataLocale xml:lang="en-US" s:mustUnderstand="false"/>',
    `<w:OperationTimeout>PT${Math.trunc(header.operationTimeoutSec ?? 20)}S</w:OperationTimeout>`,
    `<w:ResourceURI s:mustUnderstand="true">${CMD_RESOURCE_URI}</w:ResourceURI>`,
    `<a:Action s:mustUnderstand="true">${escapeXml(header.action)}</a:Action>`,
    header.shellId === undefined
      ? ''
      : `<w:SelectorSet><w:Selector Name="ShellId">${escapeXml(header.shellId)}</w:Selector></w:SelectorSet>`,
    options.length === 0
      ? ''
      : `<w:OptionSet>${options
          .map(([name, value]) => `<w:Option Name="${escapeXml(name)}">${escapeXml(value)}</w:Option>`)
          .join('')}</w:OptionSet>`,
    '</s:Header>',
    `<s:Body>${body}</s:Body>`,
    '</s:Envelope>',
  ].join('');
  return { messageId, xml };
}

/** Body of Create: a shell with stdin in and stdout/stderr out. */
export function createShellBody(shell: { workingDirectory?: string; idleTimeoutSec?: number } = {}): string {
  return [
    '<rsp:Shell>',
    '<rsp:InputStreams>stdin</rsp:InputStreams>',
    '<rsp:OutputStreams>stdout stderr</rsp:OutputStreams>',
    shell.workingDirectory === undefined
      ? ''
      : `<rsp:WorkingDirectory>${escapeXml(shell.workingDirectory)}</rsp:WorkingDirectory>`,
    shell.idleTimeoutSec === undefined
      ? ''
      : `<rsp:IdleTimeOut>PT${Math.trunc(shell.idleTimeoutSec)}S</rsp:IdleTimeOut>`,
    '</rsp:Shell>',
  ].join('');
}

/** Body of Command: `command` with one `Arguments` element per argument. */
export function commandBody(command: string, args: readonly string[]): string {
  return `<rsp:CommandLine><rsp:Command>${escapeXml(command)}</rsp:Command>${args
    .map((a) => `<rsp:Arguments>${escapeXml(a)}</rsp:Arguments>`)
    .join('')}</rsp:CommandLine>`;
}

/** Body of Send: one chunk of standard input, base64-encoded; `end` closes the stream. */
export function sendBody(commandId: string, chunk: Buffer, end: boolean): string {
  return `<rsp:Send><rsp:Stream Name="stdin" CommandId="${escapeXml(commandId)}"${
    end ? ' End="true"' : ''
  }>${chunk.toString('base64')}</rsp:Stream></rsp:Send>`;
}

/** Body of Receive for stdout and stderr of one command. */
export function receiveBody(commandId: string): string {
  return `<rsp:Receive><rsp:DesiredStream CommandId="${escapeXml(commandId)}">stdout stderr</rsp:DesiredStream></rsp:Receive>`;
}

/** Body of Signal with `code` (terminate by default). */
export function signalBody(commandId: string, code: string = SIGNAL_TERMINATE): string {
  return `<rsp:Signal CommandId="${escapeXml(commandId)}"><rsp:Code>${escapeXml(code)}</rsp:Code></rsp:Signal>`;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  removeNSPrefix: true,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  processEntities: true,
  htmlEntities: true,
  isArray: (name) => name === 'Stream' || name === 'Selector' || name === 'Text',
});

type Node = Record<string, unknown>;

const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && !Array.isArray(v);

function child(node: unknown, ...names: string[]): unknown {
  let at: unknown = node;
  for (const name of names) at = isNode(at) ? at[name] : undefined;
  return at;
}

function text(node: unknown): string | undefined {
  if (typeof node === 'string') return node;
  if (isNode(node) && typeof node['#text'] === 'string') return node['#text'];
  if (isNode(node)) return '';
  return undefined;
}

/** A SOAP fault returned by the service, as far as it says. */
export interface WsmanFault {
  /** `WSManFault Code`, e.g. `2150858793`, when present. */
  code?: string;
  /** SOAP `Subcode/Value`, e.g. `w:TimedOut`. */
  subcode?: string;
  /** The human-readable reason. */
  message: string;
}

/** A parsed reply: its body, the `RelatesTo` header, and a fault if it is one. */
export interface WsmanReply {
  relatesTo?: string;
  body: Node;
  fault?: WsmanFault;
}

/**
 * Parses a WS-Management reply.
 * @throws ParseError when `xml` is not a SOAP envelope.
 */
export function parseReply(xml: string): WsmanReply {
  let doc: unknown;
  try {
    doc = parser.parse(xml);
  } catch (error) {
    throw new ParseError('WinRM reply is not well-formed XML', { cause: error, fault: 'remote' });
  }
  const envelope = child(doc, 'Envelope');
  const body = child(envelope, 'Body');
  if (!isNode(envelope) || (body !== undefined && body !== '' && !isNode(body))) {
    throw new ParseError('WinRM reply is not a SOAP envelope', { fault: 'remote' });
  }
  const bodyNode = isNode(body) ? body : {};
  const relatesTo = text(child(envelope, 'Header', 'RelatesTo'));
  const reply: WsmanReply = { body: bodyNode, ...(relatesTo ? { relatesTo } : {}) };
  const fault = bodyNode.Fault;
  if (fault !== undefined) reply.fault = parseFault(fault);
  return reply;
}

function parseFault(fault: unknown): WsmanFault {
  const wsman = child(fault, 'Detail', 'WSManFault');
  const code = isNode(wsman) ? (wsman['@_Code'] as string | undefined) : undefined;
  const subcode = text(child(fault, 'Code', 'Subcode', 'Value'));
  const reasons = child(fault, 'Reason', 'Text');
  const reason = Array.isArray(reasons) ? text(reasons[0]) : undefined;
  const wsmanMessage = text(child(wsman, 'Message'));
  const message = (wsmanMessage || reason || subcode || 'SOAP fault without a reason').trim();
  return { message, ...(code ? { code } : {}), ...(subcode ? { subcode } : {}) };
}

/**
 * The ShellId of a Create reply: the `Selector Name="ShellId"` pywinrm reads, or `Shell/ShellId`.
 * @throws ParseError when there is none.
 */
export function parseShellId(reply: WsmanReply): string {
  const selectors = child(reply.body, 'ResourceCreated', 'ReferenceParameters', 'SelectorSet', 'Selector');
  if (Array.isArray(selectors)) {
    for (const s of selectors)
      if (isNode(s) && s['@_Name'] === 'ShellId' && text(s)) return text(s) as string;
  }
  const id = text(child(reply.body, 'Shell', 'ShellId'));
  if (id) return id;
  throw new ParseError('WinRM Create reply has no ShellId', { fault: 'remote' });
}

/**
 * The CommandId of a Command reply.
 * @throws ParseError when there is none.
 */
export function parseCommandId(reply: WsmanReply): string {
  const id = text(child(reply.body, 'CommandResponse', 'CommandId'));
  if (id) return id;
  throw new ParseError('WinRM Command reply has no CommandId', { fault: 'remote' });
}

/** Output chunks of one Receive, and whether the command is done (with its exit code). */
export interface ReceivedOutput {
  chunks: { stream: 'stdout' | 'stderr'; data: Buffer }[];
  done: boolean;
  exitCode: number | null;
}

/**
 * The streams and command state of a Receive reply for `commandId`.
 * @throws ParseError when the reply is not a ReceiveResponse.
 */
export function parseReceive(reply: WsmanReply, commandId: string): ReceivedOutput {
  const response = reply.body.ReceiveResponse;
  if (!isNode(response) && response !== '') {
    throw new ParseError('WinRM Receive reply has no ReceiveResponse', { fault: 'remote' });
  }
  const chunks: ReceivedOutput['chunks'] = [];
  const streams = child(response, 'Stream');
  for (const s of Array.isArray(streams) ? streams : []) {
    const name = isNode(s) ? s['@_Name'] : undefined;
    const id = isNode(s) ? s['@_CommandId'] : undefined;
    if ((name !== 'stdout' && name !== 'stderr') || (id !== undefined && id !== commandId)) continue;
    const data = text(s) ?? '';
    if (data) chunks.push({ stream: name, data: Buffer.from(data, 'base64') });
  }
  const state = child(response, 'CommandState');
  const stateUri = isNode(state) ? state['@_State'] : undefined;
  const done = typeof stateUri === 'string' && stateUri.endsWith('CommandState/Done');
  const code = text(child(state, 'ExitCode'));
  const exitCode = code !== undefined && /^-?\d+$/.test(code) ? Number(code) : null;
  return { chunks, done: done || stateUri === COMMAND_DONE, exitCode };
}
