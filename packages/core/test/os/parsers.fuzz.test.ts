import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OsFactsSchema, PendingPatchSchema } from '../../src/domain/index.js';
import { ParseError } from '../../src/errors.js';
import { aptDriver, parseAptCachePolicy, parseAptSimulation } from '../../src/os/apt.js';
import {
  dnfDriver,
  parseCheckUpdate,
  parseNeedsRestarting,
  parseNevra,
  parseRpmInstalledVersions,
  parseRpmTransaction,
  parseUpdateinfoInfo,
  parseUpdateinfoList,
  yumDriver,
} from '../../src/os/dnf.js';
import type {
  CommandOutput,
  PackageManagerDriver,
  ParsedScan,
  ResolvedTransaction,
} from '../../src/os/driver.js';
import { parseOsRelease } from '../../src/os/os-release.js';
import { type Evr, parseEvr, parseInstalledRpms } from '../../src/os/rpm-reboot.js';
import {
  parseListPatches,
  parseListUpdates,
  parsePatchInfo,
  parseZypperXml,
  type XmlElement,
  zypperDriver,
} from '../../src/os/zypper.js';
import { expectTypedOutcome, hostileText, mutated, RUNS, readFixtures } from '../hostile-input.js';

const folder = (name: string) => new URL(`../fixtures/${name}/`, import.meta.url);
const APT = readFixtures(folder('apt'), (n) => n.endsWith('.out'));
const DNF = readFixtures(folder('dnf'), (n) => n.endsWith('.out'));
const DNF_ERR = readFixtures(folder('dnf'), (n) => n.endsWith('.err'));
const ZYPPER = readFixtures(folder('zypper'), (n) => n.endsWith('.out'));
const ZYPPER_ERR = readFixtures(folder('zypper'), (n) => n.endsWith('.err'));
const INSTALL = readFixtures(folder('rpm-install'), (n) => n.endsWith('.out') || n.endsWith('.err'));
const OS_RELEASE = readFixtures(folder('os-release'));

/** The body of each `@@fleetward:NAME` section of some scan captures. */
function sections(captures: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (const text of captures) {
    const start = text.indexOf(`@@fleetward:${name}\n`);
    if (start < 0) continue;
    const body = text.slice(start + `@@fleetward:${name}\n`.length);
    const end = body.indexOf('\n@@fleetward:');
    out.push(end < 0 ? body : body.slice(0, end));
  }
  return out.length > 0 ? out : [''];
}

const isEvr = (evr: Evr) => {
  expect(Number.isSafeInteger(evr.epoch) && evr.epoch >= 0).toBe(true);
  expect(evr.version).not.toBe('');
  expect(evr.release).not.toBe('');
};

function wellFormedScan(scan: ParsedScan): void {
  for (const p of scan.patches) expect(PendingPatchSchema.safeParse(p).error).toBeUndefined();
  expect(typeof scan.rebootRequired).toBe('boolean');
  for (const s of [...scan.rebootPackages, ...scan.warnings]) expect(typeof s).toBe('string');
}

function wellFormedTransaction(tx: ResolvedTransaction): void {
  for (const p of tx.install) {
    expect(p.name).not.toBe('');
    expect(p.version).not.toBe('');
    expect(typeof p.isNew).toBe('boolean');
  }
  for (const s of [...tx.remove, ...tx.warnings]) expect(typeof s).toBe('string');
}

const exitCode = fc.oneof(
  fc.constantFrom<number | null>(0, 1, 100, 106, 200, null),
  fc.integer({ min: -1, max: 300 }),
);

function output(stdout: fc.Arbitrary<string>, stderr: fc.Arbitrary<string>): fc.Arbitrary<CommandOutput> {
  return fc.record({
    exitCode,
    stdout,
    stderr,
    truncated: fc.constantFrom(undefined, false, true),
  }) as fc.Arbitrary<CommandOutput>;
}

const DRIVERS: [string, PackageManagerDriver, string[], string[]][] = [
  ['apt', aptDriver, APT, ['']],
  ['dnf', dnfDriver, DNF, DNF_ERR],
  ['yum', yumDriver, DNF, DNF_ERR],
  ['zypper', zypperDriver, ZYPPER, ZYPPER_ERR],
];

