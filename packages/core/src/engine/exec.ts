import type { Server } from '../domain/index.js';
import { CapabilityMissingError } from '../errors.js';
import type { CommandOutput } from '../os/driver.js';
import type { Adapter, Command } from '../ports/adapter.js';

export interface RunOptions {
  signal?: AbortSignal;
  /** @default 600_000 */
  timeoutMs?: number;
  /** @default 16 MiB */
  maxOutputBytes?: number;
}

/** Runs a driver command through the adapter's `exec` and hands back what parsers read. */
export async function runCommand(
  adapter: Adapter,
  server: Server,
  command: Command,
  options: RunOptions = {},
): Promise<CommandOutput> {
  if (!adapter.exec) {
    throw new CapabilityMissingError(
      `adapter ${adapter.name} has no exec capability, so nothing can run on ${server.name}`,
    );
  }
  const result = await adapter.exec.exec(server, command, {
    timeoutMs: options.timeoutMs ?? 600_000,
    maxOutputBytes: options.maxOutputBytes ?? 16 * 1024 * 1024,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return {
    exitCode: result.exitCode,
    stdout: result.stdout.text,
    stderr: result.stderr.text,
    truncated: result.stdout.truncated || result.stderr.truncated,
  };
}
