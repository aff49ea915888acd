import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { describeStoreConformance } from '@fleetward/testkit';
import { tamperSqliteAudit } from './support/tamper.js';

let dir: string | undefined;
const file = () => join(dir!, 'fleetward.db');

describeStoreConformance('SqliteStore (file)', {
  create: ({ clock }) => {
    dir = mkdtempSync(join(tmpdir(), 'fleetward-sqlite-'));
    return createSqliteStore({ path: file(), clock });
  },
  reopen: ({ clock }) => createSqliteStore({ path: file(), clock }),
  cleanup: () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  },
  auditTamper: tamperSqliteAudit(file),
});

describeStoreConformance('SqliteStore (:memory:)', {
  create: ({ clock }) => createSqliteStore({ path: ':memory:', clock }),
  skip: { persistence: 'an in-memory database ends with its connection' },
});