describe('package manager drivers under hostile output', () => {
  for (const [name, driver, captures, errors] of DRIVERS) {
    it(`${name} parseScan — returns well-formed patches or throws a FleetwardError`, () => {
      fc.assert(
        fc.property(output(hostileText(captures), hostileText(errors)), (out) =>
          expectTypedOutcome(() => driver.parseScan(out), wellFormedScan),
        ),
        { numRuns: RUNS },
      );
    });

    it(`${name} parseScan — a banner before the markers and text after the end change nothing`, () => {
      const readable = captures.filter((c) => {
        try {
          driver.parseScan({ exitCode: 0, stdout: c, stderr: '' });
          return true;
        } catch {
          return false;
        }
      });
      expect(readable.length).toBeGreaterThan(0);
      const banner = fc.array(
        fc.string({ unit: 'grapheme', maxLength: 60 }).filter((l) => !l.includes('@@fleetward:')),
        { maxLength: 5 },
      );
      fc.assert(
        fc.property(fc.constantFrom(...readable), banner, banner, (capture, before, after) => {
          const expected = driver.parseScan({ exitCode: 0, stdout: capture, stderr: '' });
          const stdout = [
            ...before.map((l) => l.replace(/[\r\n]/g, ' ')),
            capture.replace(/\n$/, ''),
            ...after,
          ]
            .join('\n')
            .concat('\n');
          expect(driver.parseScan({ exitCode: 0, stdout, stderr: '' })).toEqual(expected);
        }),
        { numRuns: 100 },
      );
    });

    it(`${name} parseSimulateInstall, parseInstall, parseInstalledVersions — typed outcome only`, () => {
      const text = hostileText([...INSTALL, ...captures]);
      fc.assert(
        fc.property(output(text, text), (out) => {
          expectTypedOutcome(() => driver.parseSimulateInstall!(out), wellFormedTransaction);
          expectTypedOutcome(
            () => driver.parseInstall!(out),
            (r) => expect(typeof r.rebootRequired).toBe('boolean'),
          );
          expectTypedOutcome(
            () => driver.parseInstalledVersions!(out),
            (m) => {
              for (const [k, v] of m) expect(k !== '' && v !== '').toBe(true);
            },
          );
        }),
        { numRuns: RUNS },
      );
    });
  }
});

describe('scan results the store could not keep', () => {
  it('parseScan — a package whose arch or name is out of the schema bounds is a ParseError', () => {
    const scan = APT.find((c) => c.includes('Inst base-files [12.4+deb12u11]'))!;
    for (const stdout of [
      scan.replace('Inst base-files [12.4+deb12u11] (12.4+deb12u15 Debian:12.15/oldstable [amd64])', (l) =>
        l.replace('[amd64]', `[${'x'.repeat(40)}]`),
      ),
      scan.replaceAll('base-files', 'b'.repeat(300)),
    ]) {
      expect(() => aptDriver.parseScan({ exitCode: 0, stdout, stderr: '' })).toThrow(ParseError);
    }
    expect(aptDriver.parseScan({ exitCode: 0, stdout: scan, stderr: '' }).patches.length).toBeGreaterThan(0);
  });
});

describe('apt parsers under hostile output', () => {
  it('parseAptSimulation — a summary that agrees with its lines, or a FleetwardError', () => {
    fc.assert(
      fc.property(hostileText(sections(APT, 'apt-get-simulate')), (text) =>
        expectTypedOutcome(
          () => parseAptSimulation(text),
          (sim) => {
            if (sim.summary) {
              for (const v of Object.values(sim.summary)) expect(Number.isSafeInteger(v)).toBe(true);
            } else expect(sim.errors.length).toBeGreaterThan(0);
          },
        ),
      ),
      { numRuns: RUNS },
    );
  });

  it('parseAptCachePolicy — typed outcome only', () => {
    fc.assert(
      fc.property(
        hostileText([...sections(APT, 'apt-cache-policy'), ...sections(APT, 'apt-cache-policy-sources')]),
        (text) => expectTypedOutcome(() => parseAptCachePolicy(text)),
      ),
      { numRuns: RUNS },
    );
  });
});

