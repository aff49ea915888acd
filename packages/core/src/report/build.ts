import { z } from 'zod';
import { createComplianceApi } from '../compliance/api.js';
import { osKey, summarize } from '../compliance/summary.js';
import type { OutboxMessage, Server } from '../domain/index.js';
import { IdSchema, matchesSelector, validate } from '../domain/index.js';
import { validateOptions } from '../domain/options.js';
import { NotFoundError } from '../errors.js';
import { latestScans } from '../inventory/scan.js';
import type { Targets } from '../inventory/targets.js';
import { refused } from '../kernel/call-audit.js';
import type { CallContext } from '../kernel/context.js';
import { enqueue } from '../kernel/outbox.js';
import type { EmailMessage } from '../ports/integrations.js';
import { type ComplianceReportData, ComplianceReportDataSchema, type ReportGroup } from './model.js';
import { ReportBrandSchema, renderCsv, renderHtml } from './render.js';

/** What a report covers: the whole tenant, one project's servers, or one account's servers. */
export type ReportScopeInput =
  | { kind: 'tenant' }
  | { kind: 'project'; id: string }
  | { kind: 'account'; id: string };

const DAY = 86_400_000;

const ReportScopeInputSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('tenant') }),
  z.strictObject({ kind: z.literal('project'), id: IdSchema }),
  z.strictObject({ kind: z.literal('account'), id: IdSchema }),
]);

const ReportOptionsSchema = z.strictObject({
  title: z.string().min(1).max(500).optional(),
  securityOnly: z.boolean().optional(),
});

const EmailReportOptionsSchema = z.strictObject({
  integrationId: IdSchema,
  to: z.array(z.email()).min(1).max(100),
  subject: z.string().min(1).max(500).optional(),
  brand: ReportBrandSchema.strict().optional(),
});

/** Options of `reports.compliance`. */
export interface ComplianceReportOptions {
  /** The report's title. @default 'Patch compliance report' */
  title?: string;
  /** List only security updates among the pending patches (server counts keep every one). @default false */
  securityOnly?: boolean;
}

/** Options of `reports.emailCompliance`. */
export interface EmailComplianceReportOptions {
  /** The tenant's email integration that sends it (its dispatcher runs `createEmailDelivery()`). */
  integrationId: string;
  /** Recipients: 1 to 100 addresses. */
  to: string[];
  /** The subject line. @default '<title>: <scope name>' */
  subject?: string;
  /** Name and accent colour (`#rgb` or `#rrggbb`) shown in the HTML body. */
  brand?: { name: string; color?: string };
}

/**
 * Shareable reports of a session (`fleet.as(actor).reports`); render the data with `renderHtml`,
 * `renderCsv` or `renderJson`. Authorized as `patch.read` and audited.
 */
export interface ReportsApi {
  /**
   * The data of a compliance and pending-patch report for the tenant, a project or an account,
   * from the same evaluation the compliance summary uses. Needs `patch.read` on every server in
   * scope.
   * @throws ValidationError for a bad scope or options; NotFoundError for an unknown project;
   * AuthorizationError.
   */
  compliance(scope: ReportScopeInput, options?: ComplianceReportOptions): Promise<ComplianceReportData>;
  /**
   * Queues a compliance report for email to stakeholders through the outbox (HTML body, the server
   * and pending-patch tables as CSV attachments, the HTML report attached). The message is in the
   * store once this resolves, so it survives a crash; a dispatcher delivers it.
   * @throws ValidationError for a bad scope or options; NotFoundError for an unknown integration
   * (audited as a failure) or project; AuthorizationError.
   */
  emailCompliance(scope: ReportScopeInput, options: EmailComplianceReportOptions): Promise<OutboxMessage>;
}

/** Creates the reports module on a session's call context. */
export function createReportsApi(internals: () => CallContext): ReportsApi {
  return {
    compliance: (scope, options) => buildComplianceReport(internals(), scope, options),
    emailCompliance: (scope, options) => emailComplianceReport(internals(), scope, options),
  };
}

