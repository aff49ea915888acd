import { runCli } from '@fleetward/cli';
import type { CliResult } from './run.js';

/**
 * Runs the CLI in process on the store in `dataDir` (initialised already) as at a terminal:
 * progress lines are shown on standard error, without colours (`NO_COLOR`).
 */
export async function runOnTerminal(dataDir: string, args: string[]): Promise<CliResult> {
  const out = { stdout: '', stderr: '' };
  const code = await runCli(['--data-dir', dataDir, ...args], {
    stdout: (t) => {
      out.stdout += t;
    },
    stderr: (t) => {
      out.stderr += t;
    },
    env: { NO_COLOR: '1' },
    isTTY: true,
  });
  return { code, ...out };
}
