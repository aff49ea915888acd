import { z } from 'zod';
import { toIssues } from '../domain/validate.js';
import { ValidationError } from '../errors.js';
import { type CsvColumn, csvTable } from '../util/csv.js';
import {
  type ComplianceReportData,
  parseComplianceReportData,
  REPORT_GROUP_DIMENSIONS,
  type ReportGroup,
  type ReportGroupDimension,
  type ReportPatch,
  type ReportServer,
  type ReportServerStatus,
} from './model.js';

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/** Which table a CSV report holds: one row per server, or one row per pending update. */
export const CsvTableSchema = z.enum(['servers', 'patches']);
export type CsvTable = z.infer<typeof CsvTableSchema>;

/** Options of {@link renderCsv}. */
export const RenderCsvOptionsSchema = z.object({
  table: CsvTableSchema,
  /**
   * Prefix a UTF-8 byte-order mark. Excel reads a CSV without one in the legacy code page, which
   * garbles every non-ASCII name; most other consumers prefer no BOM, hence off by default.
   */
  bom: z.boolean().optional(),
});
export type RenderCsvOptions = z.infer<typeof RenderCsvOptionsSchema>;

/**
 * The brand colour goes into the stylesheet, where HTML escaping does not protect anything, so
 * only plain hex colours are accepted rather than trying to escape CSS.
 */
const HEX_COLOR = /^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/;

/** White-label branding of an HTML report: whose report it is, in their colour, with their logo. */
export const ReportBrandSchema = z.object({
  name: z.string().min(1).max(200),
  /** Accent colour as `#rgb` or `#rrggbb`. */
  color: z.string().regex(HEX_COLOR, 'must be a hex colour like #1f4e79').optional(),
  /**
   * Logo as SVG markup. It is shown through an `<img>` with a `data:` URL, where browsers run no
   * scripts and load nothing external, so an untrusted logo cannot script the report.
   */
  logoSvg: z
    .string()
    .max(200_000)
    .regex(/<svg[\s>]/i, 'must be SVG markup')
    .optional(),
});
export type ReportBrand = z.infer<typeof ReportBrandSchema>;

/** Options of {@link renderHtml}. */
export const RenderHtmlOptionsSchema = z.object({ brand: ReportBrandSchema.optional() });
export type RenderHtmlOptions = z.infer<typeof RenderHtmlOptionsSchema>;

function parseOptions<S extends z.ZodType>(schema: S, input: unknown, subject: string): z.output<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new ValidationError(subject, toIssues(result.error));
  return result.data;
}

// ---------------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------------

/** Joins list fields with `; `; the JSON report keeps lists lossless. */
const list = (items: readonly string[]) => items.join('; ');

const SERVER_COLUMNS: readonly CsvColumn<ReportServer>[] = [
  ['id', (s) => s.id],
  ['name', (s) => s.name],
  ['provider', (s) => s.provider],
  ['accountId', (s) => s.accountId],
  ['region', (s) => s.region],
  ['os', (s) => s.os],
  ['status', (s) => s.status],
  ['alert', (s) => s.alert],
  ['pending', (s) => s.pending],
  ['security', (s) => s.security],
  ['lastScannedAt', (s) => s.lastScannedAt],
  ['lastUpdatedAt', (s) => s.lastUpdatedAt],
  ['reasons', (s) => list(s.reasons)],
];

const PATCH_COLUMNS: readonly CsvColumn<ReportPatch>[] = [
  ['serverId', (p) => p.serverId],
  ['serverName', (p) => p.serverName],
  ['name', (p) => p.name],
  ['installedVersion', (p) => p.installedVersion],
  ['candidateVersion', (p) => p.candidateVersion],
  ['category', (p) => p.category],
  ['severity', (p) => p.severity],
  ['firstSeenAt', (p) => p.firstSeenAt],
  ['ageDays', (p) => p.ageDays],
  ['advisories', (p) => list(p.advisories)],
];

/**
 * Renders one table of a report as CSV (RFC 4180: comma-separated, CRLF line ends, every field
 * quoted, quotes doubled), with a header row of the JSON field names. Cells a spreadsheet could
 * run as a formula get a leading `'`; plain numbers stay numbers (see `csvCell`). Rows keep the
 * input order; list fields are joined with `; `.
 *
 * @throws {ValidationError} when `data` or `options` are invalid.
 */
