import { runCli } from '@fleetward/cli';

/** What one CLI invocation printed and its exit code. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in process on the data directory `dataDir`, capturing its output (no terminal, no env). */
export async function runCliIn(dataDir: string, args: string[]): Promise<CliResult> {
  const out = { stdout: '', stderr: '' };
  const code = await runCli(['--data-dir', dataDir, ...args], {
    stdout: (t) => {
      out.stdout += t;
    },
    stderr: (t) => {
      out.stderr += t;
    },
    env: {},
    isTTY: false,
  });
  return { code, ...out };
}