/**
 * Builds the data of a compliance and pending-patch report for a tenant, a project or an account,
 * from the same evaluation the dashboard summary uses. Authorized and audited as the session's
 * principal (`patch.read` on every server in scope).
 */
export async function buildComplianceReport(
  ctx: CallContext,
  scopeInput: ReportScopeInput,
  optionsInput: ComplianceReportOptions = {},
): Promise<ComplianceReportData> {
  // Checked before any read: a refused report must not leave audited reads behind it.
  const scope = validate(ReportScopeInputSchema, scopeInput, 'ReportScope');
  const options = validateOptions(ReportOptionsSchema, optionsInput, 'ReportOptions');
  const { runtime: fleet, tenantId } = ctx;
  const store = fleet.store;
  const tenant = await store.tenants.require(tenantId, tenantId);
  let targets: Targets | undefined;
  let scopeName = tenant.name;
  if (scope.kind === 'project') {
    const project = await store.projects.require(tenantId, scope.id);
    targets = { projectId: project.id };
    scopeName = project.name;
  } else if (scope.kind === 'account') {
    const account = await store.accounts.get(tenantId, scope.id);
    targets = { selector: { accountIds: [scope.id] } };
    scopeName = account?.name ?? scope.id;
  }
  const evaluations = await createComplianceApi(() => ctx).evaluate(targets);
  const latest = await latestScans(ctx, targets ?? { selector: { all: true } });
  const servers: Server[] = latest.map((l) => l.server);
  const projects = await store.projects.listAll(tenantId);
  const standards = (await store.complianceStandards.listAll(tenantId)).filter((s) => s.enabled);
  const summary = summarize(
    evaluations,
    servers,
    projects.filter((p) => servers.some((s) => matchesSelector(s, p.selector))),
  );
  const now = fleet.clock.now();
  const byId = new Map(evaluations.map((e) => [e.serverId, e]));
  const group = (by: ReportGroup['by'], groups: typeof summary.byProject): ReportGroup[] =>
    groups
      .filter((g) => g.total > 0)
      .map((g) => ({
        by,
        key: g.label,
        total: g.total,
        compliant: g.compliant,
        nonCompliant: g.nonCompliant,
        unknown: g.unknown,
      }));
  const data = {
    title: options.title ?? 'Patch compliance report',
    scope: { kind: scope.kind, id: scope.kind === 'tenant' ? tenantId : scope.id, name: scopeName },
    tenant: { id: tenant.id, name: tenant.name },
    generatedAt: now.toISOString(),
    standards: standards.map((s) => ({ id: s.id, name: s.name, description: describeRule(s.rule) })),
    totals: {
      servers: summary.overall.total,
      compliant: summary.overall.compliant,
      nonCompliant: summary.overall.nonCompliant,
      unknown: summary.overall.unknown,
    },
    groups: [
      ...group('project', summary.byProject),
      ...group('account', summary.byAccount),
      ...group('region', summary.byRegion),
      ...group('provider', summary.byProvider),
      ...group('os', summary.byOs),
    ],
    servers: latest.map(({ server, scan }) => {
      const evaluation = byId.get(server.id);
      const patches = scan?.status === 'succeeded' ? scan.patches : [];
      const os = server.os ? osKey(server) : undefined;
      return {
        id: server.id,
        name: server.name,
        provider: server.provider,
        accountId: server.accountId,
        ...(server.region ? { region: server.region } : {}),
        ...(os ? { os } : {}),
        status: evaluation?.status ?? 'unknown',
        ...(evaluation?.lastScannedAt ? { lastScannedAt: evaluation.lastScannedAt } : {}),
        ...(evaluation?.lastUpdatedAt ? { lastUpdatedAt: evaluation.lastUpdatedAt } : {}),
        alert: evaluation?.alert ?? false,
        reasons: (evaluation?.results ?? [])
          .flatMap((r) => r.reasons.map((reason) => `${r.name}: ${reason.message}`))
          .slice(0, 100),
        pending: patches.length,
        security: patches.filter((p) => p.category === 'security').length,
      };
    }),
    patches: latest.flatMap(({ server, scan }) =>
      (scan?.status === 'succeeded' ? scan.patches : [])
        .filter((p) => !options.securityOnly || p.category === 'security')
        .map((p) => ({
          serverId: server.id,
          serverName: server.name,
          name: p.name,
          installedVersion: p.installedVersion,
          candidateVersion: p.candidateVersion,
          category: p.category,
          severity: p.severity,
          ...(p.firstSeenAt
            ? {
                firstSeenAt: p.firstSeenAt,
                ageDays: Math.max(0, Math.floor((now.getTime() - Date.parse(p.firstSeenAt)) / DAY)),
              }
            : {}),
          advisories: p.advisories,
        })),
    ),
  };
  return validate(ComplianceReportDataSchema, data, 'ComplianceReportData');
}

