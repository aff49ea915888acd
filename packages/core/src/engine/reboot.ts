import type { Server } from '../domain/index.js';
import {
  AbortedError,
  CommandFailedError,
  HostKeyMismatchError,
  TimeoutError,
  toFleetwardError,
} from '../errors.js';
import { parseWindowsBootTime, windowsBootTimeCommand, windowsRebootCommand } from '../os/windows-host.js';
import type { Adapter, Command } from '../ports/adapter.js';
import { sleep } from '../util/sleep.js';
import { runCommand } from './exec.js';
import { isWindowsServer } from './scan.js';

/** Reads the kernel's boot id: a fresh UUID every boot, so a changed one proves a reboot happened. */
export const BOOT_ID_COMMAND: Command = { argv: ['cat', '/proc/sys/kernel/random/boot_id'] };

/**
 * Asks for a reboot, detached and a little delayed, so that the session that asked for it ends
 * cleanly before the host goes down (a reboot that kills its own SSH channel reads as a failure).
 */
export const REBOOT_SCRIPT = `(sleep 2; reboot || systemctl reboot || shutdown -r now) >/dev/null 2>&1 </dev/null &
`;

/** What a verified reboot has done so far; persisted by the caller between the phases. */
export interface RebootProgress {
  /** The boot id read before the reboot was asked for. */
  bootIdBefore?: string | undefined;
  /** When the reboot command was sent (ISO time). */
  rebootRequestedAt?: string | undefined;
}

export interface VerifiedRebootOptions {
  adapter: Adapter;
  server: Server;
  /** What an earlier, interrupted attempt recorded: it is continued, not started over. */
  progress?: RebootProgress;
  /**
   * Called after each phase, before the next begins (`bootIdBefore` read, then reboot requested),
   * so a process that dies can be resumed from the store. A throw ends the reboot.
   */
  record: (progress: RebootProgress) => Promise<void>;
  /** How long the server may take to answer with a new boot id, from when waiting starts. */
  timeoutMs: number;
  /** How often to ask. */
  pollIntervalMs: number;
  /** The current time, as recorded in `rebootRequestedAt`. */
  now: () => Date;
  signal?: AbortSignal;
}

const cancelledSleep = (ms: number, signal?: AbortSignal) => sleep(ms, signal, 'the reboot was cancelled');

/**
 * Reads what identifies the server's current boot: the kernel's boot id on Linux, the last boot
 * time (`Win32_OperatingSystem.LastBootUpTime`, UTC) on Windows.
 */
async function readBootId(
  adapter: Adapter,
  server: Server,
  signal: AbortSignal | undefined,
): Promise<string> {
  const windows = isWindowsServer(server);
  const out = await runCommand(adapter, server, windows ? windowsBootTimeCommand() : BOOT_ID_COMMAND, {
    timeoutMs: 30_000,
    ...(signal ? { signal } : {}),
  });
  if (windows) {
    try {
      return parseWindowsBootTime(out);
    } catch (error) {
      throw new CommandFailedError(`${server.name}: ${(error as Error).message}`);
    }
  }
  const id = out.stdout.trim();
  if (out.exitCode !== 0 || !/^[0-9a-f-]{8,64}$/i.test(id)) {
    throw new CommandFailedError(
      `cannot read the boot id of ${server.name}: ${out.stderr.trim() || `exit ${out.exitCode}`}`,
    );
  }
  return id;
}

/**
 * Reboots a server and proves it came back: reads its boot id (on Windows the last boot time),
 * asks for a detached reboot (as root; `shutdown.exe /r` on Windows), then polls until the server
 * answers with a different one. Each phase is recorded
 * through `record` before the next, and a call with earlier `progress` continues where it stopped:
 * a server whose boot id already changed is done, and one whose reboot was requested is waited for
 * rather than rebooted again. A reboot that was sent but not yet recorded when the caller died is
 * asked for again; the second request dies with the first reboot, or at worst reboots it twice.
 *
 * Timeouts are measured on the machine's monotonic clock, not the Fleet's: a host coming back is a
 * real-time event.
 *
 * @returns the boot ids before and after.
 * @throws TransportError/TimeoutError/CommandFailedError when the boot id cannot be read first or
 *   the reboot cannot be requested; TimeoutError when the server did not come back in time;
 *   AbortedError when `signal` fired.
 */
export async function verifiedReboot(
  options: VerifiedRebootOptions,
): Promise<{ bootIdBefore: string; bootIdAfter: string }> {
  const { adapter, server, signal } = options;
  let before = options.progress?.bootIdBefore;
  let requested = options.progress?.rebootRequestedAt;
  if (before !== undefined) {
    // A resumed reboot: the server may have come back already, whatever happened in between.
    const now = await readBootId(adapter, server, signal).catch(() => undefined);
    if (now !== undefined && now !== before) return { bootIdBefore: before, bootIdAfter: now };
  } else {
    before = await readBootId(adapter, server, signal);
    requested = undefined;
    await options.record({ bootIdBefore: before });
  }
  if (requested === undefined) {
    const resumed = options.progress?.bootIdBefore !== undefined;
    const asked = await runCommand(
      adapter,
      server,
      isWindowsServer(server)
        ? windowsRebootCommand()
        : { interpreter: ['sh', '-s'], script: REBOOT_SCRIPT, sudo: true },
      { timeoutMs: 60_000, ...(signal ? { signal } : {}) },
    ).catch((error: unknown) => {
      // Resumed, the reboot may have been asked for just before the crash and be under way now:
      // an unreachable server is then waited for, and the wait says whether it came back.
      if (!resumed || error instanceof AbortedError) throw error;
      return undefined;
    });
    if (asked && asked.exitCode !== 0) {
      throw new CommandFailedError(
        `${server.name} refused the reboot: ${asked.stderr.trim().slice(0, 500) || `exit ${asked.exitCode}`}`,
      );
    }
    requested = options.now().toISOString();
    await options.record({ bootIdBefore: before, rebootRequestedAt: requested });
  }
  const deadline = performance.now() + options.timeoutMs;
  let last: string | undefined;
  for (;;) {
    await cancelledSleep(options.pollIntervalMs, signal);
    try {
      const now = await readBootId(adapter, server, signal);
      if (now !== before) return { bootIdBefore: before, bootIdAfter: now };
      last = `it still runs boot ${now}`;
    } catch (error) {
      // A host that comes back with another host key is not "still rebooting": it stops the work.
      if (error instanceof AbortedError || error instanceof HostKeyMismatchError) throw error;
      // A host going down and coming back refuses or drops connections for a while: expected.
      last = `it did not answer: ${toFleetwardError(error, 'reading the boot id').message.slice(0, 300)}`;
    }
    if (performance.now() > deadline) {
      throw new TimeoutError(
        `${server.name} did not come back with a new boot id within ${options.timeoutMs} ms (${last})`,
      );
    }
  }
}
