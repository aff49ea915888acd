import {
  CommandFailedError,
  DriftedError,
  ParseError,
  type PinnedPackage,
  ValidationError,
} from '@fleetward/core';
import {
  parseWindowsBootTime,
  parseWindowsPreflight,
  parseWindowsUpdateInstall,
  parseWindowsUpdateInstalled,
  WINDOWS_UPDATE_INSTALL_MARKER,
  WINDOWS_UPDATE_PINS_ENV,
  windowsUpdateDriver,
  windowsUpdateInstallCommand,
} from '@fleetward/core/os';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const A = '5d7a1a3c-2b5c-4f0e-9d7e-2c1b3a4f5e6d';
const B = 'aa0b6a2e-1111-4a4a-9b9b-0123456789ab';
const pin = (name: string, version: string): PinnedPackage => ({ name, version, arch: '' });
const out = (stdout: string, exitCode = 0, stderr = '') => ({ stdout, stderr, exitCode });
const entry = (over: Record<string, unknown>) => ({
  name: 'KB5046616',
  id: A,
  revision: 1,
  state: 'installed',
  resultCode: 2,
  hresult: null,
  rebootRequired: false,
  ...over,
});
const doc = (results: unknown[], extra: Record<string, unknown> = {}) =>
  JSON.stringify({ results, rebootRequired: false, error: null, ...extra });

describe('Windows Update install command', () => {
  it('installCommand — pins travel in the environment; the script is constant text', () => {
    const one = windowsUpdateInstallCommand([pin('KB5046616', `${A}.1`), pin(B, `${B.toUpperCase()}.201`)]);
    const two = windowsUpdateInstallCommand([pin('KB1', `${B}.7`)]);
    expect('script' in one && one.script.startsWith(WINDOWS_UPDATE_INSTALL_MARKER)).toBe(true);
    expect(one.interpreter[0]).toBe('powershell.exe');
    expect(one.script).toBe('script' in two ? two.script : '');
    expect(one.env).toEqual({ [WINDOWS_UPDATE_PINS_ENV]: `KB5046616=${A}.1 ${B}=${B}.201` });
  });

  it('installCommand — any name or version that is not a Windows Update one is a ValidationError naming the pin', () => {
    const hostile = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.constantFrom("KB1'; Remove-Item C:\\ -Recurse; '", 'KB1 KB2', 'KB1=x', '$(whoami)', 'KB', ''),
    );
    fc.assert(
      fc.property(hostile, fc.boolean(), (value, asName) => {
        const bad = asName ? pin(value, `${A}.1`) : pin('KB5046616', value);
        const valid = asName
          ? /^(KB\d{1,10}|[0-9a-f-]{36})$/i.test(value)
          : /^[0-9a-f-]{36}\.\d{1,10}$/i.test(value);
        fc.pre(!valid);
        let thrown: unknown;
        try {
          windowsUpdateInstallCommand([pin('KB1', `${B}.1`), bad]);
        } catch (error) {
          thrown = error;
        }
        expect(thrown).toBeInstanceOf(ValidationError);
        expect((thrown as ValidationError).issues[0]!.path).toEqual([1, asName ? 'name' : 'version']);
      }),
      { numRuns: 300 },
    );
    expect(() => windowsUpdateInstallCommand([])).toThrow(ValidationError);
  });

  it('driver — installs exactly the selection, so a plan needs no simulation', () => {
    expect(windowsUpdateDriver.installsExactlySelection).toBe(true);
    expect(windowsUpdateDriver.simulateInstallCommand).toBeUndefined();
    expect(windowsUpdateDriver.installCommand).toBeDefined();
  });
});

