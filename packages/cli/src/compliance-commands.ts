import { resolve } from 'node:path';
import {
  type ComplianceRule,
  type ComplianceStandard,
  NotFoundError,
  PatchCategorySchema,
  renderCsv,
  renderHtml,
  renderJson,
  SeveritySchema,
  writeFileNoFollow,
} from '@fleetward/core';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type CommandDeps, collectList } from './deps.js';
import { renderTable } from './table.js';

function days(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError('must be a number of days');
  return n;
}

const RULES = ['max-pending-age', 'no-pending', 'updated-within', 'scanned-within'] as const;
type RuleKind = (typeof RULES)[number];

interface StandardOptions {
  rule: RuleKind;
  days?: number;
  categories?: string[];
  minSeverity?: string;
  project?: string;
  alertAfter?: number;
  name?: string;
}

/** The rule the flags describe; flags that mean nothing for the rule's kind are refused. */
function ruleFrom(o: StandardOptions): ComplianceRule {
  const patchFilters = o.categories !== undefined || o.minSeverity !== undefined;
  // The values are checked by the standard's schema when it is added.
  const filters: { categories?: string[]; minSeverity?: string } = {
    ...(o.categories ? { categories: o.categories } : {}),
    ...(o.minSeverity ? { minSeverity: o.minSeverity } : {}),
  };
  switch (o.rule) {
    case 'max-pending-age':
      if (o.days === undefined)
        throw new InvalidArgumentError(
          '--rule max-pending-age needs --days: the oldest a pending patch may be',
        );
      return { kind: o.rule, maxAgeDays: o.days, ...filters } as ComplianceRule;
    case 'no-pending':
      if (o.days !== undefined)
        throw new InvalidArgumentError('--rule no-pending takes no --days: any pending patch fails it');
      return { kind: o.rule, ...filters } as ComplianceRule;
    default:
      if (patchFilters)
        throw new InvalidArgumentError(
          `--rule ${o.rule} looks at no patches: --categories and --min-severity do not apply`,
        );
      if (o.days === undefined) throw new InvalidArgumentError(`--rule ${o.rule} needs --days`);
      return { kind: o.rule, days: o.days };
  }
}

function ruleText(rule: ComplianceRule): string {
  switch (rule.kind) {
    case 'max-pending-age':
      return `no ${rule.categories.join('/')} patch (${rule.minSeverity}+) pending longer than ${rule.maxAgeDays} day(s)`;
    case 'no-pending':
      return `no ${rule.categories.join('/')} patch (${rule.minSeverity}+) pending`;
    case 'updated-within':
      return `packages updated within ${rule.days} day(s)`;
    case 'scanned-within':
      return `scanned within ${rule.days} day(s)`;
  }
}

function standardDetails(s: ComplianceStandard): string {
  return [
    `Compliance standard ${s.id} (${s.name})${s.enabled ? '' : ' (disabled)'}`,
    `  rule     ${s.rule.kind}: ${ruleText(s.rule)}`,
    `  scope    ${s.projectId ? `project ${s.projectId}` : 'every server of the tenant'}`,
    `  alerts   ${s.alertAfterDays === undefined ? 'none' : `servers failing for more than ${s.alertAfterDays} day(s)`}`,
  ].join('\n');
}

function registerStandards(program: Command, deps: CommandDeps): void {
  const { withContext, print } = deps;
  const standards = program
    .command('standards')
    .alias('standard')
    .description('Compliance standards: rules every server in scope must meet.');

  standards
    .command('list', { isDefault: true })
    .description('List compliance standards.')
    .option('--project <id>', 'only those that apply to this project’s servers')
    .action(async (o: { project?: string }) => {
      await withContext(async ({ session }) => {
        print(await session.compliance.standards.list(o.project ? { projectId: o.project } : {}), {
          human: (rows) =>
            rows.length === 0
              ? 'No compliance standards. Add one with: fleetward standards add <id> --rule max-pending-age --days 7'
              : renderTable(
                  ['ID', 'NAME', 'SCOPE', 'RULE', 'ALERT AFTER'],
                  rows.map((s) => [
                    s.id,
                    s.name,
                    s.projectId ?? 'tenant',
                    `${ruleText(s.rule)}${s.enabled ? '' : ' (disabled)'}`,
                    s.alertAfterDays === undefined ? '-' : `${s.alertAfterDays}d`,
                  ]),
                ),
        });
      });
    });

  standards
    .command('add <id>')
    .description('Add a standard, e.g. no security patch pending longer than 7 days.')
    .addOption(new Option('--rule <kind>', 'what servers must meet').choices(RULES).makeOptionMandatory())
    .option('--days <n>', 'the limit in days (max-pending-age, updated-within, scanned-within)', days)
    .option(
      '--categories <list>',
      `patch categories the rule looks at, of ${PatchCategorySchema.options.join(',')} (default: security)`,
      collectList,
    )
    .addOption(
      new Option(
        '--min-severity <severity>',
        'lowest severity the rule looks at (default: unspecified for max-pending-age, critical for no-pending)',
      ).choices(SeveritySchema.options),
    )
    .option('--project <id>', 'only this project’s servers (default: every server of the tenant)')
    .option('--alert-after <days>', 'list servers failing for longer than this as alerts', days)
    .option('-n, --name <name>', 'display name (default: the id)')
    .action(async (id: string, o: StandardOptions) => {
      const rule = ruleFrom(o);
      await withContext(async ({ session }) => {
        const added = await session.compliance.standards.add({
          id,
          name: o.name ?? id,
          rule,
          ...(o.project ? { projectId: o.project } : {}),
          ...(o.alertAfter !== undefined ? { alertAfterDays: o.alertAfter } : {}),
        });
        print(added, {
          human: (s) =>
            `Added compliance standard ${s.id}: ${ruleText(s.rule)}.\nSee where servers stand: fleetward compliance summary`,
        });
      });
    });

  standards
    .command('show <id>')
    .description('A compliance standard.')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        print(await session.compliance.standards.get(id), { human: standardDetails });
      });
    });

  standards
    .command('remove <id>')
    .alias('rm')
    .description('Remove a compliance standard.')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        if (!(await session.compliance.standards.remove(id)))
          throw new NotFoundError('compliance standard', id);
        print({ id, removed: true }, { human: () => `Removed compliance standard ${id}.` });
      });
    });
}

