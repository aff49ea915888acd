import { spawnSync } from 'node:child_process';
import { aptDriver, type Command, CommandFailedError, ValidationError } from '@fleetward/core';
import { itIfAvailable, unavailableWithout } from '@fleetward/testkit';
import { describeWithLab, type Lab, startLab } from '@fleetward/testkit/lab';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

function run(command: Command) {
  if (!('argv' in command)) throw new Error('expected argv');
  const r = spawnSync(command.argv[0]!, command.argv.slice(1), {
    env: { PATH: process.env['PATH'], ...command.env },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return { exitCode: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('aptDriver install commands', () => {
  it('installCommand — pins exact versions, refuses removals, runs as root', () => {
    const cmd = aptDriver.installCommand!([{ name: 'labdemo', version: '1:1.1-1', arch: 'all' }]);
    expect(cmd).toMatchObject({ sudo: true, env: { DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' } });
    expect('argv' in cmd && cmd.argv).toEqual([
      'apt-get',
      '-y',
      '-q',
      '-o',
      'Dpkg::Options::=--force-confdef',
      '-o',
      'Dpkg::Options::=--force-confold',
      '--no-remove',
      'install',
      'labdemo=1:1.1-1',
    ]);
  });

  it('installCommand — hostile names and versions are a ValidationError naming each, never argv', () => {
    const hostile = [
      { name: 'x; touch /tmp/pwned', version: '1.0', arch: '' },
      { name: '-oAPT::Update::Pre-Invoke::=touch /tmp/pwned', version: '1.0', arch: '' },
      { name: 'ok', version: '$(reboot)', arch: '' },
    ];
    try {
      aptDriver.installCommand!(hostile);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).paths).toEqual(['0.name', '1.name', '2.version']);
    }
    expect(() => aptDriver.simulateInstallCommand!([])).toThrow(ValidationError);
    expect(() => aptDriver.installedVersionsCommand!(['--admindir=/tmp'])).toThrow(ValidationError);
  });

  it('parseInstall — a lock error is a retryable CommandFailedError with apt’s message', () => {
    const error = (() => {
      try {
        aptDriver.parseInstall!({
          exitCode: 100,
          stdout: '',
          stderr: 'E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)\n',
        });
      } catch (e) {
        return e as CommandFailedError;
      }
    })();
    expect(error).toBeInstanceOf(CommandFailedError);
    expect(error!.retryable).toBe(true);
    expect(error!.message).toContain('held by process 4242');
  });

  itIfAvailable(
    'parseInstalledVersions — reads dpkg-query for installed and unknown names',
    unavailableWithout({ commands: ['dpkg-query'] }),
    () => {
      const versions = aptDriver.parseInstalledVersions!(
        run(aptDriver.installedVersionsCommand!(['bash', 'no-such-package-fleetward'])),
      );
      expect(versions.get('bash')).toMatch(/^\d/);
      expect(versions.has('no-such-package-fleetward')).toBe(false);
    },
  );
});

describeWithLab('aptDriver install commands on a lab host', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await startLab({ hosts: [{ name: 'deb1', flavour: 'debian' }] });
  }, 120_000);
  afterAll(() => lab?.stop(), 120_000);

  /** Runs a driver command on the lab host through the back channel, as root. */
  const onHost = async (command: Command) => {
    if (!('argv' in command)) throw new Error('expected argv');
    const r = await lab.host('deb1').exec([...command.argv], { env: { ...command.env } });
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  };

  it('simulateInstallCommand — resolves a real upgrade without changing the host', async () => {
    const upgradable = (
      await lab.host('deb1').exec(['apt', 'list', '--upgradable'], { env: { LC_ALL: 'C' } })
    ).stdout
      .split('\n')
      .filter((l) => l.includes('[upgradable from:'));
    // The lab always publishes upgrades; the test needs one to resolve.
    expect(upgradable.length).toBeGreaterThan(0);
    for (const line of upgradable) {
      const [nameSuite, version] = line.split(' ');
      const name = nameSuite!.split('/')[0]!;
      const before = aptDriver.parseInstalledVersions!(
        await onHost(aptDriver.installedVersionsCommand!([name])),
      );
      const tx = aptDriver.parseSimulateInstall!(
        await onHost(aptDriver.simulateInstallCommand!([{ name, version: version!, arch: '' }])),
      );
      expect(tx.install).toContainEqual(expect.objectContaining({ name, version, isNew: false }));
      expect(tx.remove).toEqual([]);
      const after = aptDriver.parseInstalledVersions!(
        await onHost(aptDriver.installedVersionsCommand!([name])),
      );
      expect(after).toEqual(before);
      expect(after.get(name)).not.toBe(version);
    }
  }, 120_000);
});
