import { spawn } from 'node:child_process';
import type { AwsFakeRunner } from '@fleetward/testkit/aws';

/**
 * Runs an SSM script on this machine with `sh -c`, as the SSM agent runs `_script.sh`, in a
 * process group of its own: a cancel kills the whole group, as the agent kills the script's tree.
 */
export const localRunner: AwsFakeRunner = (script, { signal }) =>
  new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    // Bytes first, text at the end: a UTF-8 character split across two chunks stays whole.
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => stdout.push(d));
    child.stderr.on('data', (d: Buffer) => stderr.push(d));
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
      else
        resolve({
          exitCode: code ?? 1,
          stdout: Buffer.concat(stdout).toString('utf8'),
          stderr: Buffer.concat(stderr).toString('utf8'),
        });
    });
  });
