import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { OsFacts } from '../../src/domain/index.js';
import { DEFAULT_DRIVERS } from '../../src/engine/scan.js';
import { CommandFailedError, ParseError } from '../../src/errors.js';
import type { CommandOutput } from '../../src/os/driver.js';
import {
  parseWindowsOs,
  parseWindowsUpdateScan,
  WINDOWS_UPDATE_SCAN_MARKER,
  windowsOsCommand,
  windowsUpdateDriver,
} from '../../src/os/windows-update.js';

const ok = (stdout: string): CommandOutput => ({ exitCode: 0, stdout, stderr: '' });

const CU = {
  id: '5d7a1a3c-2b5c-4f0e-9d7e-2c1b3a4f5e6d',
  revision: 1,
  title:
    '2026-11 Cumulative Update for Microsoft server operating system version 21H2 for x64-based Systems (KB5046616)',
  kb: ['5046616'],
  severity: 'Critical',
  categories: ['Security Updates', 'Microsoft Server operating system-21H2'],
  classification: 'Security Updates',
  size: 412345678,
  rebootBehavior: 1,
  released: '2026-11-10T18:00:00.0000000Z',
};
const DOTNET = {
  id: 'aa0b6a2e-1111-4a4a-9b9b-0123456789ab',
  revision: 201,
  title: '2026-11 Cumulative Update for .NET Framework 3.5, 4.8 and 4.8.1 (KB5045935)',
  kb: ['5045935'],
  severity: null,
  categories: ['Updates', '.NET Framework'],
  classification: 'Updates',
  size: 78000000,
  rebootBehavior: 2,
  released: '2026-11-10T18:00:00.0000000Z',
};
const DEFENDER = {
  id: 'e0789628-ce08-4437-be74-2495b842f43b',
  revision: 200,
  title: 'Security Intelligence Update for Microsoft Defender Antivirus - KB2267602 (Version 1.421.1.0)',
  kb: ['2267602'],
  severity: null,
  categories: ['Definition Updates', 'Microsoft Defender Antivirus'],
  classification: 'Definition Updates',
  size: 95000000,
  rebootBehavior: 0,
  released: null,
};

const doc = (updates: unknown[], rebootPending = false, rebootReasons: string[] = []) =>
  JSON.stringify({ updates, rebootPending, rebootReasons });

describe('windowsUpdateDriver', () => {
  it('scanCommand — PowerShell with the marked, read-only script on stdin', () => {
    const cmd = windowsUpdateDriver.scanCommand();
    expect(cmd).toMatchObject({
      interpreter: ['powershell.exe', '-NoProfile', '-NonInteractive', '-Command', '-'],
    });
    const script = 'script' in cmd ? cmd.script : '';
    expect(script.split('\n')[0]).toBe(WINDOWS_UPDATE_SCAN_MARKER);
    expect(script).toContain(`Search("IsInstalled=0 and Type='Software' and IsHidden=0")`);
    expect(script).toContain('ConvertTo-Json -InputObject $fw_doc -Depth 5 -Compress');
    expect(script).not.toMatch(/CreateUpdateInstaller|CreateUpdateDownloader/);
  });

  it('supports — Windows only, and is a default driver', () => {
    const os = (family: OsFacts['family']): OsFacts => ({ family, id: 'x', versionId: '', prettyName: '' });
    expect(windowsUpdateDriver.supports(os('windows'))).toBe(true);
    expect(windowsUpdateDriver.supports(os('debian'))).toBe(false);
    expect(DEFAULT_DRIVERS).toContain(windowsUpdateDriver);
    expect(DEFAULT_DRIVERS.find((d) => d.supports(os('windows')))).toBe(windowsUpdateDriver);
  });
});

