import { spawn } from 'node:child_process';
import type { AwsFakeRunner } from '@fleetward/testkit/aws';

/**
 * Runs an SSM script on this machine with `sh -c`, as the SSM agent runs `_script.sh`, in a
 * process group of its own: a cancel kills the whole group, as the agent kills the script's tree.
 */
export const localRunner: AwsFakeRunner = (script, { signal }) =>
  new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
    });
    const kill = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    signal.addEventListener('abort', kill, { once: true });
    child.on('error', reject);
    child.on('close', (code) => {
      signal.removeEventListener('abort', kill);
      if (signal.aborted) reject(new Error('cancelled'));
      else resolve({ exitCode: code ?? 1, stdout, stderr });
    });
  });
