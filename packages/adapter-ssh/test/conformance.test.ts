import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSshAdapter } from '@fleetward/adapter-ssh';
import { describeTransportConformance } from '@fleetward/testkit';
import { describeLab, disposeSshd, generateKey, labUnavailableReason, startSshd } from './support/sshd.js';

describeLab('SSH adapter against a real sshd', labUnavailableReason(), () => {
  describeTransportConformance('ssh (root, ed25519 key, pinned host key)', {
    async create() {
      const sshd = await startSshd();
      const keys = await mkdtemp(join(tmpdir(), 'fleetward-keys-'));
      const key = await generateKey(keys, 'id_ed25519', 'ed25519');
      await sshd.authorize('root', key.publicKey);
      const adapter = createSshAdapter({
        credentials: { username: 'root', privateKey: key.privateKey },
        hostKeyPolicy: 'pinned',
        pinnedHostKeys: { [`[${sshd.host}]:${sshd.port}`]: sshd.hostKeys.map((k) => k.fingerprint) },
        killGraceMs: 500,
      });
      return {
        adapter,
        server: sshd.server(),
        async cleanup() {
          await disposeSshd(sshd);
          await rm(keys, { recursive: true, force: true });
        },
      };
    },
  });
});