function describeRule(rule: { kind: string } & Record<string, unknown>): string {
  switch (rule.kind) {
    case 'max-pending-age':
      return `No ${(rule['categories'] as string[]).join('/')} patch pending longer than ${rule['maxAgeDays']} days.`;
    case 'no-pending':
      return `No ${(rule['categories'] as string[]).join('/')} patch of severity ${rule['minSeverity']} or higher pending.`;
    case 'updated-within':
      return `Updated within the last ${rule['days']} days.`;
    default:
      return `Scanned within the last ${rule['days']} days.`;
  }
}

/**
 * Queues a compliance report for email through the outbox (HTML body and CSV attachments), sent
 * by a dispatcher with `createEmailDelivery()`. Survives a crash: the message is in the store.
 */
export async function emailComplianceReport(
  ctx: CallContext,
  scopeInput: ReportScopeInput,
  optionsInput: EmailComplianceReportOptions,
): Promise<OutboxMessage> {
  const scope = validate(ReportScopeInputSchema, scopeInput, 'ReportScope');
  const options = validate(EmailReportOptionsSchema, optionsInput, 'EmailReportOptions');
  const target = { type: 'report', id: `${scope.kind}:${'id' in scope ? scope.id : ctx.tenantId}` };
  // Decided, and the integration looked up, before the report is built: a refused email must not
  // leave audited reads of the fleet behind it, and its refusal is audited itself.
  const decided = await ctx.decide('patch.read', [{ type: 'report' }], target);
  if (!(await ctx.runtime.store.integrations.get(ctx.tenantId, options.integrationId))) {
    throw await refused(
      ctx,
      decided.principal,
      'patch.read',
      target,
      new NotFoundError('integration', options.integrationId),
      decided.rule,
    );
  }
  const data = await buildComplianceReport(ctx, scope);
  const html = renderHtml(data, options.brand ? { brand: options.brand } : {});
  const t = data.totals;
  const text = [
    `${data.title} for ${data.scope.name} (${data.generatedAt})`,
    `${t.servers} servers: ${t.compliant} compliant, ${t.nonCompliant} non-compliant, ${t.unknown} unknown.`,
    `${data.patches.length} pending updates. The full report is attached.`,
  ].join('\n');
  const message: EmailMessage = {
    to: options.to,
    subject: options.subject ?? `${data.title}: ${data.scope.name}`,
    text,
    html,
    attachments: [
      { filename: 'servers.csv', content: renderCsv(data, { table: 'servers' }), contentType: 'text/csv' },
      {
        filename: 'pending-patches.csv',
        content: renderCsv(data, { table: 'patches' }),
        contentType: 'text/csv',
      },
      { filename: 'report.html', content: html, contentType: 'text/html' },
    ],
  };
  return ctx.write(
    'patch.read',
    [{ type: 'report' }],
    target,
    async (tx) => {
      await tx.integrations.require(ctx.tenantId, options.integrationId);
      return enqueue(tx, {
        tenantId: ctx.tenantId,
        channel: 'email',
        destinationId: options.integrationId,
        eventType: 'report.compliance',
        nextAttemptAt: ctx.runtime.clock.now(),
        payload: { message: message as unknown as Record<string, unknown> },
      });
    },
    (m) => ({ to: options.to, outboxId: m.id }),
  );
}
