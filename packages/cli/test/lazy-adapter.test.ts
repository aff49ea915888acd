import { createAwsAdapter } from '@fleetward/adapter-aws';
import { type Adapter, type AdapterContext, CAPABILITIES, type Server } from '@fleetward/core';
import { describe, expect, it } from 'vitest';
import { AWS_CAPABILITIES, lazyAdapter } from '../src/context.js';

describe('the CLI loads the AWS SDK on first use', () => {
  it('AWS_CAPABILITIES — are exactly the capabilities of createAwsAdapter (a new one must be listed)', async () => {
    const real = createAwsAdapter();
    expect([...AWS_CAPABILITIES].sort()).toEqual(CAPABILITIES.filter((c) => real[c] !== undefined).sort());
    await real.close?.();
  });

  it('lazyAdapter — loads nothing until a capability is called, then attaches the real adapter and closes it', async () => {
    const calls: string[] = [];
    const real: Adapter = {
      name: 'aws',
      exec: {
        exec: async (server) => {
          calls.push(`exec ${server.id}`);
          return {
            exitCode: 0,
            signal: null,
            stdout: { text: 'hi', bytes: 2, sha256: '', truncated: false },
            stderr: { text: '', bytes: 0, sha256: '', truncated: false },
            durationMs: 1,
          };
        },
      },
      attach: () => calls.push('attach'),
      close: async () => {
        calls.push('close');
      },
    };
    let loads = 0;
    const lazy = lazyAdapter('aws', ['exec', 'discover'], async () => {
      loads += 1;
      return real;
    });
    lazy.attach?.({} as AdapterContext);
    expect(loads).toBe(0);
    const server = { id: 's1' } as Server;
    const [a, b] = await Promise.all([
      lazy.exec!.exec(server, { argv: ['true'] }),
      lazy.exec!.exec(server, { argv: ['true'] }),
    ]);
    expect([a.stdout.text, b.stdout.text]).toEqual(['hi', 'hi']);
    expect(loads).toBe(1);
    await expect(lazy.discover!.discover({} as never)).rejects.toMatchObject({ code: 'CAPABILITY_MISSING' });
    await lazy.close?.();
    expect(calls).toEqual(['attach', 'exec s1', 'exec s1', 'close']);

    let never = 0;
    const unused = lazyAdapter('aws', ['exec'], async () => {
      never += 1;
      return real;
    });
    await unused.close?.();
    expect(never).toBe(0);
    expect(unused.snapshot).toBeUndefined();
  });
});
