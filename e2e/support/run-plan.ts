// A separate orchestrator process for the crash test: executes a plan from a SQLite store and
// prints every step as a JSON line, until it finishes or is killed.
import { readFileSync } from 'node:fs';
import { createSqliteStore } from '@fleetward/store-sqlite';
import { type LabAccess, labFleet, TENANT } from './fleet.js';

const [dbPath, accessPath, planId] = process.argv.slice(2) as [string, string, string];
const access = JSON.parse(readFileSync(accessPath, 'utf8')) as LabAccess;
const fleet = labFleet(access, createSqliteStore({ path: dbPath }));
fleet.events.on('patch.server.step', (e) =>
  process.stdout.write(`${JSON.stringify({ serverId: e.serverId, step: e.step })}\n`),
);
const job = await fleet
  .as({ tenantId: TENANT, principalId: 'bob' })
  .patch.executePlan(planId, { holder: 'child', leaseTtlMs: 2000 });
process.stdout.write(`${JSON.stringify({ done: job.status })}\n`);
await fleet.close();
