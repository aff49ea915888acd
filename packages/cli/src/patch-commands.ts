import {
  type Job,
  NotFoundError,
  PatchCategorySchema,
  type PatchPlan,
  type PatchPolicy,
  RebootPolicySchema,
  SeveritySchema,
} from '@fleetward/core';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { CliContext } from './context.js';
import {
  addTargetOptions,
  budget,
  type CommandDeps,
  collectList,
  EXIT,
  positiveInt,
  type TargetOptions,
  targetsFrom,
} from './deps.js';
import type { Colors } from './output.js';
import { renderTable } from './table.js';

const windowText = (p: PatchPolicy) =>
  p.window
    ? [p.window.cron, ...(p.window.dates ?? [])].filter(Boolean).join(', ') +
      ` ${p.window.timeZone} ${p.window.durationMinutes}m`
    : 'any time';

const budgetText = (p: PatchPolicy) =>
  'count' in p.rollout.errorBudget
    ? String(p.rollout.errorBudget.count)
    : `${p.rollout.errorBudget.percent}%`;

function policyDetails(p: PatchPolicy): string {
  return [
    `Patch policy ${p.id} (${p.name}) of project ${p.projectId}`,
    `  installs    ${p.categories.join(', ')} patches${p.minSeverity === 'unspecified' ? '' : ` of severity ${p.minSeverity} or above`}`,
    `  window      ${windowText(p)}`,
    `  reboot      ${p.reboot}`,
    `  rollout     ${p.rollout.maxConcurrency} at once, error budget ${budgetText(p)}${p.rollout.waves.length ? `, waves ${p.rollout.waves.map((w) => w.name).join(' → ')}` : ''}`,
    `  exclusions  ${p.exclusions.join(', ') || '-'} (need a secondary approval)`,
    `  approvers   ${p.approvers.required} of ${p.approvers.principalIds.join(', ') || 'anyone allowed patch.approve'}`,
  ].join('\n');
}

/** A plan for review: waves, what each server gets, what is held back, and the hash. */
export function planSummary(plan: PatchPlan, c: Colors): string {
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
    s.blocked ? c.red('blocked') : 'ok',
  ]);
  const blocked = plan.servers.filter((s) => s.blocked).map((s) => `  ${s.serverId}: ${s.blocked}`);
  const installs = plan.servers.flatMap((s) =>
    s.resolved.map((p) => `  ${s.serverId}  ${p.name}=${p.version}${p.isNew ? ' (new dependency)' : ''}`),
  );
  // What a reviewer decides on with `approve --exclusion`: each package and why it is held back.
  const secondary = plan.servers.flatMap((s) =>
    s.heldBack
      .filter((h) => h.needsSecondaryApproval)
      .map((h) => `  ${s.serverId}  ${h.name}=${h.version}: ${h.reason}`),
  );
  return [
    `Plan ${plan.id} (${plan.status}) of policy ${plan.policyId}, project ${plan.projectId}`,
    `Hash ${plan.hash}`,
    `Stops after more than ${plan.stopCondition.maxFailures} failed server(s); waves: ${plan.waves.map((w) => `${w.name}(${w.serverIds.length})`).join(' → ')}`,
    renderTable(
      ['SERVER', 'WAVE', 'SELECTED', 'TO INSTALL', 'HELD BACK', 'NEEDS 2ND APPROVAL', 'STATE'],
      rows,
    ),
    ...(installs.length ? ['', 'To install:', ...installs] : []),
    ...(secondary.length ? ['', 'Held back until a secondary approval:', ...secondary] : []),
    ...(blocked.length ? ['', 'Blocked (skipped when the plan runs):', ...blocked] : []),
  ].join('\n');
}

/** The closing lines of a plan awaiting approval: who approves, and the exact command. */
function approvalHint(plan: PatchPlan, policy: PatchPolicy | undefined): string {
  const named = policy?.approvers.principalIds ?? [];
  const who = named.length ? `one of ${named.join(', ')}` : `someone other than ${plan.requestedBy}`;
  const exclusions = plan.servers.flatMap((s) =>
    s.heldBack.filter((h) => h.needsSecondaryApproval).map((h) => h.name),
  );
  return [
    ...(exclusions.length
      ? [
          `Excluded packages are held back; a secondary approval plans them in: fleetward approve ${plan.id} --exclusion <package>`,
        ]
      : []),
    `Next, ${who} (--as <principal>) approves the hash reviewed here:`,
    `  fleetward approve ${plan.id} --hash ${plan.hash}`,
  ].join('\n');
}

