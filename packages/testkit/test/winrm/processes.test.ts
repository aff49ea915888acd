import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { startWinRmFake, type WinRmFake } from '@fleetward/testkit/winrm';
import { afterAll, beforeAll, expect, it } from 'vitest';

const SHELL = 'http://schemas.microsoft.com/wbem/wsman/1/windows/shell';
const TRANSFER = 'http://schemas.xmlsoap.org/ws/2004/09/transfer';
const AUTH = `Basic ${Buffer.from('ops:pw').toString('base64')}`;

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

/** A runner as Fleetward's WinRM adapter writes it: the three literals, then constant lines (one stands for them). */
function runner(argv: string[], env: Record<string, string> = {}, hasStdin = false): string {
  return [
    `$fw_argv = '${argv.map((a) => `_${b64(a)}`).join(' ')}'`,
    `$fw_env = '${Object.entries(env)
      .map(([name, value]) => `${name}=${b64(value)}`)
      .join(' ')}'`,
    `$fw_has_stdin = '${hasStdin ? '1' : '0'}'`,
    "$ErrorActionPreference = 'Stop'",
  ].join('\r\n');
}

const BOOTSTRAP = [
  'function fw_dec([string]$s) { [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($s)) }',
  '. ([scriptblock]::Create((fw_dec ([Console]::In.ReadLine()))))',
].join('\r\n');

const encoded = (script: string) => Buffer.from(script, 'utf16le').toString('base64');

interface Received {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number | undefined;
  replies: number;
  largestReply: number;
}