/** `standards add|list|show|remove`, `compliance summary`, `compliance report`. */
export function registerComplianceCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print, out } = deps;
  registerStandards(program, deps);

  const compliance = program
    .command('compliance')
    .description(
      'Where the servers stand against the standards: the bird’s-eye summary and shareable reports.',
    );

  compliance
    .command('summary')
    .description('Compliant / non-compliant / unknown by project, account, region, provider and OS.')
    .option('--project <id>', 'only this project’s servers')
    .action(async (o: { project?: string }) => {
      await withContext(async ({ session }) => {
        const summary = await session.compliance.summary(o.project ? { projectId: o.project } : {});
        print(summary, {
          human: (s) => {
            const rows = (
              [
                ['all', [s.overall]],
                ['project', s.byProject],
                ['account', s.byAccount],
                ['region', s.byRegion],
                ['provider', s.byProvider],
                ['os', s.byOs],
              ] as const
            ).flatMap(([by, groups]) =>
              groups.map((g) => [
                by,
                g.label,
                String(g.total),
                String(g.compliant),
                String(g.nonCompliant),
                String(g.unknown),
                String(g.alerts ?? 0),
              ]),
            );
            return renderTable(
              ['BY', 'GROUP', 'SERVERS', 'COMPLIANT', 'NON-COMPLIANT', 'UNKNOWN', 'ALERTS'],
              rows,
            );
          },
          ids: () => [],
        });
      });
    });

  compliance
    .command('report')
    .description(
      'A shareable compliance and pending-patch report (self-contained HTML, CSV or JSON), to a file or standard output.',
    )
    .addOption(
      new Option('--format <format>', 'the report’s format').choices(['html', 'csv', 'json']).default('html'),
    )
    .option(
      '--out <file>',
      'write to this file (replaced whole; a symbolic link is refused); - or none: standard output',
    )
    .option('--project <id>', 'a project’s report')
    .option('--account <id>', 'an account’s report')
    .addOption(
      new Option('--table <table>', 'for csv: one row per server or per pending patch')
        .choices(['servers', 'patches'])
        .default('servers'),
    )
    .option('--brand <name>', 'white-label: the name shown in the header')
    .action(
      async (o: {
        format: 'html' | 'csv' | 'json';
        out?: string;
        project?: string;
        account?: string;
        table: 'servers' | 'patches';
        brand?: string;
      }) => {
        if (o.project && o.account)
          throw new InvalidArgumentError('choose one scope: --project or --account');
        await withContext(async ({ session }) => {
          const scope = o.project
            ? { kind: 'project' as const, id: o.project }
            : o.account
              ? { kind: 'account' as const, id: o.account }
              : { kind: 'tenant' as const };
          const data = await session.reports.compliance(scope);
          const text =
            o.format === 'json'
              ? renderJson(data)
              : o.format === 'csv'
                ? renderCsv(data, { table: o.table })
                : renderHtml(data, o.brand ? { brand: { name: o.brand } } : {});
          if (!o.out || o.out === '-') {
            out(text.endsWith('\n') ? text : `${text}\n`);
            return;
          }
          await writeFileNoFollow(o.out, text, { mode: 0o666 });
          print(
            { path: resolve(o.out), bytes: Buffer.byteLength(text), format: o.format },
            { human: (w) => `Wrote ${w.path} (${w.format}, ${w.bytes} bytes).`, ids: (w) => [w.path] },
          );
        });
      },
    );
}
