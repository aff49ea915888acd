import type { Command } from 'commander';
import type { CommandDeps } from './deps.js';
import { planSummary } from './patch-commands.js';

/** `plans show`: a patch plan made by `fleetward plan`, for review and for its hash. */
export function registerPlansCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print, colors } = deps;
  const plans = program.command('plans').description('Patch plans made by "fleetward plan".');
  plans
    .command('show <planId>')
    .description(
      'A plan: its status, hash, approvals and the exact versions per server (-o field=hash for the hash).',
    )
    .action(async (planId: string) => {
      await withContext(async ({ session }) => {
        const plan = await session.patch.getPlan(planId);
        print(plan, {
          human: (p) =>
            `${planSummary(p, colors)}\nApprovals: ${p.approvals.length ? p.approvals.map((a) => a.principalId).join(', ') : '(none)'}`,
        });
      });
    });
}