function planHash(value: string): string {
  if (!/^[a-f0-9]{64}$/.test(value)) {
    throw new InvalidArgumentError('a plan hash is 64 hexadecimal characters, as "fleetward plan" prints it');
  }
  return value;
}

const WAITING_FOR_WINDOW = /^waiting for the maintenance window/;

/** Exit code of a patch run: waiting counts as ok, a run where servers failed as partial. */
function runExit(job: Job): number {
  if (job.status === 'succeeded') return EXIT.ok;
  if (job.status === 'pending') return WAITING_FOR_WINDOW.test(job.reason ?? '') ? EXIT.ok : EXIT.partial;
  if (job.status === 'partial') return EXIT.partial;
  return EXIT.failure;
}

function runText(job: Job, planId: string): string {
  const s = job.summary;
  if (job.status === 'pending' && WAITING_FOR_WINDOW.test(job.reason ?? '')) {
    return `Not started: ${job.reason}.\nWait for it with: fleetward patch ${planId} --wait-for-window`;
  }
  if (job.status === 'pending') {
    return `Run ${job.id} ${job.reason ?? 'paused'}.\nResume it, accepting the failures so far: fleetward patch ${planId} --acknowledge-failures`;
  }
  const counts = s ? `: ${s.succeeded} of ${s.total} server(s) patched, ${s.failed} failed` : '';
  return `Run ${job.id} ${job.status}${counts}${job.reason ? ` (${job.reason})` : ''}.`;
}

/**
 * Progress of a patch run on standard error: the wait for the window (with the time left, and a
 * line when it opens), each wave, each server's steps and outcome.
 */
function followRun(ctx: CliContext, deps: CommandDeps, planId: string, waitForWindow: boolean): () => void {
  const { fleet } = ctx;
  const { progress, colors: c } = deps;
  let stopWaiting: (() => void) | undefined;
  let waitedFor: string | undefined;
  const ours = (e: { planId: string }) => e.planId === planId;
  fleet.events.on('patch.run.started', (e) => {
    if (ours(e)) progress.line(`Run ${e.jobId} ${e.resumed ? 'resumed' : 'started'}.`);
  });
  fleet.events.on('patch.run.waiting', (e) => {
    if (!ours(e) || !waitForWindow || !e.nextWindow) return;
    waitedFor = e.nextWindow;
    stopWaiting = progress.waitingUntil('Waiting for the maintenance window', new Date(e.nextWindow), () =>
      fleet.clock.now(),
    );
  });
  fleet.events.on('patch.wave.started', (e) => {
    if (!ours(e)) return;
    if (stopWaiting) {
      stopWaiting();
      stopWaiting = undefined;
      progress.line(`The maintenance window opened at ${waitedFor}: patching.`);
    }
    progress.line(`${c.bold(`Wave ${e.wave}`)}: ${e.serverIds.join(', ')}`);
  });
  fleet.events.on('patch.server.step', (e) => {
    if (ours(e)) progress.line(`  ${e.serverId}: ${e.step}`);
  });
  fleet.events.on('patch.server.completed', (e) => {
    if (!ours(e)) return;
    const outcome =
      e.status === 'succeeded'
        ? c.green('patched')
        : e.status === 'skipped'
          ? c.yellow('skipped')
          : c.red('failed');
    progress.line(`  ${outcome} ${e.serverId}${e.reason ? `: ${e.reason}` : ''}`);
  });
  return () => stopWaiting?.();
}

