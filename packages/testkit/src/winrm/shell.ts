import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { type CommandOutput, decodePowerShellCommand, type OutputChunk, runIntoOutput } from './commands.js';
import { RunnerProcess } from './processes.js';
import {
  CMD_RESOURCE_URI,
  durationMs,
  element,
  elements,
  envelope,
  type FaultSpec,
  faultEnvelope,
  NS,
  text,
} from './soap.js';
import type { WinRmFakeOptions, WinRmFakeShell, WinRmFakeUser } from './types.js';

const SHELL_ACTION = `${NS.shell}/`;
const TRANSFER_ACTION = `${NS.transfer}/`;
const STATE_RUNNING = `${NS.shell}/CommandState/Running`;
const STATE_DONE = `${NS.shell}/CommandState/Done`;
const CHUNK_BYTES = 32 * 1024;
/** Output per Receive reply: in base64 with its XML it stays under the `MaxEnvelopeSize` of 153,600 clients send. */
const RECEIVE_MAX_BYTES = 3 * CHUNK_BYTES;
const SUPPORTED_ACTIONS = new Set([
  `${TRANSFER_ACTION}Create`,
  `${TRANSFER_ACTION}Delete`,
  ...['Command', 'Send', 'Receive', 'Signal'].map((a) => `${SHELL_ACTION}${a}`),
]);

/** The WSManFault codes the fake answers with. */
export const WSMAN_FAULT = {
  /** ERROR_WSMAN_OPERATION_TIMEDOUT: a Receive had nothing to say within OperationTimeout; clients retry. */
  operationTimeout: '2150858793',
  /** ERROR_WSMAN_INVALID_SELECTORS: the ShellId names no shell (Windows says "the shell was not found"). */
  shellNotFound: '2150858843',
  /** The action URI is not one of the shell's. */
  actionNotSupported: '2150858754',
  /** ERROR_INTERNAL_ERROR, for injected 500s. */
  internalError: '1359',
} as const;

interface CommandRecord {
  commandId: string;
  command: string;
  arguments: string[];
  signals: string[];
  controller: AbortController;
  stdin: Buffer[];
  stdinSent: boolean;
  /** Where the command's output collects: started by the first Receive, or at Command for a process. */
  output: CommandOutput | undefined;
  /** The child process running it, with the `processes` option. */
  process: RunnerProcess | undefined;
  /** A Receive answered `Running` already: Done never comes in the first answer. */
  answered: boolean;
  done: boolean;
  timeoutsLeft: number;
}

interface ShellRecord {
  shellId: string;
  username: string;
  env: Record<string, string>;
  workingDirectory: string | undefined;
  codepage: number;
  commands: Map<string, CommandRecord>;
}

/** A reply to one WS-Man request. */
export interface ShellReply {
  status: number;
  body: string;
  action: string;
  faultCode?: string;
}

/** Failure knobs the shell service reads (set through the fake's `faults`). */
export interface ShellFaultState {
  receiveTimeouts: number;
  slowReceiveMs: number;
}

/** The WinRS shell service: Create, Command, Send, Receive, Signal, Delete on `…/windows/shell/cmd`. */
export class ShellService {
  readonly #shells = new Map<string, ShellRecord>();
  readonly #options: WinRmFakeOptions;
  readonly #faults: ShellFaultState;

  constructor(options: WinRmFakeOptions, faults: ShellFaultState) {
    this.#options = options;
    this.#faults = faults;
  }

