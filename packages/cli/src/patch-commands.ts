import type { PatchPlan } from '@fleetward/core';
import { type Command, InvalidArgumentError } from 'commander';
import type { createColors } from 'picocolors';
import type { CliContext } from './context.js';
import { renderTable } from './table.js';

export interface CommandDeps {
  withContext: <T>(fn: (ctx: CliContext) => Promise<T>) => Promise<T>;
  out: (text: string) => void;
  err: (text: string) => void;
  colors: ReturnType<typeof createColors>;
  setExit: (code: number) => void;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];
const csv = (value: string) =>
  value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
function label(value: string, previous: Record<string, string> = {}) {
  const eq = value.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError('labels are key=value');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}
function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number');
  return n;
}
function budget(value: string): { count: number } | { percent: number } {
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(value);
  if (!m) throw new InvalidArgumentError('an error budget is a count (2) or a percentage (10%)');
  return m[2] ? { percent: Number(m[1]) } : { count: Number(m[1]) };
}

function planSummary(plan: PatchPlan, c: CommandDeps['colors']): string {
  const rows = plan.servers.map((s) => [
    s.serverId,
    plan.waves.find((w) => w.serverIds.includes(s.serverId))?.name ?? '-',
    String(s.selected.length),
    String(s.resolved.length),
    String(s.heldBack.length),
    s.heldBack
      .filter((h) => h.needsSecondaryApproval)
      .map((h) => h.name)
      .join(',') || '-',
    s.blocked ? c.red(`blocked: ${s.blocked}`) : 'ok',
  ]);
  return [
    `Plan ${plan.id} (${plan.status})`,
    `Hash ${plan.hash}`,
    `Stop after more than ${plan.stopCondition.maxFailures} failed server(s); waves: ${plan.waves.map((w) => `${w.name}(${w.serverIds.length})`).join(' → ')}`,
    renderTable(
      ['SERVER', 'WAVE', 'SELECTED', 'TO INSTALL', 'HELD BACK', 'NEEDS 2ND APPROVAL', 'STATE'],
      rows,
    ),
    '',
    ...plan.servers.flatMap((s) =>
      s.resolved.map((p) => `  ${s.serverId}  ${p.name}=${p.version}${p.isNew ? ' (new dependency)' : ''}`),
    ),
  ].join('\n');
}