function registerPolicies(program: Command, deps: CommandDeps): void {
  const { withContext, print } = deps;
  const policies = program
    .command('policies')
    .alias('policy')
    .description('Patch policies: what a project’s servers get, when, how it rolls out, who approves.');

  policies
    .command('list', { isDefault: true })
    .description('List patch policies.')
    .action(async () => {
      await withContext(async ({ session }) => {
        print(await session.patch.policies.list(), {
          human: (rows) =>
            rows.length === 0
              ? 'No patch policies. Add one with: fleetward policies add <id> --project <project-id>'
              : renderTable(
                  ['ID', 'PROJECT', 'CATEGORIES', 'WINDOW', 'REBOOT', 'BUDGET', 'EXCLUSIONS'],
                  rows.map((p) => [
                    p.id,
                    p.projectId,
                    p.categories.join(','),
                    windowText(p),
                    p.reboot,
                    budgetText(p),
                    p.exclusions.join(',') || '-',
                  ]),
                ),
        });
      });
    });

  policies
    .command('add <id>')
    .description('Add a patch policy to a project.')
    .requiredOption('--project <id>', 'the project it governs')
    .option('-n, --name <name>', 'display name (default: the id)')
    .option(
      '--categories <list>',
      `categories to install, of ${PatchCategorySchema.options.join(',')} (repeatable; default: security)`,
      collectList,
    )
    .addOption(
      new Option('--min-severity <severity>', 'lowest vendor severity installed')
        .choices(SeveritySchema.options)
        .default('unspecified'),
    )
    .option(
      '-x, --exclude <name-or-glob>',
      'packages that need a secondary approval (repeatable)',
      collectList,
    )
    .option('--window-cron <cron>', 'maintenance window starts, five-field cron (default: any time)')
    .option('--window-minutes <n>', 'maintenance window length (default: 120)', positiveInt)
    .option('--tz <zone>', 'IANA time zone the window cron is read in (default: UTC)')
    .addOption(
      new Option('--reboot <policy>', 'when to reboot')
        .choices(RebootPolicySchema.options)
        .default('if-required'),
    )
    .option('-c, --max-concurrency <n>', 'servers patched at once', positiveInt, 10)
    .addOption(
      new Option('--error-budget <n|n%>', 'failed servers tolerated before the run stops')
        .argParser(budget)
        .default({ count: 0 }, '0'),
    )
    .option(
      '--approver <ids>',
      'who may approve plans (repeatable; default: anyone allowed patch.approve)',
      collectList,
    )
    .option('--approvals <n>', 'approvals a plan needs', positiveInt, 1)
    .action(
      async (
        id: string,
        o: {
          project: string;
          name?: string;
          categories?: string[];
          minSeverity: PatchPolicy['minSeverity'];
          exclude?: string[];
          windowCron?: string;
          windowMinutes?: number;
          tz?: string;
          reboot: PatchPolicy['reboot'];
          maxConcurrency: number;
          errorBudget: { count: number } | { percent: number };
          approver?: string[];
          approvals: number;
        },
      ) => {
        if (!o.windowCron && (o.windowMinutes !== undefined || o.tz !== undefined)) {
          throw new InvalidArgumentError(
            '--window-minutes and --tz describe a window: give its --window-cron too',
          );
        }
        await withContext(async ({ session }) => {
          const created = await session.patch.policies.add({
            id,
            name: o.name ?? id,
            projectId: o.project,
            categories: (o.categories ?? ['security']) as PatchPolicy['categories'],
            minSeverity: o.minSeverity,
            exclusions: o.exclude ?? [],
            reboot: o.reboot,
            ...(o.windowCron
              ? {
                  window: {
                    cron: o.windowCron,
                    durationMinutes: o.windowMinutes ?? 120,
                    timeZone: o.tz ?? 'UTC',
                  },
                }
              : {}),
            rollout: {
              waves: [],
              maxConcurrency: o.maxConcurrency,
              errorBudget: o.errorBudget,
              unreachableCountsAsError: true,
              onBudgetSpent: 'stop',
            },
            approvers: { principalIds: o.approver ?? [], required: o.approvals },
          });
          print(created, {
            human: (p) =>
              `Added patch policy ${p.id} for project ${p.projectId}.\nNext: fleetward plan --policy ${p.id}`,
          });
        });
      },
    );

  policies
    .command('show <id>')
    .description('A patch policy.')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        print(await session.patch.policies.get(id), { human: policyDetails });
      });
    });

  policies
    .command('remove <id>')
    .alias('rm')
    .description(
      'Remove a patch policy (its plans stay for the record, but can no longer be approved or run).',
    )
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        if (!(await session.patch.policies.remove(id))) throw new NotFoundError('patch policy', id);
        print({ id, removed: true }, { human: () => `Removed patch policy ${id}.` });
      });
    });
}