describe('parseWindowsUpdateScan', () => {
  it('parseScan — a realistic host: KB names, pinned identity, category and severity', () => {
    const parsed = parseWindowsUpdateScan(ok(doc([CU, DOTNET, DEFENDER], true, ['WindowsUpdate'])));
    expect(parsed.rebootRequired).toBe(true);
    expect(parsed.patches).toEqual([
      {
        name: 'KB5046616',
        arch: '',
        installedVersion: null,
        candidateVersion: '5d7a1a3c-2b5c-4f0e-9d7e-2c1b3a4f5e6d.1',
        origins: [{ origin: 'Windows Update', archive: 'Security Updates' }],
        category: 'security',
        severity: 'critical',
        advisories: ['KB5046616'],
        held: false,
        keptBack: false,
        isNew: false,
      },
      expect.objectContaining({ name: 'KB5045935', category: 'bugfix', severity: 'unspecified' }),
      expect.objectContaining({
        name: 'KB2267602',
        candidateVersion: 'e0789628-ce08-4437-be74-2495b842f43b.200',
        category: 'other',
      }),
    ]);
  });

  it('parseScan — no updates and no reboot: an empty list', () => {
    expect(parseWindowsUpdateScan(ok('{"updates":[],"rebootPending":false,"rebootReasons":[]}'))).toEqual({
      patches: [],
      rebootRequired: false,
      rebootPackages: [],
      warnings: [],
    });
  });

  it('parseScan — a single update printed as an array, with BOM and CRLF, and PS 5.1 escapes', () => {
    const escaped = doc([{ ...CU, title: "A <b> 'x'" }]).replace(
      /[<>']/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
    expect(escaped).toContain('\\u003cb\\u003e');
    const out = `\uFEFF${escaped}\r\n`;
    const parsed = parseWindowsUpdateScan(ok(out));
    expect(parsed.patches.map((p) => p.name)).toEqual(['KB5046616']);
  });

  it('parseScan — an update without KB is named by its UpdateID; a repeated KB too', () => {
    const noKb = { ...DOTNET, kb: [], id: 'AA0B6A2E-2222-4A4A-9B9B-0123456789AB' };
    const again = { ...CU, id: '11111111-2222-3333-4444-555555555555' };
    const parsed = parseWindowsUpdateScan(ok(doc([CU, noKb, again])));
    expect(parsed.patches.map((p) => p.name)).toEqual([
      'KB5046616',
      'aa0b6a2e-2222-4a4a-9b9b-0123456789ab',
      '11111111-2222-3333-4444-555555555555',
    ]);
    expect(parsed.patches[1]?.advisories).toEqual([]);
  });

  it.each([
    ['Security Updates', 'Critical', 'security', 'critical'],
    ['Security Updates', 'Important', 'security', 'important'],
    ['Security Updates', 'Moderate', 'security', 'moderate'],
    ['Security Updates', 'Low', 'security', 'low'],
    ['Security Updates', null, 'security', 'unspecified'],
    ['Critical Updates', null, 'bugfix', 'unspecified'],
    ['Update Rollups', null, 'bugfix', 'unspecified'],
    ['Updates', null, 'bugfix', 'unspecified'],
    ['Service Packs', null, 'bugfix', 'unspecified'],
    ['Feature Packs', null, 'enhancement', 'unspecified'],
    ['Upgrades', null, 'enhancement', 'unspecified'],
    ['Tools', null, 'enhancement', 'unspecified'],
    ['Definition Updates', null, 'other', 'unspecified'],
    ['Drivers', null, 'other', 'unspecified'],
    ['Something New', '', 'unknown', 'unspecified'],
    [null, null, 'unknown', 'unspecified'],
  ])('parseScan — classification %s / MSRC %s maps to %s / %s', (classification, severity, category, sev) => {
    const [patch] = parseWindowsUpdateScan(ok(doc([{ ...CU, classification, severity }]))).patches;
    expect(patch).toMatchObject({ category, severity: sev });
  });

  it.each([
    ['not JSON', 'Windows Update: 3 updates'],
    ['empty output', ''],
    ['a bare array', JSON.stringify([CU])],
    [
      'a single update unwrapped (no @())',
      JSON.stringify({ updates: CU, rebootPending: false, rebootReasons: [] }),
    ],
    ['missing rebootPending', JSON.stringify({ updates: [], rebootReasons: [] })],
    ['missing id', doc([{ ...CU, id: undefined }])],
    ['id not a GUID', doc([{ ...CU, id: 'KB5046616' }])],
    ['a PS 5.1 date', doc([{ ...CU, released: '/Date(1762797600000)/' }])],
    ['an unknown severity', doc([{ ...CU, severity: 'Urgent' }])],
    ['a reboot behaviour out of range', doc([{ ...CU, rebootBehavior: 3 }])],
    ['an extra field', doc([{ ...CU, extra: 1 }])],
    ['a KB with letters', doc([{ ...CU, kb: ['KB5046616'] }])],
  ])('parseScan — %s is a ParseError', (_, stdout) => {
    expect(() => parseWindowsUpdateScan(ok(stdout))).toThrow(ParseError);
  });

  it('parseScan — truncated output is a ParseError', () => {
    expect(() => parseWindowsUpdateScan({ ...ok(doc([CU])), truncated: true })).toThrow(ParseError);
  });

  it.each([
    ['0x8024402C', 'no connection'],
    ['0x80240032', 'WU_E_INVALID_CRITERIA'],
    ['0x80070005', 'access denied'],
    ['0x8024001E', 'not available'],
  ])('parseScan — HRESULT %s is a CommandFailedError explaining it', (hresult, words) => {
    const stderr = `fleetward: Windows Update search failed: HRESULT ${hresult} Exception from HRESULT: ${hresult}\r\n`;
    const error = (() => {
      try {
        parseWindowsUpdateScan({ exitCode: 2, stdout: '', stderr });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as Error).message).toContain(hresult);
    expect((error as Error).message.toLowerCase()).toContain(words.toLowerCase());
    expect((error as CommandFailedError).details).toMatchObject({ hresult });
  });

  it('parseScan — a WU_E HRESULT on stderr fails even with exit 0; another exit code without one too', () => {
    expect(() =>
      parseWindowsUpdateScan({ exitCode: 0, stdout: doc([]), stderr: 'warning 0x8024402c seen\r\n' }),
    ).toThrow(CommandFailedError);
    expect(() => parseWindowsUpdateScan({ exitCode: 1, stdout: doc([]), stderr: '' })).toThrow(/exit 1/);
    expect(
      parseWindowsUpdateScan({ exitCode: 0, stdout: doc([]), stderr: 'WARNING: 0x80070005' }).patches,
    ).toEqual([]);
  });

  it('parseScan — any JSON that is not the document fails with ParseError and nothing else', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        fc.pre(
          !(
            typeof value === 'object' &&
            value !== null &&
            !Array.isArray(value) &&
            Array.isArray((value as Record<string, unknown>).updates) &&
            ((value as Record<string, unknown>).updates as unknown[]).length === 0 &&
            typeof (value as Record<string, unknown>).rebootPending === 'boolean'
          ),
        );
        try {
          parseWindowsUpdateScan(ok(JSON.stringify(value)));
          return false;
        } catch (error) {
          return error instanceof ParseError;
        }
      }),
      { numRuns: 500 },
    );
  });

  it('parseScan — mutated documents either parse into valid patches or fail with ParseError', () => {
    const update = fc.record({
      id: fc.oneof(fc.uuid(), fc.string()),
      revision: fc.oneof(fc.nat(), fc.integer(), fc.double()),
      title: fc.string(),
      kb: fc.array(fc.oneof(fc.stringMatching(/^\d{1,7}$/), fc.string())),
      severity: fc.constantFrom('Critical', 'Important', 'Low', null, 'x'),
      categories: fc.array(fc.string()),
      classification: fc.option(fc.string()),
      size: fc.oneof(fc.nat(), fc.integer()),
      rebootBehavior: fc.integer({ min: -1, max: 3 }),
      released: fc.option(fc.date({ noInvalidDate: true }).map((d) => d.toISOString())),
    });
    fc.assert(
      fc.property(fc.array(update, { maxLength: 4 }), fc.boolean(), (updates, reboot) => {
        try {
          const parsed = parseWindowsUpdateScan(ok(doc(updates, reboot)));
          return parsed.patches.length === updates.length && parsed.rebootRequired === reboot;
        } catch (error) {
          return error instanceof ParseError;
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('parseWindowsOs', () => {
  it('windowsOsCommand — PowerShell reading Win32_OperatingSystem', () => {
    const cmd = windowsOsCommand();
    expect('script' in cmd && cmd.script).toContain('Win32_OperatingSystem');
  });

  it('parseWindowsOs — caption, version and architecture become OS facts', () => {
    const out = ok(
      '{"caption":"Microsoft Windows Server 2022 Datacenter","version":"10.0.20348","build":"20348","arch":"64-bit"}',
    );
    expect(parseWindowsOs(out)).toEqual({
      family: 'windows',
      id: 'windows',
      versionId: '10.0.20348',
      prettyName: 'Microsoft Windows Server 2022 Datacenter',
      kernel: '10.0.20348',
      arch: 'x86_64',
    });
    const arm = ok(
      '{"caption":"Windows 11","version":"10.0.26100","build":"26100","arch":"ARM 64-bit Processor"}',
    );
    expect(parseWindowsOs(arm).arch).toBe('arm64');
  });

  it('parseWindowsOs — failure and garbage', () => {
    expect(() =>
      parseWindowsOs({ exitCode: 1, stdout: '', stderr: 'Get-CimInstance : Access denied' }),
    ).toThrow(CommandFailedError);
    expect(() => parseWindowsOs(ok('PRETTY_NAME="Debian"'))).toThrow(ParseError);
    expect(() => parseWindowsOs(ok('{"caption":"x","version":"ten","build":"1","arch":""}'))).toThrow(
      ParseError,
    );
  });
});
