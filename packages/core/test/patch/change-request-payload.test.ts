import { createHash } from 'node:crypto';
import {
  buildChangeRequest,
  type ChangeRequestPatchSource,
  pendingSetHash,
  ValidationError,
} from '@fleetward/core';
import { describe, expect, it } from 'vitest';

const patch = (over: Partial<ChangeRequestPatchSource> = {}): ChangeRequestPatchSource => ({
  name: 'openssl',
  installedVersion: '3.0.11',
  candidateVersion: '3.0.13',
  category: 'security',
  severity: 'important',
  ...over,
});

describe('change requests', () => {
  it('pendingSetHash — is sha256 over the project and the sorted server|name|candidate lines', () => {
    const expected = createHash('sha256').update('p1\nweb-1|curl|8.0\nweb-1|openssl|3.0.13\n').digest('hex');
    expect(
      pendingSetHash('p1', [
        { serverName: 'web-1', name: 'openssl', candidateVersion: '3.0.13' },
        { serverName: 'web-1', name: 'curl', candidateVersion: '8.0' },
      ]),
    ).toBe(expected);
  });

  it('pendingSetHash — ignores order, duplicates and fields that do not define the set', () => {
    const a = [
      { serverName: 'web-1', name: 'openssl', candidateVersion: '3.0.13', severity: 'critical' },
      { serverName: 'web-2', name: 'curl', candidateVersion: '8.0' },
    ];
    const b = [a[1]!, { ...a[0]!, severity: 'low' }, a[1]!];
    expect(pendingSetHash('p1', a)).toBe(pendingSetHash('p1', b));
    expect(pendingSetHash('p1', a)).toMatch(/^[a-f0-9]{64}$/);
  });

  it('pendingSetHash — changes with the project, a server, a package or a candidate version', () => {
    const base = [{ serverName: 'web-1', name: 'openssl', candidateVersion: '3.0.13' }];
    const h = pendingSetHash('p1', base);
    expect(pendingSetHash('p2', base)).not.toBe(h);
    expect(pendingSetHash('p1', [{ ...base[0]!, serverName: 'web-2' }])).not.toBe(h);
    expect(pendingSetHash('p1', [{ ...base[0]!, name: 'openssl-libs' }])).not.toBe(h);
    expect(pendingSetHash('p1', [{ ...base[0]!, candidateVersion: '3.0.14' }])).not.toBe(h);
    expect(
      pendingSetHash('p1', [...base, { serverName: 'web-1', name: 'curl', candidateVersion: '8' }]),
    ).not.toBe(h);
  });

  it('pendingSetHash — cannot be fooled by separators inside names', () => {
    expect(pendingSetHash('p', [{ serverName: 'a|b', name: 'c', candidateVersion: '1' }])).not.toBe(
      pendingSetHash('p', [{ serverName: 'a', name: 'b|c', candidateVersion: '1' }]),
    );
    expect(pendingSetHash('p', [{ serverName: 'a\nb|c|1', name: 'd', candidateVersion: '2' }])).not.toBe(
      pendingSetHash('p', [
        { serverName: 'a', name: 'x', candidateVersion: 'y' },
        { serverName: 'b', name: 'c', candidateVersion: '1|d|2' },
      ]),
    );
  });

  it('buildChangeRequest — titles with the counts an approver needs and describes by category, severity and server', () => {
    const cr = buildChangeRequest({
      project: { id: 'proj-web', name: 'web' },
      policy: {
        name: 'nightly',
        categories: ['security', 'bugfix'],
        minSeverity: 'moderate',
        reboot: 'if-required',
      },
      pending: [
        {
          serverName: 'web-2',
          patches: [
            patch({ name: 'curl', category: 'bugfix', severity: 'unspecified', candidateVersion: '8.0' }),
            patch({
              name: 'linux-image',
              severity: 'critical',
              installedVersion: null,
              candidateVersion: '6.1',
            }),
          ],
        },
        { serverName: 'web-1', patches: [patch()] },
      ],
      window: { start: new Date('2026-03-01T22:00:00Z'), end: '2026-03-02T03:00:00+01:00' },
    });
    expect(cr.title).toBe('Patch web: 3 updates on 2 servers (2 security, 1 critical)');
    expect(cr.projectId).toBe('proj-web');
    expect(cr.projectName).toBe('web');
    expect(cr.windowStart).toBe('2026-03-01T22:00:00.000Z');
    expect(cr.windowEnd).toBe('2026-03-02T02:00:00.000Z');
    expect(cr.description).toBe(
      [
        'Fleetward requests a change to install pending updates on servers of project "web" (proj-web).',
        '',
        'Summary: 3 updates on 2 servers.',
        'By category: security 2, bugfix 1',
        'By severity: critical 1, important 1, unspecified 1',
        'Policy: nightly (categories security, bugfix; minimum severity moderate; reboot if-required)',
        'Planned window: 2026-03-01 22:00 UTC to 2026-03-02 02:00 UTC',
        '',
        'Pending updates by server:',
        '',
        'web-1: 1 update, 1 security',
        '- openssl 3.0.11 -> 3.0.13 [security, important]',
        '',
        'web-2: 2 updates, 1 security',
        '- linux-image (new) -> 6.1 [security, critical]',
        '- curl 3.0.11 -> 8.0',
      ].join('\n'),
    );
    // Sorted by server, then most important first.
    expect(cr.pendingPatches.map((p) => `${p.serverName}/${p.name}`)).toEqual([
      'web-1/openssl',
      'web-2/linux-image',
      'web-2/curl',
    ]);
  });

  it('buildChangeRequest — cuts long lists with a count but keeps every patch in pendingPatches', () => {
    const cr = buildChangeRequest({
      project: { id: 'p', name: 'big' },
      pending: Array.from({ length: 25 }, (_, s) => ({
        serverName: `srv-${String(s).padStart(2, '0')}`,
        patches: Array.from({ length: 12 }, (_, i) => patch({ name: `pkg-${String(i).padStart(2, '0')}` })),
      })),
    });
    expect(cr.pendingPatches).toHaveLength(300);
    expect(cr.title).toBe('Patch big: 300 updates on 25 servers (300 security)');
    expect(cr.description).toContain('- … and 4 more');
    expect(cr.description).toContain('… and 5 more servers');
    expect(cr.description).not.toContain('srv-20');
    expect(cr.windowStart).toBeUndefined();
  });

  it('buildChangeRequest — refuses an empty pending set and an inverted or invalid window', () => {
    const project = { id: 'p', name: 'x' };
    expect(() => buildChangeRequest({ project, pending: [] })).toThrow(ValidationError);
    expect(() => buildChangeRequest({ project, pending: [{ serverName: 's', patches: [] }] })).toThrow(
      ValidationError,
    );
    const pending = [{ serverName: 's', patches: [patch()] }];
    expect(() =>
      buildChangeRequest({
        project,
        pending,
        window: { start: '2026-03-02T00:00:00Z', end: '2026-03-01T00:00:00Z' },
      }),
    ).toThrow(ValidationError);
    expect(() =>
      buildChangeRequest({ project, pending, window: { start: 'soon', end: '2026-03-01T00:00:00Z' } }),
    ).toThrow(ValidationError);
  });

  it('buildChangeRequest — keeps hostile names verbatim as plain text', () => {
    const cr = buildChangeRequest({
      project: { id: 'p', name: '</td><script>alert(1)</script>' },
      pending: [{ serverName: 'x\r\nBcc: evil@x', patches: [patch()] }],
    });
    expect(cr.title).toBe('Patch </td><script>alert(1)</script>: 1 update on 1 server (1 security)');
    expect(cr.description).toContain('x\r\nBcc: evil@x: 1 update');
  });
});
