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

/**
 * Property names that act on an object's prototype instead of naming data: `obj['__proto__'] = x`
 * replaces the prototype, and `constructor` / `prototype` lead to the functions behind it. No key
 * that comes from input (labels, parameters, details) may have one of these names.
 */
export const RESERVED_KEYS = ['__proto__', 'constructor', 'prototype'] as const;
const RESERVED = new Set<string>(RESERVED_KEYS);

/** Whether `key` is one of {@link RESERVED_KEYS}. */
export const isReservedKey = (key: PropertyKey): boolean => typeof key === 'string' && RESERVED.has(key);

const reservedMessage = (key: string) =>
  `${JSON.stringify(key)} is a reserved name and cannot be a key (${RESERVED_KEYS.join(', ')})`;

type RecordDef = z.core.$ZodRecordDef;

/**
 * zod's record drops an own `__proto__` key without a word (`JSON.parse('{"__proto__":1}')` makes
 * one), so `{"labels":{"__proto__":"x"}}` would parse as `{}`, and a selector of `{}` labels
 * selects every server. This record first refuses every reserved key the input owns, with the key
 * as the issue path, then parses as a record does. It is a constructor of its own (not a patched
 * instance) so that copies zod makes (`.describe()`, `.meta()`, `.openapi()`) keep the check.
 */
const ZodPlainRecord = z.core.$constructor('ZodPlainRecord', (inst: z.ZodRecord, def: RecordDef) => {
  z.ZodRecord.init(inst, def);
  const parse = inst._zod.parse;
  inst._zod.parse = (payload, ctx) => {
    const input = payload.value;
    if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
      for (const key of Object.getOwnPropertyNames(input)) {
        if (isReservedKey(key)) {
          payload.issues.push({ code: 'custom', path: [key], message: reservedMessage(key), input, inst });
        }
      }
    }
    return parse(payload, ctx);
  };
});

/**
 * `z.record(key, value)` for maps whose keys come from input: a key named `__proto__`,
 * `constructor` or `prototype` is a validation issue at that key, never dropped or kept.
 */
export function plainRecord<K extends z.core.$ZodRecordKey, V extends z.ZodType>(
  keyType: K,
  valueType: V,
): z.ZodRecord<K, V> {
  return new ZodPlainRecord({ type: 'record', keyType, valueType }) as unknown as z.ZodRecord<K, V>;
}

function reservedKeysIn(value: unknown, path: PropertyKey[], seen: Set<object>, ctx: z.RefinementCtx): void {
  if (typeof value !== 'object' || value === null || seen.has(value)) return;
  seen.add(value);
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      reservedKeysIn(item, [...path, i], seen, ctx);
    });
    return;
  }
  for (const key of Object.getOwnPropertyNames(value)) {
    if (isReservedKey(key))
      ctx.addIssue({ code: 'custom', path: [...path, key], message: reservedMessage(key) });
    else reservedKeysIn((value as Record<string, unknown>)[key], [...path, key], seen, ctx);
  }
}

/**
 * Free-form data (audit and task details, outbox payloads, step results): anything, as long as
 * no object in it, however deep, has a reserved key ({@link RESERVED_KEYS}).
 */
export const PlainDataSchema = z.unknown().superRefine((value, ctx) => {
  reservedKeysIn(value, [], new Set(), ctx);
});

/** A string-keyed record of free-form data: reserved names refused as keys, at any depth. */
export const PlainDataRecordSchema = plainRecord(z.string(), PlainDataSchema);

const LABEL_KEY = /^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;

const labelKey = z.string().regex(LABEL_KEY, 'invalid label key');

/** Labels follow the Kubernetes rules: `[prefix/]name` keys, short plain values. */
export const LabelKeySchema = labelKey.refine((key) => !isReservedKey(key), {
  error: (issue) => reservedMessage(String(issue.input)),
});
export const LabelValueSchema = z.string().regex(LABEL_VALUE, 'invalid label value');
/** `labelKey`, not `LabelKeySchema`: the record already reports a reserved key, once. */
export const LabelsSchema = plainRecord(labelKey, LabelValueSchema);
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