/** `policies`, `plan`, `approve`, `patch`: the patch workflow on the command line. */
export function registerPatchCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print, progress, colors: c, setExit, err } = deps;

  registerPolicies(program, deps);

  addTargetOptions(
    program
      .command('plan')
      .description(
        'Plan a patch run for a policy: exact versions per server, held-back patches, waves, and a hash to approve. Servers without a scan of the last hour are scanned first.',
      )
      .requiredOption('--policy <id>', 'the patch policy'),
    { what: 'only', project: false },
  ).action(async (o: TargetOptions & { policy: string }) => {
    const targets = o.server || o.label ? targetsFrom(o) : undefined;
    await withContext(async ({ fleet, session }) => {
      let done = 0;
      let total = 0;
      fleet.events.on('scan.started', (e) => {
        total = e.total;
        progress.line(`Scanning ${e.total} server${e.total === 1 ? '' : 's'} without a recent scan…`);
      });
      fleet.events.on('scan.server.completed', (e) => {
        done++;
        progress.line(
          `[${done}/${total}] ${c.green('ok')}     ${e.serverId}: ${e.result.patches.length} pending`,
        );
      });
      fleet.events.on('scan.server.failed', (e) => {
        done++;
        progress.line(
          `[${done}/${total}] ${c.red('failed')} ${e.serverId}: ${e.error.code} ${e.error.message}`,
        );
      });
      const plan = await session.patch.planPatchRun({ policyId: o.policy, ...(targets ? { targets } : {}) });
      const policy = await session.patch.policies.get(plan.policyId);
      const blocked = plan.servers.filter((s) => s.blocked);
      print(plan, { human: (p) => `${planSummary(p, c)}\n\n${approvalHint(p, policy)}` });
      if (blocked.length) {
        err(
          `${c.dim('note:')} ${blocked.length} of ${plan.servers.length} server(s) cannot be patched by this plan and will be skipped: ${blocked.map((s) => s.serverId).join(', ')}\n`,
        );
        setExit(EXIT.partial);
      }
    });
  });

  program
    .command('approve <planId>')
    .description(
      'Approve a plan by the hash you reviewed, or give the secondary approval of excluded packages.',
    )
    .option('--hash <hash>', 'the plan hash you reviewed (required unless --exclusion)', planHash)
    .option(
      '-x, --exclusion <packages>',
      'approve these excluded packages (repeatable); makes a new plan',
      collectList,
    )
    .option('--comment <text>', 'why')
    .action(async (planId: string, o: { hash?: string; exclusion?: string[]; comment?: string }) => {
      if (o.exclusion?.length && o.hash) {
        throw new InvalidArgumentError(
          '--exclusion makes a new plan with a new hash: approve that plan separately',
        );
      }
      if (!o.exclusion?.length && !o.hash) {
        throw new InvalidArgumentError(
          '--hash is required: approve the plan you reviewed (its hash is printed by "fleetward plan")',
        );
      }
      await withContext(async ({ session }) => {
        if (o.exclusion?.length) {
          const next = await session.patch.approveExclusions(planId, o.exclusion);
          const policy = await session.patch.policies.get(next.policyId);
          print(next, {
            human: (p) =>
              `${planSummary(p, c)}\n\nPlan ${planId} is superseded by plan ${p.id}, which includes ${o.exclusion!.join(', ')}.\n${approvalHint(p, policy)}`,
          });
          return;
        }
        const plan = await session.patch.approvePlan(planId, {
          hash: o.hash!,
          ...(o.comment ? { comment: o.comment } : {}),
        });
        const agreeing = plan.approvals.filter((a) => a.hash === plan.hash).length;
        print(plan, {
          human: (p) =>
            p.status === 'approved'
              ? `Plan ${p.id} is approved (${agreeing} approval(s)).\nRun it with: fleetward patch ${p.id} --wait-for-window`
              : `Approval recorded: plan ${p.id} has ${agreeing} approval(s) and is ${p.status}.`,
        });
      });
    });

  program
    .command('patch <planId>')
    .description(
      'Execute an approved plan, wave by wave, inside its maintenance window. Interrupting it (Ctrl-C, SIGTERM) starts no further server and cancels the run; run it again to resume after a crash.',
    )
    .option('--wait-for-window', 'wait for the maintenance window to open instead of returning')
    .option(
      '--acknowledge-failures',
      'resume a run paused by a spent error budget: the failures so far no longer count',
    )
    .action(async (planId: string, o: { waitForWindow?: boolean; acknowledgeFailures?: boolean }) => {
      await withContext(async (ctx) => {
        const stopFollowing = followRun(ctx, deps, planId, Boolean(o.waitForWindow));
        try {
          const job = await ctx.session.patch.executePlan(planId, {
            waitForWindow: Boolean(o.waitForWindow),
            acknowledgeFailures: Boolean(o.acknowledgeFailures),
            signal: ctx.signal,
          });
          print(job, { human: (j) => runText(j, planId) });
          // Interrupted (SIGINT/SIGTERM): not a success, whatever the run's state.
          setExit(ctx.signal.aborted ? EXIT.failure : runExit(job));
        } finally {
          stopFollowing();
        }
      });
    });
}