/** `principal`, `project`, `policy`, `plan`, `approve`, `patch`: the patch workflow on the command line. */
export function registerPatchCommands(program: Command, deps: CommandDeps): void {
  const { withContext, out, err, colors: c } = deps;

  const principal = program.command('principal').description('People and services that act in the tenant.');
  principal
    .command('add <id>')
    .description('Add a principal and bind it to a role (default: tenant-admin).')
    .requiredOption('--name <name>', 'display name')
    .option('--contractor', 'an external contractor rather than an employee')
    .option('--service', 'a service account rather than a human')
    .option('--role <roleId>', 'role to bind', 'tenant-admin')
    .action(
      async (id: string, o: { name: string; contractor?: boolean; service?: boolean; role: string }) => {
        await withContext(async ({ session }) => {
          await session.iam.addPrincipal({
            id,
            name: o.name,
            kind: o.service ? 'service' : 'human',
            affiliation: o.contractor ? 'contractor' : 'employee',
          });
          await session.iam.bindRole(id, o.role);
          out(`Added ${id} with role ${o.role}.\n`);
        });
      },
    );

  const project = program.command('project').description('Groups of servers chosen by a selector.');
  project
    .command('add <id>')
    .description('Add a project over servers chosen by labels and/or ids.')
    .option('--name <name>', 'display name')
    .option('-l, --label <key=value>', 'servers with this label (repeatable)', label)
    .option('-s, --server <id>', 'this server (repeatable)', collect)
    .option('--all', 'every server of the tenant')
    .action(
      async (
        id: string,
        o: { name?: string; label?: Record<string, string>; server?: string[]; all?: boolean },
      ) => {
        if (!o.label && !o.server && !o.all)
          throw new InvalidArgumentError('choose servers with --label, --server or --all');
        await withContext(async ({ session }) => {
          await session.projects.add({
            id,
            name: o.name ?? id,
            selector: {
              ...(o.all ? { all: true } : {}),
              ...(o.label ? { labels: o.label } : {}),
              ...(o.server ? { ids: o.server } : {}),
            },
          });
          out(`Added project ${id}.\n`);
        });
      },
    );

  const policy = program.command('policy').description('Patch policies of projects.');
  policy
    .command('add <id>')
    .description('Add a patch policy to a project.')
    .requiredOption('-p, --project <id>', 'the project it governs')
    .option('--name <name>', 'display name')
    .option('--categories <list>', 'categories to install (security,bugfix,enhancement,other,unknown)', csv, [
      'security',
    ])
    .option(
      '--min-severity <severity>',
      'minimum vendor severity (critical, important, moderate, low, unspecified)',
      'unspecified',
    )
    .option('-x, --exclude <name-or-glob>', 'needs a secondary approval (repeatable)', collect)
    .option('--window-cron <cron>', 'maintenance window starts, five-field cron')
    .option('--window-minutes <n>', 'maintenance window length', nonNegativeInt, 120)
    .option('--tz <zone>', 'IANA time zone of the window', 'UTC')
    .option('--reboot <policy>', 'never, if-required or always', 'if-required')
    .option('--max-concurrency <n>', 'servers patched at once', nonNegativeInt, 10)
    .option('--error-budget <n|n%>', 'failed servers tolerated before the run stops', budget, { count: 0 })
    .option(
      '--approver <id>',
      'who may approve plans (repeatable; default anyone allowed patch.approve)',
      collect,
    )
    .option('--approvals <n>', 'approvals a plan needs', nonNegativeInt, 1)
    .action(async (id: string, o: Record<string, unknown>) => {
      await withContext(async ({ session }) => {
        const created = await session.patch.policies.add({
          id,
          name: (o['name'] as string | undefined) ?? id,
          projectId: o['project'] as string,
          categories: o['categories'] as never,
          minSeverity: o['minSeverity'] as never,
          exclusions: (o['exclude'] as string[] | undefined) ?? [],
          reboot: o['reboot'] as never,
          ...(o['windowCron']
            ? {
                window: {
                  cron: o['windowCron'] as string,
                  durationMinutes: o['windowMinutes'] as number,
                  timeZone: o['tz'] as string,
                },
              }
            : {}),
          rollout: {
            waves: [],
            maxConcurrency: Math.max(1, o['maxConcurrency'] as number),
            errorBudget: o['errorBudget'] as never,
            unreachableCountsAsError: true,
            onBudgetSpent: 'stop',
          },
          approvers: {
            principalIds: (o['approver'] as string[] | undefined) ?? [],
            required: Math.max(1, o['approvals'] as number),
          },
        });
        out(`Added policy ${created.id} for project ${created.projectId}.\n`);
      });
    });
  policy
    .command('list')
    .description('List patch policies.')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      await withContext(async ({ session }) => {
        const policies = await session.patch.policies.list();
        if (o.json) return out(`${JSON.stringify(policies, null, 2)}\n`);
        out(
          `${renderTable(
            ['ID', 'PROJECT', 'CATEGORIES', 'WINDOW', 'REBOOT', 'BUDGET', 'EXCLUSIONS'],
            policies.map((p) => [
              p.id,
              p.projectId,
              p.categories.join(','),
              p.window?.cron
                ? `${p.window.cron} ${p.window.timeZone} ${p.window.durationMinutes}m`
                : 'any time',
              p.reboot,
              'count' in p.rollout.errorBudget
                ? String(p.rollout.errorBudget.count)
                : `${p.rollout.errorBudget.percent}%`,
              p.exclusions.join(',') || '-',
            ]),
          )}\n`,
        );
      });
    });

  program
    .command('plan')
    .description(
      'Plan a patch run for a policy: exact versions per server, held-back patches, waves, and a hash to approve.',
    )
    .requiredOption('--policy <id>', 'the patch policy')
    .option('-s, --server <id>', 'only these servers of the project (repeatable)', collect)
    .option('--json', 'print the plan as JSON')
    .action(async (o: { policy: string; server?: string[]; json?: boolean }) => {
      await withContext(async ({ session }) => {
        const plan = await session.patch.planPatchRun({
          policyId: o.policy,
          ...(o.server ? { targets: { serverIds: o.server } } : {}),
        });
        out(
          o.json
            ? `${JSON.stringify(plan, null, 2)}\n`
            : `${planSummary(plan, c)}\n\nApprove with: fleetward approve ${plan.id} --hash ${plan.hash}\n`,
        );
      });
    });

  program
    .command('approve <planId>')
    .description(
      'Approve a plan (by the hash you reviewed), or give the secondary approval of excluded packages.',
    )
    .option('--hash <hash>', 'the plan hash you reviewed')
    .option('-x, --exclusion <name>', 'approve this excluded package (repeatable); makes a new plan', collect)
    .option('--comment <text>', 'why')
    .action(async (planId: string, o: { hash?: string; exclusion?: string[]; comment?: string }) => {
      await withContext(async ({ session }) => {
        if (o.exclusion) {
          const next = await session.patch.approveExclusions(planId, o.exclusion);
          out(
            `${planSummary(next, c)}\n\nThe plan changed, so it needs approval again: fleetward approve ${next.id} --hash ${next.hash}\n`,
          );
          return;
        }
        if (!o.hash) throw new InvalidArgumentError('--hash is required: approve the plan you reviewed');
        const plan = await session.patch.approvePlan(planId, {
          hash: o.hash,
          ...(o.comment ? { comment: o.comment } : {}),
        });
        out(`Plan ${plan.id} is ${plan.status} (${plan.approvals.length} approval(s)).\n`);
      });
    });

  program
    .command('patch <planId>')
    .description(
      'Execute an approved plan, wave by wave, inside its maintenance window. Run it again to resume.',
    )
    .option('--wait-for-window', 'wait for the window to open instead of returning')
    .option('--json', 'print the job as JSON')
    .action(async (planId: string, o: { waitForWindow?: boolean; json?: boolean }) => {
      await withContext(async ({ fleet, session }) => {
        subscribeProgress(fleet.events, err, c, Boolean(o.json));
        const controller = new AbortController();
        const onSignal = () => controller.abort();
        process.once('SIGINT', onSignal);
        try {
          const job = await session.patch.executePlan(planId, {
            waitForWindow: Boolean(o.waitForWindow),
            signal: controller.signal,
          });
          if (o.json) out(`${JSON.stringify(job, null, 2)}\n`);
          else
            out(
              `Run ${job.status}${job.reason ? `: ${job.reason}` : ''} (${job.summary?.succeeded ?? 0} patched, ${job.summary?.failed ?? 0} failed).\n`,
            );
          deps.setExit(
            job.status === 'succeeded' || job.status === 'pending' ? 0 : job.status === 'partial' ? 3 : 1,
          );
        } finally {
          process.off('SIGINT', onSignal);
        }
      });
    });
}

function subscribeProgress(
  events: CliContext['fleet']['events'],
  err: (t: string) => void,
  c: CommandDeps['colors'],
  quiet: boolean,
) {
  if (quiet) return;
  events.on('patch.run.waiting', (e) =>
    err(`Waiting for the maintenance window${e.nextWindow ? ` (opens ${e.nextWindow})` : ''}.\n`),
  );
  events.on('patch.wave.started', (e) => err(`${c.bold(`Wave ${e.wave}`)}: ${e.serverIds.join(', ')}\n`));
  events.on('patch.server.step', (e) => err(`  ${e.serverId}: ${e.step}\n`));
  events.on('patch.server.completed', (e) =>
    err(
      `  ${e.serverId}: ${e.status === 'succeeded' ? c.green('patched') : e.status === 'skipped' ? c.yellow('skipped') : c.red('failed')}${e.reason ? ` — ${e.reason}` : ''}\n`,
    ),
  );
}
