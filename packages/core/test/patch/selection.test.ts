import { type PendingPatch, selectPatches } from '@fleetward/core';
import { describe, expect, it } from 'vitest';

const patch = (name: string, over: Partial<PendingPatch> = {}): PendingPatch => ({
  name,
  arch: 'amd64',
  installedVersion: '1.0-1',
  candidateVersion: '1.1-1',
  origins: [],
  category: 'security',
  severity: 'unspecified',
  advisories: [],
  held: false,
  keptBack: false,
  isNew: false,
  ...over,
});
const policy = {
  categories: ['security' as const],
  minSeverity: 'important' as const,
  exclusions: ['linux-image-*', 'openssl'],
};

describe('selectPatches', () => {
  it('selectPatches — keeps the policy’s categories and severities and says why the rest is held back', () => {
    const s = selectPatches(policy, [
      patch('crit', { severity: 'critical' }),
      patch('mod', { severity: 'moderate' }),
      patch('bug', { category: 'bugfix', severity: 'critical' }),
      patch('apt-style'),
      patch('unknown-source', { category: 'unknown' }),
    ]);
    expect(s.selected.map((p) => p.name)).toEqual(['crit', 'apt-style']);
    expect(s.heldBack.map((h) => [h.patch.name, h.reason.kind])).toEqual([
      ['mod', 'severity'],
      ['bug', 'category'],
      ['unknown-source', 'category'],
    ]);
  });

  it('selectPatches — exclusions by name or glob need a secondary approval', () => {
    const patches = [patch('linux-image-6.1.0-20-amd64'), patch('openssl'), patch('openssl-dev')];
    const before = selectPatches(policy, patches);
    expect(before.selected.map((p) => p.name)).toEqual(['openssl-dev']);
    expect(before.heldBack.map((h) => h.reason)).toEqual([
      { kind: 'excluded', pattern: 'linux-image-*', needsSecondaryApproval: true },
      { kind: 'excluded', pattern: 'openssl', needsSecondaryApproval: true },
    ]);
    const after = selectPatches(policy, patches, new Set(['openssl']));
    expect(after.selected.map((p) => p.name)).toEqual(['openssl', 'openssl-dev']);
  });

  it('selectPatches — never selects pinned or kept-back packages, and leaves new dependencies to resolution', () => {
    const s = selectPatches(policy, [
      patch('pinned', { held: true, keptBack: true }),
      patch('phased', { keptBack: true }),
      patch('dep', { isNew: true, installedVersion: null }),
    ]);
    expect(s.selected).toEqual([]);
    expect(s.heldBack.map((h) => h.reason)).toEqual([
      { kind: 'held', detail: 'pinned on the host' },
      { kind: 'held', detail: 'kept back by the package manager' },
    ]);
  });
});
