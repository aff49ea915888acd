import { randomUUID } from 'node:crypto';
import type { LabHost } from '../lab/types.js';
import type { AwsFakeRunner } from './types.js';

/** Where the runner puts scripts on a lab host, like the SSM agent's orchestration folder. */
export const LAB_SSM_ORCHESTRATION_DIR = '/var/lib/amazon/ssm/fleetward-fake/orchestration';

/**
 * A runner that executes Run Command scripts on a lab host as the SSM agent does: the script is
 * written to `_script.sh` in a fresh folder under `LAB_SSM_ORCHESTRATION_DIR`, run as root with
 * `sh` in the command's `workingDirectory` (or that folder), through the host's back channel.
 * The folder is removed afterwards. Cancellation and time-outs kill the script's process group.
 */
export function labHostRunner(host: LabHost): AwsFakeRunner {
  return async (script, { signal, workingDirectory }) => {
    const dir = `${LAB_SSM_ORCHESTRATION_DIR}/${randomUUID()}`;
    const path = `${dir}/_script.sh`;
    await host.writeFile(path, script, { mode: '700' });
    try {
      const r = await host.exec(['sh', path], { cwd: workingDirectory ?? dir, signal });
      return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
    } finally {
      await host.exec(['rm', '-rf', '--', dir]).catch(() => undefined);
    }
  };
}