describe('dnf and rpm parsers under hostile output', () => {
  const cases: [string, string, (text: string) => unknown][] = [
    ['parseCheckUpdate', 'check-update', parseCheckUpdate],
    ['parseUpdateinfoList', 'updateinfo-list', parseUpdateinfoList],
    ['parseUpdateinfoInfo', 'updateinfo-info', parseUpdateinfoInfo],
    ['parseInstalledRpms', 'installed', (t) => parseInstalledRpms(t.split('\n'))],
    ['parseNeedsRestarting', 'needs-restarting', (t) => parseNeedsRestarting(1, t.split('\n'))],
  ];
  for (const [name, marker, parse] of cases) {
    it(`${name} — typed outcome only`, () => {
      fc.assert(
        fc.property(hostileText(sections(DNF, marker)), (text) => expectTypedOutcome(() => parse(text))),
        { numRuns: RUNS },
      );
    });
  }

  it('parseCheckUpdate — every row has a safe-integer epoch and a finite metadata age', () => {
    fc.assert(
      fc.property(mutated(sections(DNF, 'check-update').filter((s) => s.trim() !== '')), (text) =>
        expectTypedOutcome(
          () => parseCheckUpdate(text),
          (list) => {
            for (const u of list.updates) isEvr(u.evr);
            if (list.metadataAgeSeconds !== null) {
              expect(Number.isSafeInteger(list.metadataAgeSeconds)).toBe(true);
            }
          },
        ),
      ),
      { numRuns: RUNS },
    );
  });

  it('parseEvr, parseNevra — null or an EVR with a safe-integer epoch', () => {
    const word = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 100 }),
      fc.stringMatching(/^(\d{1,400}:)?[a-z0-9.]{1,10}-[a-z0-9.]{1,10}(\.[a-z0-9_]{1,8})?$/),
      fc
        .tuple(
          fc.oneof(
            fc.nat().map(String),
            fc.integer({ min: 16, max: 400 }).map((n) => '9'.repeat(n)),
          ),
          fc.constantFrom('', 'name-'),
          fc.constantFrom('', '.x86_64'),
        )
        .map(([epoch, name, arch]) => `${name}${epoch}:1.0-1${arch}`),
      fc.constantFrom('a-'.repeat(30_000), `${'-'.repeat(30_000)}1-1.x`, `x-${'1:'.repeat(20_000)}1-1.x`),
    );
    fc.assert(
      fc.property(word, (text) => {
        expectTypedOutcome(
          () => parseEvr(text),
          (evr) => evr && isEvr(evr),
        );
        expectTypedOutcome(
          () => parseNevra(text),
          (n) => n && isEvr(n.evr),
        );
      }),
      { numRuns: RUNS },
    );
  });

  it('parseRpmTransaction — rows that agree with the summary, or a FleetwardError', () => {
    fc.assert(
      fc.property(hostileText(INSTALL), (text) =>
        expectTypedOutcome(
          () => parseRpmTransaction(text),
          (tx) => {
            for (const r of tx?.rows ?? []) isEvr(r.evr);
            for (const n of tx?.summary.values() ?? []) expect(Number.isSafeInteger(n)).toBe(true);
          },
        ),
      ),
      { numRuns: RUNS },
    );
  });

  it('parseRpmInstalledVersions — typed outcome only', () => {
    fc.assert(
      fc.property(output(hostileText(INSTALL), hostileText(INSTALL)), (out) =>
        expectTypedOutcome(() => parseRpmInstalledVersions(out)),
      ),
      { numRuns: RUNS },
    );
  });
});

