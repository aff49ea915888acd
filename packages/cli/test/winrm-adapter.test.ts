import { join } from 'node:path';
import { createWinRmAdapter } from '@fleetward/adapter-winrm';
import { type AdapterContext, CAPABILITIES, MemorySecretStore, type Server } from '@fleetward/core';
import { describe, expect, it } from 'vitest';
import { WinRmConfigSchema } from '../src/config.js';
import { WINRM_CAPABILITIES, winRmAdapterFrom } from '../src/winrm.js';

const server = {
  id: 'win-1',
  tenantId: 't',
  name: 'win-1',
  address: '127.0.0.1',
  labels: {},
} as unknown as Server;

describe('the CLI builds its WinRM adapter from the configuration', () => {
  it('WINRM_CAPABILITIES — are exactly the capabilities of createWinRmAdapter (a new one must be listed)', async () => {
    const real = createWinRmAdapter({ credentials: { username: 'a', password: 'b' } });
    expect([...WINRM_CAPABILITIES].sort()).toEqual(CAPABILITIES.filter((c) => real[c] !== undefined).sort());
    await real.close?.();
  });

  it('winRmAdapterFrom — reads caFile on first use only; a failed load still closes', async () => {
    const missing = join('/nonexistent', 'fleetward-ca.pem');
    const adapter = winRmAdapterFrom(WinRmConfigSchema.parse({ caFile: missing, credentialsRef: 'r' }));
    expect(adapter.name).toBe('winrm');
    adapter.attach?.({ secrets: new MemorySecretStore() } as unknown as AdapterContext);
    const probe = adapter.login!.probe(server, { username: 'a', password: 'b' });
    await expect(probe).rejects.toMatchObject({ code: 'VALIDATION_FAILED', subject: 'winrm.caFile' });
    await expect(probe).rejects.toThrow(missing);
    await expect(adapter.close?.()).resolves.toBeUndefined();
  });
});
