/**
 * Shareable compliance / pending-update reports: validated report data in, CSV, JSON or a
 * self-contained HTML file out.
 */
export {
  type ComplianceReportData,
  ComplianceReportDataSchema,
  parseComplianceReportData,
  REPORT_GROUP_DIMENSIONS,
  type ReportGroup,
  type ReportGroupDimension,
  ReportGroupSchema,
  type ReportPatch,
  ReportPatchSchema,
  type ReportScope,
  ReportScopeSchema,
  type ReportServer,
  ReportServerSchema,
  type ReportServerStatus,
  ReportServerStatusSchema,
  type ReportStandard,
  ReportStandardSchema,
  type ReportTotals,
  ReportTotalsSchema,
} from './model.js';
export {
  type CsvTable,
  CsvTableSchema,
  REPORT_CSP,
  type RenderCsvOptions,
  RenderCsvOptionsSchema,
  type RenderHtmlOptions,
  RenderHtmlOptionsSchema,
  type ReportBrand,
  ReportBrandSchema,
  renderCsv,
  renderHtml,
  renderJson,
} from './render.js';