describe('Windows Update install results', () => {
  it('parseInstall — every update installed: results per update, reboot from the agent', () => {
    const parsed = parseWindowsUpdateInstall(
      out(
        doc(
          [
            entry({ rebootRequired: true }),
            entry({ name: 'KB5045935', id: B, revision: 201, state: 'already-installed', resultCode: null }),
          ],
          { rebootRequired: true },
        ),
      ),
    );
    expect(parsed.rebootRequired).toBe(true);
    expect(parsed.results).toEqual([
      { name: 'KB5046616', version: `${A}.1`, state: 'installed', rebootRequired: true },
      { name: 'KB5045935', version: `${B}.201`, state: 'already-installed', rebootRequired: false },
    ]);
    expect(parsed.warnings).toEqual([]);
  });

  it('parseInstall — succeeded with errors is a warning, not a failure', () => {
    const parsed = parseWindowsUpdateInstall(
      out(doc([entry({ state: 'installed-with-errors', resultCode: 3, hresult: '0x8024200D' })])),
    );
    expect(parsed.warnings[0]).toContain('WU_E_UH_NEEDANOTHERDOWNLOAD');
  });

  it('parseInstall — an update no longer offered is a DriftedError; the rest were skipped', () => {
    const error = (() => {
      try {
        parseWindowsUpdateInstall(
          out(
            doc([
              entry({ state: 'not-offered', resultCode: null }),
              entry({ name: 'KB5045935', id: B, state: 'skipped', resultCode: null }),
            ]),
          ),
        );
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(DriftedError);
    expect((error as DriftedError).message).toContain(`KB5046616 ${A}.1`);
    expect((error as DriftedError).details['results']).toHaveLength(2);
  });

  it('parseInstall — failed, download-failed, aborted and unfinished updates fail with their HRESULTs explained', () => {
    for (const [state, hresult, text] of [
      ['failed', '0x80070643', 'ERROR_INSTALL_FAILURE'],
      ['download-failed', '0x80246007', 'WU_E_DM_NOTDOWNLOADED'],
      ['aborted', '0x8024000b', 'WU_E_CALL_CANCELLED'],
      ['pending', null, 'failed'],
    ] as const) {
      let thrown: unknown;
      try {
        parseWindowsUpdateInstall(out(doc([entry({ state, resultCode: 4, hresult })])));
      } catch (e) {
        thrown = e;
      }
      expect(thrown, state).toBeInstanceOf(CommandFailedError);
      expect((thrown as Error).message, state).toContain(text);
    }
  });

  it('parseInstall — an agent error, a task that ended without a result, and garbage are errors, never success', () => {
    expect(() =>
      parseWindowsUpdateInstall(
        out(doc([], { error: { hresult: '0x8024402C', message: 'Exception from HRESULT: 0x8024402C' } })),
      ),
    ).toThrow(/WU_E_PT_WINHTTP_NAME_NOT_RESOLVED/);
    expect(() =>
      parseWindowsUpdateInstall(
        out('', 3, 'fleetward: the install task ended without a result: HRESULT 0x80070005\r\n'),
      ),
    ).toThrow(/E_ACCESSDENIED/);
    for (const garbage of ['', 'null', '{}', '[]', 'Access is denied.', doc([entry({ state: 'done' })])]) {
      expect(() => parseWindowsUpdateInstall(out(garbage)), garbage).toThrow(ParseError);
    }
  });
});

describe('Windows Update installed list and host facts', () => {
  const installed = (items: unknown[]) => out(JSON.stringify({ installed: items }));

  it('parseInstalled — keyed by KB and UpdateID; the highest revision of an update wins', () => {
    const map = parseWindowsUpdateInstalled(
      installed([
        { id: A.toUpperCase(), revision: 1, kb: ['5046616'] },
        { id: A, revision: 3, kb: ['5046616'] },
      ]),
    );
    expect(map.get('KB5046616')).toBe(`${A}.3`);
    expect(map.get(A)).toBe(`${A}.3`);
  });

  it('parseInstalled — a KB shipped as several updates resolves to the pinned one', () => {
    const items = [
      { id: B, revision: 9, kb: ['5046616'] },
      { id: A, revision: 1, kb: ['5046616'] },
    ];
    expect(parseWindowsUpdateInstalled(installed(items)).get('KB5046616')).toBe(`${B}.9`);
    expect(parseWindowsUpdateInstalled(installed(items), [pin('KB5046616', `${A}.1`)]).get('KB5046616')).toBe(
      `${A}.1`,
    );
  });

  it('parseInstalled — a failed search or garbage is an error', () => {
    expect(() => parseWindowsUpdateInstalled(out('', 2, 'HRESULT 0x8024001E'))).toThrow(CommandFailedError);
    expect(() => parseWindowsUpdateInstalled(out('{"installed":[{"id":"x"}]}'))).toThrow(ParseError);
  });

  it('parseWindowsBootTime — the round-trip time identifies the boot; anything else fails', () => {
    expect(parseWindowsBootTime(out('\uFEFF2026-11-01T06:00:00.0000000Z\r\n'))).toBe(
      '2026-11-01T06:00:00.0000000Z',
    );
    for (const bad of ['', '01/11/2026 06:00', '2026-11-01T06:00:00+01:00', 'x'.repeat(30)]) {
      expect(() => parseWindowsBootTime(out(bad)), bad).toThrow(CommandFailedError);
    }
    expect(() => parseWindowsBootTime(out('2026-11-01T06:00:00Z', 1))).toThrow(CommandFailedError);
  });

  it('parseWindowsPreflight — reads the object; rejects anything else', () => {
    const facts = {
      admin: true,
      drive: 'C:',
      freeMiB: 1024,
      serviceStartMode: 'Manual',
      serviceState: 'Running',
      installerBusy: null,
    };
    expect(parseWindowsPreflight(out(JSON.stringify(facts)))).toEqual(facts);
    expect(() => parseWindowsPreflight(out(JSON.stringify({ ...facts, admin: 'yes' })))).toThrow(ParseError);
    expect(() => parseWindowsPreflight(out('', 1, 'Access is denied'))).toThrow(CommandFailedError);
  });
});
