import { randomUUID } from 'node:crypto';

// Just enough XML for WS-Man envelopes: elements are found by local name whatever their prefix,
// which is how pywinrm and Windows itself tolerate each other's namespace prefixes.

export const NS = {
  soap: 'http://www.w3.org/2003/05/soap-envelope',
  addressing: 'http://schemas.xmlsoap.org/ws/2004/08/addressing',
  wsman: 'http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd',
  shell: 'http://schemas.microsoft.com/wbem/wsman/1/windows/shell',
  transfer: 'http://schemas.xmlsoap.org/ws/2004/09/transfer',
  fault: 'http://schemas.microsoft.com/wbem/wsman/1/wsmanfault',
} as const;

export const CMD_RESOURCE_URI = `${NS.shell}/cmd`;

/** An element found in a document: its attributes and its (unescaped) text, or inner XML for `inner`. */
export interface XmlElement {
  attributes: Record<string, string>;
  text: string;
  inner: string;
}

/** Every element with this local name, in document order (no nesting of same-named elements assumed). */
export function elements(xml: string, localName: string): XmlElement[] {
  const pattern = new RegExp(
    `<(?:[A-Za-z_][\\w.-]*:)?${localName}((?:\\s+[^>]*?)?)(?:/>|>([\\s\\S]*?)</(?:[A-Za-z_][\\w.-]*:)?${localName}\\s*>)`,
    'g',
  );
  const found: XmlElement[] = [];
  for (const match of xml.matchAll(pattern)) {
    const inner = match[2] ?? '';
    found.push({ attributes: attributes(match[1] ?? ''), inner, text: unescapeXml(inner.trim()) });
  }
  return found;
}

/** The first element with this local name, or undefined. */
export function element(xml: string, localName: string): XmlElement | undefined {
  return elements(xml, localName)[0];
}

/** Text of the first element with this local name, or undefined. */
export function text(xml: string, localName: string): string | undefined {
  return element(xml, localName)?.text;
}

function attributes(source: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const match of source.matchAll(/(?:[\w.-]+:)?([\w.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
    result[match[1] as string] = unescapeXml(match[2] ?? match[3] ?? '');
  }
  return result;
}

export function unescapeXml(value: string): string {
  return value.replace(/&(lt|gt|amp|quot|apos|#x[0-9a-fA-F]+|#\d+);/g, (_, entity: string) => {
    if (entity === 'lt') return '<';
    if (entity === 'gt') return '>';
    if (entity === 'amp') return '&';
    if (entity === 'quot') return '"';
    if (entity === 'apos') return "'";
    const code = entity.startsWith('#x')
      ? Number.parseInt(entity.slice(2), 16)
      : Number.parseInt(entity.slice(1), 10);
    return String.fromCodePoint(code);
  });
}

export function escapeXml(value: string): string {
  return value.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A reply envelope with the addressing headers Windows sends; `RelatesTo` is the request's MessageID. */
export function envelope(action: string, relatesTo: string | undefined, body: string): string {
  const relates = relatesTo ? `<a:RelatesTo>${escapeXml(relatesTo)}</a:RelatesTo>` : '';
  return (
    `<?xml version="1.0" encoding="UTF-8"?>` +
    `<s:Envelope xml:lang="en-US" xmlns:s="${NS.soap}" xmlns:a="${NS.addressing}" xmlns:x="${NS.transfer}" ` +
    `xmlns:w="${NS.wsman}" xmlns:rsp="${NS.shell}" xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">` +
    `<s:Header><a:Action>${escapeXml(action)}</a:Action><a:MessageID>uuid:${randomUUID().toUpperCase()}</a:MessageID>` +
    `<a:To>${NS.addressing}/role/anonymous</a:To>${relates}</s:Header>` +
    `<s:Body>${body}</s:Body></s:Envelope>`
  );
}

/** What a SOAP fault reply says. */
export interface FaultSpec {
  /** `s:Sender` or `s:Receiver`. */
  code: 'Sender' | 'Receiver';
  /** Qualified subcode, e.g. `w:TimedOut`. */
  subcode: string;
  /** WSManFault `Code` (a decimal HRESULT-like number). */
  wsmanCode: string;
  message: string;
}

export function faultEnvelope(relatesTo: string | undefined, fault: FaultSpec): string {
  const message = escapeXml(fault.message);
  return envelope(
    'http://schemas.dmtf.org/wbem/wsman/1/wsman/fault',
    relatesTo,
    `<s:Fault><s:Code><s:Value>s:${fault.code}</s:Value><s:Subcode><s:Value>${fault.subcode}</s:Value></s:Subcode></s:Code>` +
      `<s:Reason><s:Text xml:lang="en-US">${message}</s:Text></s:Reason>` +
      `<s:Detail><f:WSManFault xmlns:f="${NS.fault}" Code="${fault.wsmanCode}" Machine="127.0.0.1">` +
      `<f:Message>${message}</f:Message></f:WSManFault></s:Detail></s:Fault>`,
  );
}

/** Parses an ISO 8601 duration such as `PT20S` or `PT60.000S` into milliseconds; undefined if it is not one. */
export function durationMs(value: string | undefined): number | undefined {
  const match = value?.match(/^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/);
  if (!match) return undefined;
  const [, d, h, m, s] = match;
  return ((Number(d ?? 0) * 24 + Number(h ?? 0)) * 3600 + Number(m ?? 0) * 60 + Number(s ?? 0)) * 1000;
}