describeIfAvailable(
  'WinRM fake, process backend',
  unavailableWithout({ commands: ['sh', 'sleep', 'cat', 'head'] }),
  () => {
    let fake: WinRmFake;

    beforeAll(async () => {
      fake = await startWinRmFake({
        users: [{ username: 'ops', password: 'pw' }],
        http: true,
        auth: ['basic'],
        processes: true,
      });
    });

    afterAll(() => fake?.close());

    function post(action: string, body: string, shellId?: string, timeout = 'PT5S'): Promise<string> {
      const selector = shellId
        ? `<w:SelectorSet><w:Selector Name="ShellId">${shellId}</w:Selector></w:SelectorSet>`
        : '';
      const xml =
        `<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" ` +
        `xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="${SHELL}"><s:Header>` +
        `<a:Action>${action}</a:Action><a:MessageID>uuid:${randomUUID()}</a:MessageID>` +
        `<w:OperationTimeout>${timeout}</w:OperationTimeout><w:ResourceURI>${SHELL}/cmd</w:ResourceURI>${selector}` +
        `</s:Header><s:Body>${body}</s:Body></s:Envelope>`;
      return new Promise((resolve, reject) => {
        const req = request(
          fake.endpoint,
          {
            method: 'POST',
            agent: false,
            headers: { Authorization: AUTH, 'Content-Type': 'application/soap+xml' },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
          },
        );
        req.on('error', reject);
        req.end(xml);
      });
    }

    async function openShell(env: Record<string, string> = {}): Promise<string> {
      const variables = Object.entries(env)
        .map(([name, value]) => `<rsp:Variable Name="${name}">${value}</rsp:Variable>`)
        .join('');
      const reply = await post(
        `${TRANSFER}/Create`,
        `<rsp:Shell><rsp:Environment>${variables}</rsp:Environment></rsp:Shell>`,
      );
      return reply.match(/<w:Selector Name="ShellId">([^<]+)</)?.[1] as string;
    }

    async function command(shellId: string, script: string, stdin?: string): Promise<string> {
      const reply = await post(
        `${SHELL}/Command`,
        `<rsp:CommandLine><rsp:Command>powershell.exe</rsp:Command><rsp:Arguments>-NoProfile</rsp:Arguments>` +
          `<rsp:Arguments>-EncodedCommand</rsp:Arguments><rsp:Arguments>${encoded(script)}</rsp:Arguments></rsp:CommandLine>`,
        shellId,
      );
      const commandId = reply.match(/<rsp:CommandId>([^<]+)</)?.[1] as string;
      if (stdin !== undefined) {
        await post(
          `${SHELL}/Send`,
          `<rsp:Send><rsp:Stream Name="stdin" CommandId="${commandId}" End="true">${b64(stdin)}</rsp:Stream></rsp:Send>`,
          shellId,
        );
      }
      return commandId;
    }

    const receive = (shellId: string, commandId: string, timeout?: string) =>
      post(
        `${SHELL}/Receive`,
        `<rsp:Receive><rsp:DesiredStream CommandId="${commandId}">stdout stderr</rsp:DesiredStream></rsp:Receive>`,
        shellId,
        timeout,
      );

    const signal = (shellId: string, commandId: string, code: 'terminate' | 'ctrl_c') =>
      post(
        `${SHELL}/Signal`,
        `<rsp:Signal CommandId="${commandId}"><rsp:Code>${SHELL}/signal/${code}</rsp:Code></rsp:Signal>`,
        shellId,
      );

    async function receiveAll(shellId: string, commandId: string): Promise<Received> {
      const out: Received = {
        stdout: Buffer.alloc(0),
        stderr: Buffer.alloc(0),
        exitCode: undefined,
        replies: 0,
        largestReply: 0,
      };
      for (let i = 0; i < 1000 && out.exitCode === undefined; i++) {
        const reply = await receive(shellId, commandId);
        out.replies++;
        out.largestReply = Math.max(out.largestReply, Buffer.byteLength(reply));
        for (const m of reply.matchAll(/<rsp:Stream Name="(stdout|stderr)"[^>]*>([^<]*)</g)) {
          const data = Buffer.from(m[2] as string, 'base64');
          if (m[1] === 'stdout') out.stdout = Buffer.concat([out.stdout, data]);
          else out.stderr = Buffer.concat([out.stderr, data]);
        }
        const exit = reply.match(/<rsp:ExitCode>(-?\d+)</)?.[1];
        if (reply.includes('CommandState/Done') && exit !== undefined) out.exitCode = Number(exit);
      }
      return out;
    }

    /** Whether `pid` runs (a zombie, exited but not reaped, does not). */
    async function alive(pid: number): Promise<boolean> {
      const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
      if (status === undefined) return false;
      return !/^State:\s+Z/m.test(status);
    }

    async function expectGone(pid: number): Promise<void> {
      for (let i = 0; i < 100 && (await alive(pid)); i++) await sleep(50);
      expect(await alive(pid), `process ${pid} still runs`).toBe(false);
    }

    /** Starts `sh` with a background child, and returns both pids once it said so. */
    async function startLongRunning(shellId: string): Promise<{ commandId: string; pids: number[] }> {
      const commandId = await command(shellId, runner(['sh', '-c', 'sleep 300 & echo "$! $$"; wait']));
      let text = '';
      for (let i = 0; i < 20 && !text.includes('\n'); i++) {
        const reply = await receive(shellId, commandId);
        expect(reply).toContain('CommandState/Running');
        for (const m of reply.matchAll(/<rsp:Stream Name="stdout"[^>]*>([^<]*)</g))
          text += Buffer.from(m[1] as string, 'base64').toString('utf8');
      }
      const pids = text.trim().split(' ').map(Number);
      expect(pids).toHaveLength(2);
      for (const pid of pids) expect(await alive(pid)).toBe(true);
      return { commandId, pids };
    }

    it('Receive — streams output while the process still runs; Signal terminate kills its process group', async () => {
      const shellId = await openShell();
      const { commandId, pids } = await startLongRunning(shellId);
      expect(fake.shells().find((s) => s.shellId === shellId)?.commands[0]?.pid).toBe(pids[1]);
      await signal(shellId, commandId, 'terminate');
      for (const pid of pids) await expectGone(pid);
    });

    it('Delete — kills the processes of the shell’s commands', async () => {
      const shellId = await openShell();
      const { pids } = await startLongRunning(shellId);
      await post(`${TRANSFER}/Delete`, '', shellId);
      for (const pid of pids) await expectGone(pid);
    });

    it('Signal ctrl_c — interrupts the process group: exit code 128 + SIGINT', async () => {
      const shellId = await openShell();
      const commandId = await command(shellId, runner(['sh', '-c', 'echo ready; exec sleep 300']));
      expect(await receive(shellId, commandId)).toContain(`>${b64('ready\n')}<`);
      await signal(shellId, commandId, 'ctrl_c');
      expect(await receiveAll(shellId, commandId)).toMatchObject({ exitCode: 130, stdout: Buffer.alloc(0) });
    });

    it('Command — argv without a shell, env over the shell’s and a minimal one, stdout and stderr apart, exit code', async () => {
      const shellId = await openShell({ FROM_SHELL: 'shell', B: 'overridden' });
      const commandId = await command(
        shellId,
        runner(
          [
            'sh',
            '-c',
            'printf "%s|%s|%s|" "$1" "$FROM_SHELL" "$B"; printenv HOME || printf "no home"; printf oops >&2; exit 7',
            'sh',
            '$(touch /nonexistent) ; *',
          ],
          { B: 'from runner' },
        ),
      );
      const out = await receiveAll(shellId, commandId);
      expect(out.stdout.toString()).toBe('$(touch /nonexistent) ; *|shell|from runner|no home');
      expect(out.stderr.toString()).toBe('oops');
      expect(out.exitCode).toBe(7);
    });

    it('Send — stdin arrives from the base64 line; without it the program reads end of file at once', async () => {
      const shellId = await openShell();
      const bytes = Buffer.from([0, 1, 2, 255, 10, 13, 10]);
      const fed = await command(shellId, runner(['cat'], {}, true), `${b64(bytes)}\r\n`);
      expect((await receiveAll(shellId, fed)).stdout.equals(bytes)).toBe(true);
      const none = await command(shellId, runner(['cat']));
      expect(await receiveAll(shellId, none)).toMatchObject({ exitCode: 0, stdout: Buffer.alloc(0) });
    });

    it('Send — behind the bootstrap, the runner is the first stdin line and stdin the second', async () => {
      const shellId = await openShell();
      const commandId = await command(
        shellId,
        BOOTSTRAP,
        `${b64(runner(['sh', '-c', 'printf "%s:" "$1"; cat', 'sh', 'arg'], {}, true))}\r\n${b64('input')}\r\n`,
      );
      expect(await receiveAll(shellId, commandId)).toMatchObject({
        exitCode: 0,
        stdout: Buffer.from('arg:input'),
      });
    });

    it('Receive — large output comes in replies that stay under MaxEnvelopeSize', async () => {
      const shellId = await openShell();
      const commandId = await command(shellId, runner(['head', '-c', '1000000', '/dev/zero']));
      const out = await receiveAll(shellId, commandId);
      expect(out.exitCode).toBe(0);
      expect(out.stdout.equals(Buffer.alloc(1_000_000))).toBe(true);
      expect(out.replies).toBeGreaterThan(2);
      expect(out.largestReply).toBeLessThanOrEqual(153_600);
    });

    it('Receive — a silent process gets the operation time-out fault; injected time-outs come first', async () => {
      const shellId = await openShell();
      const commandId = await command(shellId, runner(['sh', '-c', 'sleep 2; printf late']));
      fake.faults.receiveTimeouts(1);
      expect(await receive(shellId, commandId)).toContain('Code="2150858793"');
      expect(await receive(shellId, commandId, 'PT0.2S')).toContain('Code="2150858793"');
      expect(await receiveAll(shellId, commandId)).toMatchObject({
        exitCode: 0,
        stdout: Buffer.from('late'),
      });
    });

    it('Command — a missing program exits 127 with PowerShell’s message; other commands still go to the built-ins', async () => {
      const shellId = await openShell();
      const missing = await command(shellId, runner(['fleetward-no-such-program']));
      const out = await receiveAll(shellId, missing);
      expect(out.exitCode).toBe(127);
      expect(out.stderr.toString()).toContain("The term 'fleetward-no-such-program' is not recognized");
      const reply = await post(
        `${SHELL}/Command`,
        '<rsp:CommandLine><rsp:Command>cmd</rsp:Command><rsp:Arguments>/c echo hi</rsp:Arguments></rsp:CommandLine>',
        shellId,
      );
      const builtin = reply.match(/<rsp:CommandId>([^<]+)</)?.[1] as string;
      expect(await receiveAll(shellId, builtin)).toMatchObject({
        exitCode: 0,
        stdout: Buffer.from('hi\r\n'),
      });
    });
  },
);