export function renderCsv(data: ComplianceReportData, options: RenderCsvOptions): string {
  const report = parseComplianceReportData(data);
  const { table, bom } = parseOptions(RenderCsvOptionsSchema, options, 'RenderCsvOptions');
  const body =
    table === 'servers' ? csvTable(SERVER_COLUMNS, report.servers) : csvTable(PATCH_COLUMNS, report.patches);
  return bom ? `\uFEFF${body}` : body;
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/**
 * Renders a report as pretty JSON (2-space indent, trailing newline). Keys follow the schema
 * order whatever order the input was built in, absent optional fields are omitted, unknown fields
 * are dropped and arrays keep their order, so equal data always gives byte-identical files that
 * diff well. The output parses back through {@link ComplianceReportDataSchema} unchanged.
 *
 * @throws {ValidationError} when `data` is invalid.
 */
export function renderJson(data: ComplianceReportData): string {
  return `${JSON.stringify(parseComplianceReportData(data), null, 2)}\n`;
}

// ---------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------

/**
 * Scripts are unnecessary (charts are pre-rendered SVG) and every byte of text is hostile, so the
 * page may load nothing at all: inline styles and `data:` images (the logo) only. `base-uri` and
 * `form-action` are not covered by `default-src`, hence listed too.
 */
export const REPORT_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes text for HTML text and double- or single-quoted attribute values alike. */
export function esc(value: string | number): string {
  return String(value).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

/**
 * JSON inside `<script>` ends at the first `</script` and `<!--` can switch the parser into a
 * mode where it ends elsewhere, whatever the JSON quoting says; escaping every `<`, `>` and `&` as
 * `\u00XX` keeps the text valid JSON with the same value while making both impossible. U+2028/9
 * are escaped so the block is also safe if someone pastes it into JavaScript.
 */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replaceAll('<', '\\u003c')
    .replaceAll('>', '\\u003e')
    .replaceAll('&', '\\u0026')
    .replaceAll('\u2028', '\\u2028')
    .replaceAll('\u2029', '\\u2029');
}

const STATUS: Record<ReportServerStatus, { label: string; color: string; css: string }> = {
  compliant: { label: 'Compliant', color: '#1a7f37', css: 'ok' },
  'non-compliant': { label: 'Non-compliant', color: '#c62828', css: 'bad' },
  unknown: { label: 'Unknown', color: '#8c959f', css: 'unk' },
};

const DIMENSION_LABEL: Record<ReportGroupDimension, string> = {
  project: 'Project',
  account: 'Account',
  region: 'Region',
  provider: 'Provider',
  os: 'Operating system',
};

const SCOPE_LABEL: Record<ComplianceReportData['scope']['kind'], string> = {
  tenant: 'Tenant',
  project: 'Project',
  account: 'Account',
};

// Severity and category are free text from the package manager; they are never put into a class
// name themselves, only mapped onto a fixed set of classes.
const SEVERITY_CLASS: Record<string, string> = {
  critical: 'sev-critical',
  high: 'sev-high',
  important: 'sev-high',
  medium: 'sev-medium',
  moderate: 'sev-medium',
  low: 'sev-low',
};

const DEFAULT_ACCENT = '#1f4e79';
const DAY_MS = 86_400_000;

/** `2025-03-04 05:06 UTC`: the same for every reader, wherever they open the file. */
export function formatInstant(iso: string | undefined, zone = true): string {
  if (iso === undefined) return '—';
  const text = new Date(iso).toISOString().slice(0, 16).replace('T', ' ');
  return zone ? `${text} UTC` : text;
}

function percent(part: number, whole: number): string {
  return whole === 0 ? '—' : `${((part / whole) * 100).toFixed(1).replace(/\.0$/, '')}%`;
}

function patchAge(p: ReportPatch, generatedAt: string): number | undefined {
  if (p.ageDays !== undefined) return p.ageDays;
  if (p.firstSeenAt === undefined) return undefined;
  return Math.max(0, Math.floor((Date.parse(generatedAt) - Date.parse(p.firstSeenAt)) / DAY_MS));
}

/** Shortens a label for a chart axis, by characters of the raw text (never inside an entity). */
function truncate(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

/** WCAG relative luminance of a `#rgb` / `#rrggbb` colour. */
function luminance(hex: string): number {
  const full = hex.length === 4 ? hex.replace(/[0-9a-f]/gi, (c) => c + c) : hex;
  const channel = (i: number) => {
    const v = Number.parseInt(full.slice(i, i + 2), 16) / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
}

// Brands pick their colour for logos, not for legibility: text on the accent switches to dark on
// light accents, and headings on white fall back to near-black when the accent is too light to
// reach a 3:1 contrast (WCAG large text).
const INK = '#111827';
const onAccent = (accent: string) => (luminance(accent) > 0.4 ? INK : '#ffffff');
const accentOnWhite = (accent: string) => (luminance(accent) > 0.3 ? INK : accent);

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2));

function donutChart(totals: ComplianceReportData['totals']): string {
  const size = 200;
  const c = size / 2;
  const r = 70;
  const circumference = 2 * Math.PI * r;
  const segments: [ReportServerStatus, number][] = [
    ['compliant', totals.compliant],
    ['non-compliant', totals.nonCompliant],
    ['unknown', totals.unknown],
  ];
  let offset = 0;
  const arcs: string[] = [];
  for (const [status, count] of segments) {
    if (count === 0 || totals.servers === 0) continue;
    const length = (count / totals.servers) * circumference;
    arcs.push(
      `<circle class="arc" data-status="${status}" data-value="${count}" cx="${c}" cy="${c}" r="${r}" ` +
        `fill="none" stroke="${STATUS[status].color}" stroke-width="26" ` +
        `stroke-dasharray="${fmt(length)} ${fmt(circumference - length)}" stroke-dashoffset="${fmt(-offset)}">` +
        `<title>${esc(STATUS[status].label)}: ${count} of ${totals.servers}</title></circle>`,
    );
    offset += length;
  }
  const centre =
    totals.servers === 0
      ? `<text x="${c}" y="${c + 5}" class="donut-sub">No servers</text>`
      : `<text x="${c}" y="${c + 4}" class="donut-value">${esc(percent(totals.compliant, totals.servers))}</text>` +
        `<text x="${c}" y="${c + 26}" class="donut-sub">compliant</text>`;
  return (
    `<svg class="donut" viewBox="0 0 ${size} ${size}" width="${size}" height="${size}" role="img" ` +
    `aria-label="${esc(`${totals.compliant} compliant, ${totals.nonCompliant} non-compliant, ${totals.unknown} unknown of ${totals.servers} servers`)}">` +
    `<circle cx="${c}" cy="${c}" r="${r}" fill="none" stroke="#e5e7eb" stroke-width="26"/>` +
    // Rotated so the first segment starts at twelve o'clock.
    `<g transform="rotate(-90 ${c} ${c})">${arcs.join('')}</g>${centre}</svg>`
  );
}

function groupChart(by: ReportGroupDimension, groups: readonly ReportGroup[]): string {
  // Sized to the column a chart gets on screen (two per row), so text renders near its nominal size.
  const width = 560;
  const labelWidth = 150;
  const countWidth = 122;
  const barWidth = width - labelWidth - countWidth - 8;
  const rowHeight = 30;
  const barHeight = 18;
  const top = 6;
  const height = top * 2 + groups.length * rowHeight;
  const max = groups.reduce((m, g) => Math.max(m, g.total), 1);
  const rows = groups.map((g, i) => {
    const y = top + i * rowHeight;
    let x = labelWidth;
    const rects: string[] = [];
    for (const [status, count] of [
      ['compliant', g.compliant],
      ['non-compliant', g.nonCompliant],
      ['unknown', g.unknown],
    ] as const) {
      if (count === 0) continue;
      const w = (count / max) * barWidth;
      rects.push(
        `<rect x="${fmt(x)}" y="${y + (rowHeight - barHeight) / 2}" width="${fmt(w)}" height="${barHeight}" ` +
          `fill="${STATUS[status].color}"><title>${esc(g.key)} — ${esc(STATUS[status].label)}: ${count}</title></rect>`,
      );
      x += w;
    }
    if (g.total === 0) {
      rects.push(
        `<rect x="${labelWidth}" y="${y + (rowHeight - barHeight) / 2}" width="2" height="${barHeight}" fill="#d1d5db"/>`,
      );
    }
    return (
      `<g class="bar" data-by="${by}" data-key="${esc(g.key)}" data-total="${g.total}" ` +
      `data-compliant="${g.compliant}" data-non-compliant="${g.nonCompliant}" data-unknown="${g.unknown}">` +
      `<text class="bar-label" x="${labelWidth - 10}" y="${y + rowHeight / 2 + 4}"><title>${esc(g.key)}</title>${esc(truncate(g.key, 20))}</text>` +
      rects.join('') +
      `<text class="bar-count" x="${width - 4}" y="${y + rowHeight / 2 + 4}">${g.compliant} of ${g.total} compliant</text>` +
      `</g>`
    );
  });
  return (
    `<figure class="chart" data-group-by="${by}"><figcaption>By ${esc(DIMENSION_LABEL[by].toLowerCase())}</figcaption>` +
    `<svg viewBox="0 0 ${width} ${height}" width="100%" role="img" ` +
    `aria-label="${esc(`Compliance by ${DIMENSION_LABEL[by].toLowerCase()}`)}">${rows.join('')}</svg></figure>`
  );
}

function legend(): string {
  return `<ul class="legend">${(['compliant', 'non-compliant', 'unknown'] as const)
    .map((s) => `<li><span class="swatch ${STATUS[s].css}"></span>${esc(STATUS[s].label)}</li>`)
    .join('')}</ul>`;
}

export function kpi(metric: string, label: string, value: number, extra = ''): string {
  return (
    `<div class="kpi ${extra}" data-metric="${metric}" data-value="${value}">` +
    `<span class="kpi-value">${value}</span><span class="kpi-label">${esc(label)}</span></div>`
  );
}

function statusBadge(status: ReportServerStatus): string {
  return `<span class="badge ${STATUS[status].css}">${esc(STATUS[status].label)}</span>`;
}

function serverRow(s: ReportServer): string {
  const reasons = s.reasons.length
    ? `<ul class="reasons">${s.reasons.map((r) => `<li>${esc(r)}</li>`).join('')}</ul>`
    : '<span class="muted">—</span>';
  const alert = s.alert ? '<span class="badge alert-badge" title="Needs attention">⚠ Alert</span> ' : '';
  return (
    `<tr class="${s.alert ? 'alert' : ''}" data-server-id="${esc(s.id)}" data-status="${s.status}" ` +
    `data-alert="${s.alert}" data-pending="${s.pending}" data-security="${s.security}">` +
    `<td class="name">${alert}<span class="server-name">${esc(s.name)}</span><div class="sub">${esc(s.id)}</div></td>` +
    `<td class="short">${esc(s.provider)}<div class="sub">${esc(s.accountId)}</div></td>` +
    `<td class="short">${esc(s.region ?? '—')}</td>` +
    `<td class="short">${esc(s.os ?? '—')}</td>` +
    `<td>${statusBadge(s.status)}</td>` +
    `<td class="num">${s.pending}</td>` +
    `<td class="num${s.security > 0 ? ' sec' : ''}">${s.security}</td>` +
    `<td class="date">${esc(formatInstant(s.lastScannedAt, false))}` +
    `<div class="sub">updated ${esc(formatInstant(s.lastUpdatedAt, false))}</div></td>` +
    `<td class="wide">${reasons}</td></tr>`
  );
}

function patchRow(p: ReportPatch, generatedAt: string): string {
  const age = patchAge(p, generatedAt);
  const severityClass = SEVERITY_CLASS[p.severity.toLowerCase()] ?? 'sev-other';
  const installed =
    p.installedVersion === null ? '<span class="muted">not installed</span>' : esc(p.installedVersion);
  return (
    `<tr data-server-id="${esc(p.serverId)}" data-age-days="${age ?? ''}">` +
    `<td class="name">${esc(p.serverName)}</td>` +
    `<td class="pkg">${esc(p.name)}</td>` +
    `<td class="ver">${installed}</td>` +
    `<td class="ver">${esc(p.candidateVersion)}</td>` +
    `<td class="short">${esc(p.category)}</td>` +
    `<td><span class="badge ${severityClass}">${esc(p.severity)}</span></td>` +
    `<td class="num">${age ?? '—'}</td>` +
    `<td class="adv">${p.advisories.length ? p.advisories.map(esc).join('<br>') : '<span class="muted">—</span>'}</td></tr>`
  );
}

/** Column heading, share of the printed page width (percent), numeric alignment. */
type Heading = readonly [label: string, printWidth: number, numeric?: boolean];

const SERVER_HEADINGS: readonly Heading[] = [
  ['Server', 19],
  ['Provider', 10],
  ['Region', 8],
  ['OS', 9],
  ['Status', 11],
  ['Pending', 7, true],
  ['Security', 8, true],
  ['Last scan (UTC)', 11],
  ['Reasons', 17],
];

const PATCH_HEADINGS: readonly Heading[] = [
  ['Server', 15],
  ['Package', 17],
  ['Installed', 13],
  ['Candidate', 13],
  ['Category', 9],
  ['Severity', 10],
  ['Age (days)', 7, true],
  ['Advisories', 16],
];

function tableHead(headings: readonly Heading[]): string {
  return `<thead><tr>${headings.map(([label, , numeric]) => `<th${numeric ? ' class="num"' : ''}>${esc(label)}</th>`).join('')}</tr></thead>`;
}

// On paper a table cannot scroll, and automatic layout hands most of the width to whichever
// column has the longest text; fixed shares keep every column readable on an A4 / Letter page.
function printColumnWidths(section: string, headings: readonly Heading[]): string {
  return headings.map(([, width], i) => `  #${section} th:nth-child(${i + 1}){width:${width}%}`).join('\n');
}

export function stylesheet(accent: string): string {
  // Only a validated hex colour is interpolated here (see ReportBrandSchema).
  return `
:root{--accent:${accent};--accent-fg:${onAccent(accent)};--accent-ink:${accentOnWhite(accent)};--ok:${STATUS.compliant.color};--bad:${STATUS['non-compliant'].color};--unk:${STATUS.unknown.color};--line:#e5e7eb;--muted:#6b7280;--text:#111827}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:#f3f4f6;color:var(--text);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.page{max-width:1180px;margin:24px auto;background:#fff;border:1px solid var(--line);border-radius:10px;overflow:hidden}
.report-header{background:var(--accent);color:var(--accent-fg);padding:22px 32px 20px}
.brand{display:flex;align-items:center;gap:12px;font-weight:600;font-size:15px;opacity:.95;margin-bottom:10px}
.brand img{height:36px;width:auto;max-width:200px;display:block}
h1{margin:0 0 12px;font-size:26px;line-height:1.2;overflow-wrap:anywhere}
.meta{display:flex;flex-wrap:wrap;gap:6px 28px;margin:0;font-size:13px}
.meta div{display:flex;gap:6px}
.meta dt{opacity:.75}
.meta dd{margin:0;font-weight:600;overflow-wrap:anywhere}
main{padding:8px 32px 24px}
.section{padding:18px 0 8px;border-top:1px solid var(--line)}
.section:first-child{border-top:0}
h2{font-size:18px;margin:0 0 14px;color:var(--accent-ink)}
.summary-grid{display:flex;flex-wrap:wrap;align-items:center;gap:28px}
.donut .donut-value{font-size:30px;font-weight:700;text-anchor:middle;fill:var(--text)}
.donut .donut-sub{font-size:13px;text-anchor:middle;fill:var(--muted)}
.kpis{display:grid;grid-template-columns:repeat(3,minmax(140px,1fr));gap:12px;flex:1;min-width:300px}
.kpi{border:1px solid var(--line);border-left:5px solid var(--accent);border-radius:8px;padding:10px 14px;display:flex;flex-direction:column}
.kpi.ok{border-left-color:var(--ok)}.kpi.bad{border-left-color:var(--bad)}.kpi.unk{border-left-color:var(--unk)}.kpi.warn{border-left-color:#d97706}
.kpi-value{font-size:26px;font-weight:700;line-height:1.1;font-variant-numeric:tabular-nums}
.table-wrap{overflow-x:auto}
.kpi-label{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
h3{font-size:13px;margin:18px 0 6px;color:#374151;text-transform:uppercase;letter-spacing:.04em}
.standards{margin:0;padding:0;list-style:none;display:grid;gap:6px}
.standards li{font-size:13px}.standards b{margin-right:6px}
.legend{display:flex;gap:18px;list-style:none;padding:0;margin:0 0 8px;font-size:12px;color:var(--muted)}
.legend li{display:flex;align-items:center;gap:6px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:3px}
.swatch.ok{background:var(--ok)}.swatch.bad{background:var(--bad)}.swatch.unk{background:var(--unk)}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:14px}
.chart{margin:0;border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.chart svg{display:block;max-width:560px}
.chart figcaption{font-weight:600;font-size:13px;margin-bottom:4px}
.chart .bar-label{font-size:13px;text-anchor:end;fill:var(--text)}
.chart .bar-count{font-size:12px;text-anchor:end;fill:var(--muted)}
table{width:100%;border-collapse:collapse;font-size:12.5px}
th,td{padding:7px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f9fafb;font-size:11px;text-transform:uppercase;letter-spacing:.04em;color:#374151;white-space:nowrap;position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.sec{color:var(--bad);font-weight:700}
td.date{white-space:nowrap;font-variant-numeric:tabular-nums}
td.short{min-width:7.5em}
td.name{min-width:12em}
td.wide{min-width:16em}
td.pkg{min-width:11em}
td.ver{min-width:9em}
td.ver,td.pkg,td.adv{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:12px}
tr.alert td{background:#fdecea}
tr.alert td:first-child{box-shadow:inset 4px 0 0 var(--bad)}
.server-name{font-weight:600}
.sub{color:var(--muted);font-size:11px}
.muted{color:var(--muted)}
.reasons{margin:0;padding-left:16px}
.badge{display:inline-block;padding:1px 8px;border-radius:999px;font-size:11px;font-weight:600;white-space:nowrap;border:1px solid transparent}
.badge.ok{background:#dcfce7;color:#14532d}.badge.bad{background:#fee2e2;color:#7f1d1d}.badge.unk{background:#f3f4f6;color:#374151;border-color:#d1d5db}
.alert-badge{background:var(--bad);color:#fff}
.sev-critical{background:#7f1d1d;color:#fff}.sev-high{background:#fee2e2;color:#991b1b}.sev-medium{background:#fef3c7;color:#92400e}.sev-low{background:#e0f2fe;color:#075985}.sev-other{background:#f3f4f6;color:#374151}
.empty{color:var(--muted);font-style:italic}
footer{padding:14px 32px;border-top:1px solid var(--line);color:var(--muted);font-size:12px;display:flex;justify-content:space-between;gap:16px;flex-wrap:wrap}
@page{margin:14mm 12mm}
@media print{
  *{-webkit-print-color-adjust:exact;print-color-adjust:exact}
  body{background:#fff;font-size:10.5pt}
  .page{margin:0;border:0;border-radius:0;max-width:none}
  main{padding:0 4mm}
  .report-header{padding:6mm 4mm}
  footer{padding:4mm}
  .section{border-top:0}
  .section+.section{break-before:page}
  .charts{grid-template-columns:1fr}
  h2{break-after:avoid}
  tr,.kpi,.chart,.donut{break-inside:avoid}
  thead{display:table-header-group}
  th{position:static}
  .table-wrap{overflow:visible}
  table{font-size:8pt}
  td.ver,td.pkg,td.adv{font-size:7.5pt}
  th{font-size:6.5pt;white-space:normal;overflow-wrap:normal}
  th,td{padding:4px 5px}
  td.short,td.name,td.wide,td.pkg,td.ver{min-width:0}
  td.date{white-space:normal}
  table{table-layout:fixed}
${printColumnWidths('servers', SERVER_HEADINGS)}
${printColumnWidths('patches', PATCH_HEADINGS)}
}`;
}

/**
 * Renders a report as one self-contained HTML file: inline CSS and SVG charts, no scripts, fonts
 * or requests, so it can be mailed, archived and opened offline; a print stylesheet starts each
 * section on a new page. It shows a donut of compliant / non-compliant / unknown servers, a bar
 * chart per group dimension, the servers (alerts highlighted) and the pending updates.
 *
 * Every piece of text is HTML-escaped and a Content-Security-Policy ({@link REPORT_CSP}) forbids
 * scripts and loads, since names and reasons come from managed servers. Numbers are repeated as
 * `data-*` attributes, and the whole report as `<script type="application/json" id="report-data">`
 * (the same value as {@link renderJson}), for machines reading the page.
 *
 * White-label: `brand` sets the name, accent colour and logo shown; without it the report names
 * no vendor.
 *
 * @throws {ValidationError} when `data` or `options` are invalid.
 */
export function renderHtml(data: ComplianceReportData, options: RenderHtmlOptions = {}): string {
  const report = parseComplianceReportData(data);
  const { brand } = parseOptions(RenderHtmlOptionsSchema, options, 'RenderHtmlOptions');
  const accent = brand?.color ?? DEFAULT_ACCENT;
  const t = report.totals;
  const alerts = report.servers.filter((s) => s.alert).length;
  const pending = report.servers.reduce((n, s) => n + s.pending, 0);
  const security = report.servers.reduce((n, s) => n + s.security, 0);

  const logo = brand?.logoSvg
    ? `<img src="data:image/svg+xml;base64,${Buffer.from(brand.logoSvg, 'utf8').toString('base64')}" alt="">`
    : '';
  const brandLine = brand ? `<div class="brand">${logo}<span>${esc(brand.name)}</span></div>` : '';

  const meta: [string, string][] = [
    [SCOPE_LABEL[report.scope.kind], `${report.scope.name} (${report.scope.id})`],
    ...(report.scope.kind === 'tenant' ? [] : ([['Tenant', report.tenant.name]] as [string, string][])),
    ['Generated', formatInstant(report.generatedAt)],
  ];

  const standards = report.standards.length
    ? `<h3>Evaluated against</h3><ul class="standards">${report.standards
        .map((s) => `<li data-standard-id="${esc(s.id)}"><b>${esc(s.name)}</b>${esc(s.description)}</li>`)
        .join('')}</ul>`
    : '';

  const byDimension = REPORT_GROUP_DIMENSIONS.map(
    (by) => [by, report.groups.filter((g) => g.by === by)] as const,
  ).filter(([, groups]) => groups.length > 0);
  const groupsSection = byDimension.length
    ? `<section class="section" id="groups"><h2>Compliance by group</h2>${legend()}<div class="charts">${byDimension
        .map(([by, groups]) => groupChart(by, groups))
        .join('')}</div></section>`
    : '';

  const serversTable = report.servers.length
    ? report.servers.map(serverRow).join('')
    : '<tr><td colspan="9" class="empty">No servers in scope.</td></tr>';
  const patchesTable = report.patches.length
    ? report.patches.map((p) => patchRow(p, report.generatedAt)).join('')
    : '<tr><td colspan="8" class="empty">No pending updates.</td></tr>';

  const title = `${report.title} — ${report.scope.name}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${esc(REPORT_CSP)}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<link rel="icon" href="data:,">
<style>${stylesheet(accent)}</style>
</head>
<body>
<div class="page">
<header class="report-header">
${brandLine}<h1>${esc(report.title)}</h1>
<dl class="meta">${meta.map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${esc(v)}</dd></div>`).join('')}</dl>
</header>
<main>
<section class="section" id="summary" data-servers="${t.servers}" data-compliant="${t.compliant}" data-non-compliant="${t.nonCompliant}" data-unknown="${t.unknown}">
<h2>Summary</h2>
<div class="summary-grid">
${donutChart(t)}
<div class="kpis">
${kpi('servers', 'Servers', t.servers)}
${kpi('compliant', 'Compliant', t.compliant, 'ok')}
${kpi('nonCompliant', 'Non-compliant', t.nonCompliant, 'bad')}
${kpi('unknown', 'Unknown', t.unknown, 'unk')}
${kpi('alerts', 'Alerts', alerts, 'bad')}
${kpi('pending', `Pending updates (${security} security)`, pending, 'warn')}
</div>
</div>
${standards}
</section>
${groupsSection}
<section class="section" id="servers">
<h2>Servers (${report.servers.length})</h2>
<div class="table-wrap"><table>
${tableHead(SERVER_HEADINGS)}
<tbody>${serversTable}</tbody>
</table></div>
</section>
<section class="section" id="patches">
<h2>Pending updates (${report.patches.length})</h2>
<div class="table-wrap"><table>
${tableHead(PATCH_HEADINGS)}
<tbody>${patchesTable}</tbody>
</table></div>
</section>
</main>
<footer><span>${brand ? `Prepared by ${esc(brand.name)} for ${esc(report.tenant.name)}` : esc(report.tenant.name)}</span><span>Generated ${esc(formatInstant(report.generatedAt))}</span></footer>
</div>
<script type="application/json" id="report-data">${jsonForScript(report)}</script>
</body>
</html>
`;
}
