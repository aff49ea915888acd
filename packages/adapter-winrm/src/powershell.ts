// Shared with the SSH adapter's Windows path: one invocation for every transport that starts PowerShell.
export {
  buildPowerShellInvocation,
  buildPowerShellRunnerScript as buildRunnerScript,
  encodePowerShell,
  POWERSHELL_MAX_COMMAND_LINE as MAX_COMMAND_LINE,
  type PowerShellInvocation,
} from '@fleetward/core/os';

const CLIXML_MARK = '#< CLIXML';

function unescapeClixml(s: string): string {
  return s
    .replace(/_x([0-9A-Fa-f]{4})_/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
    .replace(/&(lt|gt|quot|apos|amp|#x[0-9A-Fa-f]+|#\d+);/g, (_, e: string) => {
      if (e === 'lt') return '<';
      if (e === 'gt') return '>';
      if (e === 'quot') return '"';
      if (e === 'apos') return "'";
      if (e === 'amp') return '&';
      const code = e.startsWith('#x') ? Number.parseInt(e.slice(2), 16) : Number.parseInt(e.slice(1), 10);
      return String.fromCodePoint(code);
    });
}

/**
 * Turns PowerShell's serialized error stream (`#< CLIXML` followed by `<Objs>` with `<S S="Error">`
 * strings) into the text a console would show, chunk by chunk. A stream that does not start with
 * the marker passes through unchanged, and so does what is left at the end outside a complete
 * `<Objs>`. Progress records and other objects are dropped; `Error`,
 * `Warning`, `Verbose` and `Debug` strings are kept (the last three prefixed as PowerShell prints them).
 */
export class ClixmlDecoder {
  #mode: 'detect' | 'plain' | 'clixml' = 'detect';
  #pending = Buffer.alloc(0);

  /** Decoded bytes for `chunk` (may be empty while a CLIXML element is incomplete). */
  push(chunk: Buffer): Buffer {
    if (this.#mode === 'plain') return chunk;
    this.#pending = Buffer.concat([this.#pending, chunk]);
    if (this.#mode === 'detect') {
      const head = this.#pending.subarray(0, CLIXML_MARK.length).toString('utf8');
      if (!CLIXML_MARK.startsWith(head)) {
        this.#mode = 'plain';
        return this.#take(this.#pending.length);
      }
      if (head.length < CLIXML_MARK.length) return Buffer.alloc(0);
      this.#mode = 'clixml';
    }
    return this.#decodeComplete();
  }

  /** What is left at the end of the stream. */
  end(): Buffer {
    if (this.#mode === 'clixml') {
      const out = this.#decodeComplete();
      // Whatever is not part of a complete `<Objs>` (a cut stream, text that only looked like
      // CLIXML) is shown as it came rather than lost.
      const rest = this.#take(this.#pending.length);
      return rest.toString('utf8').trim() === '' ? out : Buffer.concat([out, rest]);
    }
    return this.#take(this.#pending.length);
  }

  #take(n: number): Buffer {
    const out = this.#pending.subarray(0, n);
    this.#pending = this.#pending.subarray(n);
    return out;
  }

  #decodeComplete(): Buffer {
    const text = this.#pending.toString('latin1');
    const pattern = /<S S="(Error|Warning|Verbose|Debug)">([\s\S]*?)<\/S>/g;
    let out = '';
    let consumed = 0;
    for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) {
      const body = unescapeClixml(Buffer.from(m[2] ?? '', 'latin1').toString('utf8'));
      const prefix = m[1] === 'Error' ? '' : `${(m[1] ?? '').toUpperCase()}: `;
      out += prefix + body;
      consumed = pattern.lastIndex;
    }
    const lastClose = text.lastIndexOf('</Objs>');
    if (lastClose >= consumed) consumed = lastClose + '</Objs>'.length;
    this.#pending = this.#pending.subarray(consumed);
    return Buffer.from(out, 'utf8');
  }
}