describe('zypper parsers under hostile output', () => {
  const xmlSections = [
    ...sections(ZYPPER, 'list-updates'),
    ...sections(ZYPPER, 'list-patches'),
    ...sections(ZYPPER, 'patch-info'),
    ...INSTALL,
  ];
  const deep = fc
    .tuple(fc.integer({ min: 1, max: 5_000 }), fc.constantFrom('update-list', 'message', 'a', '__proto__'))
    .map(([depth, tag]) => `<?xml version="1.0"?>${`<${tag}>`.repeat(depth)}x${`</${tag}>`.repeat(depth)}`);
  const planted = fc
    .tuple(
      fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'name', 'kind'),
      fc.constantFrom('{"polluted":1}', 'x', 'package', ''),
    )
    .map(
      ([k, v]) =>
        `<?xml version="1.0"?><stream><update-list><update kind="package" ${k}="${v}" name="a" arch="x" edition="1-1"><source alias="${k}"/></update><update kind="patch" ${k}="${v}" name="p"/></update-list></stream>`,
    );

  it('parseZypperXml, parseListUpdates, parseListPatches, parsePatchInfo — typed outcome only', () => {
    fc.assert(
      fc.property(fc.oneof({ weight: 4, arbitrary: hostileText(xmlSections) }, deep, planted), (text) => {
        let roots: XmlElement[] = [];
        expectTypedOutcome(
          () => parseZypperXml(text, 'fuzz'),
          (r) => {
            roots = r;
          },
        );
        expectTypedOutcome(
          () => parseListUpdates(roots),
          (us) => {
            for (const u of us) isEvr(u.edition);
          },
        );
        expectTypedOutcome(() => parseListPatches(roots));
        expectTypedOutcome(() =>
          parsePatchInfo(roots.flatMap((r) => r.children.map((c) => ({ type: 'info', text: c.text })))),
        );
      }),
      { numRuns: RUNS },
    );
  });

  it('parseZypperXml — a reserved attribute name is kept as data and changes no prototype', () => {
    const [root] = parseZypperXml(
      '<?xml version="1.0"?><stream><update __proto__="x" constructor="y" name="n"/></stream>',
      'fuzz',
    );
    const attributes = root!.children[0]!.attributes;
    expect(Object.getPrototypeOf(attributes)).toBe(null);
    expect(Object.entries(attributes)).toEqual([
      ['__proto__', 'x'],
      ['constructor', 'y'],
      ['name', 'n'],
    ]);
    expect(attributes['toString']).toBeUndefined();
  });
});

// A quadratic regex takes minutes on these lines (30-60 s at 100,000 characters), so each test
// would exceed the test timeout before its fix; linear parsers answer at once.
describe('parsers on a 200,000-character line', () => {
  const blanks = ' '.repeat(200_000);

  it('parseUpdateinfoInfo — a label followed by blanks and no colon is skipped', () => {
    expect(parseUpdateinfoInfo(`  Update ID${blanks}x\n  Update ID : RHSA-1\n`)).toEqual(
      new Map([['RHSA-1', { id: 'RHSA-1', type: '', severity: '' }]]),
    );
  });

  it('parsePatchInfo — a Conflicts label followed by blanks and no colon is skipped', () => {
    const text = `Name : patch-1\nConflicts${blanks}x\nConflicts : [1]\n    pkg < 1.0-1\n`;
    expect(parsePatchInfo([{ type: 'info', text }]).get('patch-1')).toEqual([
      { name: 'pkg', arch: null, edition: { epoch: 0, version: '1.0', release: '1' } },
    ]);
  });

  it('parseZypperXml — stops at the first error of a garbled document', () => {
    expect(() => parseZypperXml(`<?xml version="1.0"?><a b="${'{"a":'.repeat(200_000)}`, 'fuzz')).toThrow(
      ParseError,
    );
  });
});

describe('parseOsRelease under hostile input', () => {
  it('parseOsRelease — facts that pass OsFactsSchema, or a ParseError', () => {
    fc.assert(
      fc.property(hostileText(OS_RELEASE), (text) =>
        expectTypedOutcome(
          () => parseOsRelease(text),
          (facts) => expect(OsFactsSchema.safeParse(facts).error).toBeUndefined(),
        ),
      ),
      { numRuns: RUNS },
    );
  });

  it('parseOsRelease — comments, blank lines and unknown keys change nothing', () => {
    const readable = OS_RELEASE.filter((t) => /^ID=/m.test(t));
    const noise = fc.array(
      fc.oneof(
        fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => `# ${s.replace(/[\r\n]/g, ' ')}`),
        fc.constant(''),
        fc.stringMatching(/^X_[A-Z_]{1,10}="[a-z ]{0,20}"$/),
      ),
      { maxLength: 6 },
    );
    fc.assert(
      fc.property(fc.constantFrom(...readable), noise, fc.nat(), (text, extra, at) => {
        const lines = text.split('\n');
        const i = at % (lines.length + 1);
        const noisy = [...lines.slice(0, i), ...extra, ...lines.slice(i)].join('\n');
        expect(parseOsRelease(noisy)).toEqual(parseOsRelease(text));
      }),
      { numRuns: 200 },
    );
  });
});
