import { z } from 'zod';

/** Identifiers: 1–128 characters of letters, digits and `._:-`, starting with a letter or digit. */
export const IdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/, 'must be 1-128 characters of letters, digits and . _ : -');
export type Id = z.infer<typeof IdSchema>;

/** A UTC instant as an ISO-8601 string with a `Z` or offset. */
export const TimestampSchema = z.iso.datetime({ offset: true });

/** Human-readable names: printable, no control characters. */
export const NameSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters');

const LABEL_KEY = /^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;

/** Labels follow the Kubernetes rules: `[prefix/]name` keys, short plain values. */
export const LabelKeySchema = z.string().regex(LABEL_KEY, 'invalid label key');
export const LabelValueSchema = z.string().regex(LABEL_VALUE, 'invalid label value');
export const LabelsSchema = z.record(LabelKeySchema, LabelValueSchema);
export type Labels = z.infer<typeof LabelsSchema>;

export const ProviderSchema = z.enum(['aws', 'azure', 'gcp', 'ssh', 'winrm', 'local']);
export type Provider = z.infer<typeof ProviderSchema>;

/** Fields every stored entity carries. `version` increases by one on every write. */
export const EntityMetaSchema = z.object({
  tenantId: IdSchema,
  id: IdSchema,
  version: z.number().int().positive(),
  createdAt: TimestampSchema,
  updatedAt: TimestampSchema,
});
export type EntityMeta = z.infer<typeof EntityMetaSchema>;

/** Hostname (RFC 1123), IPv4 or IPv6 literal. Never anything a shell would read as syntax. */
export const AddressSchema = z.union([
  z.ipv4(),
  z.ipv6(),
  z
    .string()
    .max(253)
    .regex(
      /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/,
      'must be a hostname or an IP address',
    ),
]);
