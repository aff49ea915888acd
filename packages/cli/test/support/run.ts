import { runCli } from '@fleetward/cli';

/** What one CLI invocation printed and its exit code. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

const initialised = new Set<string>();

/** Runs the CLI in process with `args`, capturing its output (no terminal; `env` as given). */
export async function runCliWith(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const out = { stdout: '', stderr: '' };
  const code = await runCli(args, {
    stdout: (t) => {
      out.stdout += t;
    },
    stderr: (t) => {
      out.stderr += t;
    },
    env,
    isTTY: false,
  });
  return { code, ...out };
}

/**
 * Runs the CLI in process on the store in `dataDir`, which is initialised (`fleetward init`) the
 * first time, as a user would before their first command; `env` is the CLI's environment (of
 * both, when it initialises).
 */
export async function runCliIn(
  dataDir: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<CliResult> {
  if (!initialised.has(dataDir)) {
    const init = await runCliWith(['--data-dir', dataDir, 'init'], env);
    if (init.code !== 0) throw new Error(`fleetward init failed: ${init.stderr}`);
    initialised.add(dataDir);
  }
  return runCliWith(['--data-dir', dataDir, ...args], env);
}