  snapshot(): WinRmFakeShell[] {
    return [...this.#shells.values()].map((s) => ({
      shellId: s.shellId,
      username: s.username,
      env: { ...s.env },
      workingDirectory: s.workingDirectory,
      codepage: s.codepage,
      commands: [...s.commands.values()].map((c) => ({
        commandId: c.commandId,
        command: c.command,
        arguments: [...c.arguments],
        state: c.done ? 'done' : 'running',
        signals: [...c.signals],
        ...(c.process?.pid === undefined ? {} : { pid: c.process.pid }),
      })),
    }));
  }

  /** Aborts every running command and kills every child process (the fake is closing). */
  abortAll(): void {
    for (const shell of this.#shells.values()) for (const c of shell.commands.values()) stop(c);
  }

  async handle(xml: string, user: WinRmFakeUser): Promise<ShellReply> {
    const fullAction = text(xml, 'Action') ?? '';
    const messageId = text(xml, 'MessageID');
    const action = fullAction.split('/').pop() ?? '';
    const resourceUri = text(xml, 'ResourceURI');
    const known = resourceUri === CMD_RESOURCE_URI && SUPPORTED_ACTIONS.has(fullAction);
    if (!known) {
      return this.#fault(action, messageId, 500, {
        code: 'Sender',
        subcode: 'a:ActionNotSupported',
        wsmanCode: WSMAN_FAULT.actionNotSupported,
        message: `The WS-Management service does not support the action ${fullAction} on resource ${resourceUri ?? '(none)'}.`,
      });
    }
    if (action === 'Create') return this.#create(xml, messageId, user);
    const shellId = elements(xml, 'Selector').find((s) => s.attributes['Name'] === 'ShellId')?.text;
    const shell = shellId === undefined ? undefined : this.#shells.get(shellId);
    if (!shell) {
      return this.#fault(action, messageId, 500, {
        code: 'Sender',
        subcode: 'w:InvalidSelectors',
        wsmanCode: WSMAN_FAULT.shellNotFound,
        message: `The request for the Windows Remote Shell with ShellId ${shellId ?? '(none)'} failed because the shell was not found on the server.`,
      });
    }
    if (action === 'Delete') return this.#delete(shell, messageId);
    if (action === 'Command') return this.#command(xml, shell, messageId);
    const commandId =
      element(xml, 'DesiredStream')?.attributes['CommandId'] ??
      element(xml, 'Signal')?.attributes['CommandId'] ??
      element(xml, 'Stream')?.attributes['CommandId'];
    const command = commandId === undefined ? undefined : shell.commands.get(commandId);
    if (!command) {
      return this.#fault(action, messageId, 500, {
        code: 'Sender',
        subcode: 'w:InvalidParameter',
        wsmanCode: WSMAN_FAULT.shellNotFound,
        message: `The request for the Windows Remote Shell with CommandId ${commandId ?? '(none)'} failed because the command was not found in shell ${shell.shellId}.`,
      });
    }
    if (action === 'Send') return this.#send(xml, command, messageId);
    if (action === 'Signal') return this.#signal(xml, command, messageId);
    return this.#receive(xml, shell, command, messageId, user);
  }

  #create(xml: string, messageId: string | undefined, user: WinRmFakeUser): ShellReply {
    const shellId = randomUUID().toUpperCase();
    const env: Record<string, string> = {};
    for (const v of elements(xml, 'Variable')) if (v.attributes['Name']) env[v.attributes['Name']] = v.text;
    const codepage = Number(
      elements(xml, 'Option').find((o) => o.attributes['Name'] === 'WINRS_CODEPAGE')?.text ?? 437,
    );
    const workingDirectory = text(xml, 'WorkingDirectory') || undefined;
    this.#shells.set(shellId, {
      shellId,
      username: user.username,
      env,
      workingDirectory,
      codepage,
      commands: new Map(),
    });
    const body =
      `<x:ResourceCreated><a:Address>http://127.0.0.1/wsman</a:Address><a:ReferenceParameters>` +
      `<w:ResourceURI>${CMD_RESOURCE_URI}</w:ResourceURI><w:SelectorSet><w:Selector Name="ShellId">${shellId}</w:Selector>` +
      `</w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>` +
      `<rsp:Shell><rsp:ShellId>${shellId}</rsp:ShellId><rsp:ResourceUri>${CMD_RESOURCE_URI}</rsp:ResourceUri>` +
      `<rsp:Owner>${user.username}</rsp:Owner><rsp:InputStreams>stdin</rsp:InputStreams>` +
      `<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>`;
    return this.#ok('Create', `${TRANSFER_ACTION}CreateResponse`, messageId, body);
  }

  #command(xml: string, shell: ShellRecord, messageId: string | undefined): ShellReply {
    const commandId = randomUUID().toUpperCase();
    const command = text(xml, 'Command') ?? '';
    const args = elements(xml, 'Arguments').map((a) => a.text);
    const runner = this.#options.processes ? runnerProcess([command, ...args].join(' '), shell) : undefined;
    shell.commands.set(commandId, {
      commandId,
      command,
      arguments: args,
      signals: [],
      controller: new AbortController(),
      stdin: [],
      stdinSent: false,
      output: runner?.output,
      process: runner,
      answered: false,
      done: false,
      timeoutsLeft: this.#options.receiveTimeoutsPerCommand ?? 0,
    });
    const body = `<rsp:CommandResponse><rsp:CommandId>${commandId}</rsp:CommandId></rsp:CommandResponse>`;
    return this.#ok('Command', `${SHELL_ACTION}CommandResponse`, messageId, body);
  }

  #send(xml: string, command: CommandRecord, messageId: string | undefined): ShellReply {
    for (const stream of elements(xml, 'Stream')) {
      if (stream.attributes['Name'] !== 'stdin') continue;
      const bytes = Buffer.from(stream.text, 'base64');
      command.stdin.push(bytes);
      command.stdinSent = true;
      command.process?.stdin(bytes, stream.attributes['End'] === 'true');
    }
    return this.#ok('Send', `${SHELL_ACTION}SendResponse`, messageId, '<rsp:SendResponse/>');
  }

  #signal(xml: string, command: CommandRecord, messageId: string | undefined): ShellReply {
    const code = text(xml, 'Code') ?? '';
    const name = code.split('/').pop() ?? code;
    command.signals.push(name);
    command.controller.abort();
    command.process?.kill(name === 'ctrl_c' || name === 'ctrl_break' ? 'SIGINT' : 'SIGKILL');
    if (code.endsWith('/terminate')) command.done = true;
    return this.#ok('Signal', `${SHELL_ACTION}SignalResponse`, messageId, '<rsp:SignalResponse/>');
  }

  #delete(shell: ShellRecord, messageId: string | undefined): ShellReply {
    for (const command of shell.commands.values()) stop(command);
    this.#shells.delete(shell.shellId);
    return this.#ok('Delete', `${TRANSFER_ACTION}DeleteResponse`, messageId, '');
  }

  async #receive(
    xml: string,
    shell: ShellRecord,
    command: CommandRecord,
    messageId: string | undefined,
    user: WinRmFakeUser,
  ): Promise<ShellReply> {
    if (this.#faults.slowReceiveMs > 0) await sleep(this.#faults.slowReceiveMs);
    const timedOut = (): ShellReply =>
      this.#fault('Receive', messageId, 500, {
        code: 'Receiver',
        subcode: 'w:TimedOut',
        wsmanCode: WSMAN_FAULT.operationTimeout,
        message:
          'The WS-Management service cannot complete the operation within the time specified in OperationTimeout.',
      });
    if (this.#faults.receiveTimeouts > 0) {
      this.#faults.receiveTimeouts--;
      return timedOut();
    }
    if (command.timeoutsLeft > 0) {
      command.timeoutsLeft--;
      return timedOut();
    }
    command.output ??= runIntoOutput(
      {
        shellId: shell.shellId,
        commandId: command.commandId,
        command: command.command,
        arguments: command.arguments,
        env: { ...shell.env },
        workingDirectory: shell.workingDirectory,
        codepage: shell.codepage,
        username: user.username,
        stdin: command.stdinSent ? Buffer.concat(command.stdin) : undefined,
        signal: command.controller.signal,
      },
      this.#options,
    );
    const { output } = command;
    const operationTimeoutMs = durationMs(text(xml, 'OperationTimeout')) ?? 20_000;
    if (!(await output.wait(operationTimeoutMs))) return timedOut();
    const id = command.commandId;
    const chunks = output.take(RECEIVE_MAX_BYTES);
    // Output first, with state Running; Done (and the exit code) in a reply of its own, after all of it.
    let body = streams(id, chunks);
    if (chunks.length === 0 && command.answered) {
      command.done = true;
      body +=
        `<rsp:Stream Name="stdout" CommandId="${id}" End="true"></rsp:Stream>` +
        `<rsp:Stream Name="stderr" CommandId="${id}" End="true"></rsp:Stream>` +
        `<rsp:CommandState CommandId="${id}" State="${STATE_DONE}"><rsp:ExitCode>${output.exitCode}</rsp:ExitCode></rsp:CommandState>`;
    } else {
      command.answered = true;
      body += `<rsp:CommandState CommandId="${id}" State="${STATE_RUNNING}"/>`;
    }
    return this.#ok(
      'Receive',
      `${SHELL_ACTION}ReceiveResponse`,
      messageId,
      `<rsp:ReceiveResponse SequenceID="0">${body}</rsp:ReceiveResponse>`,
    );
  }

  #ok(action: string, replyAction: string, messageId: string | undefined, body: string): ShellReply {
    return { status: 200, action, body: envelope(replyAction, messageId, body) };
  }

  #fault(action: string, messageId: string | undefined, status: number, fault: FaultSpec): ShellReply {
    return { status, action, body: faultEnvelope(messageId, fault), faultCode: fault.wsmanCode };
  }
}

/** The command's processes end with its shell or the fake, as a Windows job's do. */
function stop(command: CommandRecord): void {
  command.controller.abort();
  command.process?.kill('SIGKILL');
}

/**
 * A child process for `commandLine` when it is `powershell -EncodedCommand` of Fleetward's runner
 * (or of its bootstrap); undefined for every other command, which the hooks answer.
 */
function runnerProcess(commandLine: string, shell: ShellRecord): RunnerProcess | undefined {
  const script = decodePowerShellCommand(commandLine);
  if (script === undefined || !RunnerProcess.accepts(script)) return undefined;
  return new RunnerProcess(script, { env: shell.env, workingDirectory: shell.workingDirectory });
}

/** `rsp:Stream` elements for `chunks`, each at most 32 KiB before base64. */
function streams(commandId: string, chunks: OutputChunk[]): string {
  let xml = '';
  for (const { stream, data } of chunks) {
    for (let offset = 0; offset < data.length; offset += CHUNK_BYTES) {
      const chunk = data.subarray(offset, offset + CHUNK_BYTES).toString('base64');
      xml += `<rsp:Stream Name="${stream}" CommandId="${commandId}">${chunk}</rsp:Stream>`;
    }
  }
  return xml;
}
