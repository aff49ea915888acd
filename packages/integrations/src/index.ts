export { createEmailDelivery } from './email-delivery.js';
export { IntegrationError, type IntegrationErrorOptions } from './errors.js';
export { type FetchLike, idempotencyTag } from './http.js';
export {
  type AdfDoc,
  type AdfNode,
  buildJiraDescription,
  createJiraIntegration,
  type JiraIntegrationOptions,
  plainTextToAdf,
} from './jira.js';
export {
  createServiceNowIntegration,
  type ServiceNowIntegrationOptions,
  toServiceNowDateTime,
} from './servicenow.js';
export { createSmtpSender, type SmtpSenderOptions } from './smtp.js';
export { createTicketDelivery } from './ticket-delivery.js';
