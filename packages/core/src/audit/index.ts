/**
 * Offline audit tools: verify a hash chain, an export or a signed checkpoint, and render access
 * audit reports, without a store or a Fleet (e.g. an auditor's own machine).
 *
 * @module @fleetward/core/audit
 */
export type { AuditChainProblem, AuditChainVerification } from './chain.js';
export { auditRecordHash, GENESIS_HASH, verifyAuditChain } from './chain.js';
export {
  AUDIT_CHECKPOINT_FORMAT,
  type AuditCheckpoint,
  type AuditCheckpointHead,
  AuditCheckpointHeadSchema,
  AuditCheckpointSchema,
  auditSigningKeyId,
  generateAuditSigningKey,
  signAuditCheckpoint,
  verifyAuditCheckpoint,
} from './checkpoint.js';
export {
  AUDIT_COLUMNS,
  type AuditColumnMismatch,
  auditColumnMismatches,
  auditColumnsOf,
} from './columns.js';
export {
  AUDIT_EXPORT_FORMAT,
  AUDIT_EXPORT_MAX_LINE,
  type AuditExportHeader,
  AuditExportHeaderSchema,
  type AuditLogVerification,
  type AuditProblem,
  type ExportAuditLogInput,
  exportAuditLog,
  type VerifyAuditExportOptions,
  type VerifyAuditRecordsOptions,
  type VerifyStoredAuditRowsOptions,
  verifyAuditExport,
  verifyAuditRecords,
  verifyStoredAuditRows,
} from './export.js';
export {
  type AccessAuditAccess,
  type AccessAuditAction,
  type AccessAuditCommand,
  type AccessAuditCoverage,
  type AccessAuditDenial,
  type AccessAuditInput,
  type AccessAuditKey,
  type AccessAuditPeriod,
  type AccessAuditPerson,
  type AccessAuditReport,
  type AccessAuditRotation,
  type AccessAuditScript,
  type AccessAuditTotals,
  type AccessVia,
  buildAccessAuditReport,
  buildAccessAuditReportAsync,
  type KeyKind,
  type KeyNeeded,
} from './report.js';
export {
  ACCESS_AUDIT_CSV_TABLES,
  type AccessAuditCsvTable,
  type RenderAccessAuditCsvOptions,
  RenderAccessAuditCsvOptionsSchema,
  type RenderAccessAuditHtmlOptions,
  RenderAccessAuditHtmlOptionsSchema,
  renderAccessAuditCsv,
  renderAccessAuditHtml,
  renderAccessAuditJson,
} from './report-render.js';
