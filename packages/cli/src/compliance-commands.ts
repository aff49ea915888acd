import { renderCsv, renderHtml, renderJson, writeFileNoFollow } from '@fleetward/core';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { CommandDeps } from './patch-commands.js';
import { renderTable } from './table.js';

const positive = (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a number of days');
  return n;
};

/** `compliance standard add|list`, `compliance summary`, `compliance report`. */
export function registerComplianceCommands(program: Command, deps: CommandDeps): void {
  const { withContext, out } = deps;
  const compliance = program
    .command('compliance')
    .description('Compliance standards, the bird’s-eye summary and shareable reports.');
  const standard = compliance.command('standard').description('Standards every server in scope must meet.');
  standard
    .command('add <id>')
    .description('Add a standard, e.g. no security patch pending longer than 7 days.')
    .addOption(
      new Option(
        '--rule <kind>',
        'max-pending-age, no-pending, updated-within or scanned-within',
      ).makeOptionMandatory(),
    )
    .option('--days <n>', 'the limit in days (max-pending-age, updated-within, scanned-within)', positive)
    .option('--categories <list>', 'patch categories the rule looks at', (v) => v.split(','), ['security'])
    .option('--min-severity <s>', 'lowest severity the rule looks at', 'unspecified')
    .option('-p, --project <id>', 'only this project’s servers')
    .option('--alert-after <days>', 'list servers failing for longer than this as alerts', positive)
    .option('--name <name>', 'display name')
    .action(async (id: string, o: Record<string, unknown>) => {
      const kind = o['rule'] as string;
      const rule =
        kind === 'max-pending-age'
          ? { kind, categories: o['categories'], minSeverity: o['minSeverity'], maxAgeDays: o['days'] }
          : kind === 'no-pending'
            ? { kind, categories: o['categories'], minSeverity: o['minSeverity'] }
            : { kind, days: o['days'] };
      await withContext(async ({ session }) => {
        await session.compliance.standards.add({
          id,
          name: (o['name'] as string | undefined) ?? id,
          rule: rule as never,
          ...(o['project'] ? { projectId: o['project'] as string } : {}),
          ...(o['alertAfter'] !== undefined ? { alertAfterDays: o['alertAfter'] as number } : {}),
        });
        out(`Added standard ${id}.\n`);
      });
    });

  compliance
    .command('summary')
    .description('Compliant / non-compliant / unknown by project, account, region, provider and OS.')
    .option('-p, --project <id>', 'only this project')
    .option('--json', 'print as JSON')
    .action(async (o: { project?: string; json?: boolean }) => {
      await withContext(async ({ session }) => {
        const summary = await session.compliance.summary(o.project ? { projectId: o.project } : {});
        if (o.json) return out(`${JSON.stringify(summary, null, 2)}\n`);
        const rows = (
          [
            ['all', [summary.overall]],
            ['project', summary.byProject],
            ['account', summary.byAccount],
            ['region', summary.byRegion],
            ['provider', summary.byProvider],
            ['os', summary.byOs],
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
        out(
          `${renderTable(['BY', 'GROUP', 'SERVERS', 'COMPLIANT', 'NON-COMPLIANT', 'UNKNOWN', 'ALERTS'], rows)}\n`,
        );
      });
    });

  compliance
    .command('report')
    .description('Write a shareable compliance and pending-patch report (self-contained HTML, CSV or JSON).')
    .addOption(
      new Option('--format <format>', 'output format').choices(['html', 'csv', 'json']).default('html'),
    )
    .option('-o, --out <file>', 'write to this file instead of standard output')
    .option('-p, --project <id>', 'a project’s report')
    .option('--account <id>', 'an account’s report')
    .option('--table <table>', 'for csv: servers or patches', 'servers')
    .option('--brand <name>', 'white-label: the name shown in the header')
    .action(
      async (o: {
        format: string;
        out?: string;
        project?: string;
        account?: string;
        table: string;
        brand?: string;
      }) => {
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
                ? renderCsv(data, { table: o.table === 'patches' ? 'patches' : 'servers' })
                : renderHtml(data, o.brand ? { brand: { name: o.brand } } : {});
          if (o.out) {
            await writeFileNoFollow(o.out, text, { mode: 0o666 });
            out(`Wrote ${o.out}.\n`);
          } else out(text.endsWith('\n') ? text : `${text}\n`);
        });
      },
    );
}
