import type { ScanResult } from '../domain/index.js';

/** Whether `a` is a later scan than `b` (by scan time, then by when it was stored). */
export function isNewerScan(a: ScanResult, b: ScanResult): boolean {
  return a.scannedAt > b.scannedAt || (a.scannedAt === b.scannedAt && a.createdAt > b.createdAt);
}

/** The newest of `scans`, optionally only among successful ones. */
export function newestScan(
  scans: Iterable<ScanResult>,
  options: { succeededOnly?: boolean } = {},
): ScanResult | undefined {
  let best: ScanResult | undefined;
  for (const scan of scans) {
    if (options.succeededOnly && scan.status !== 'succeeded') continue;
    if (!best || isNewerScan(scan, best)) best = scan;
  }
  return best;
}
