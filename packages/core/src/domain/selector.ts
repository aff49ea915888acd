import { z } from 'zod';
import { IdSchema, LabelKeySchema, LabelsSchema, LabelValueSchema, ProviderSchema } from './common.js';

export const LabelExpressionSchema = z.strictObject({
  key: LabelKeySchema,
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
  values: z.array(LabelValueSchema).optional(),
});
export type LabelExpression = z.infer<typeof LabelExpressionSchema>;

/**
 * Chooses servers. All given criteria must hold (AND); within a list any entry may match (OR).
 * An empty selector matches nothing: to mean every server say `all: true`, so that a forgotten
 * field can never widen a patch run to the whole fleet.
 */
export const ServerSelectorSchema = z
  .strictObject({
    all: z.boolean().optional(),
    ids: z.array(IdSchema).optional(),
    providers: z.array(ProviderSchema).optional(),
    accountIds: z.array(IdSchema).optional(),
    regions: z.array(z.string().min(1).max(64)).optional(),
    labels: LabelsSchema.optional(),
    expressions: z.array(LabelExpressionSchema).optional(),
  })
  .superRefine((sel, ctx) => {
    for (const [i, e] of (sel.expressions ?? []).entries()) {
      const needsValues = e.operator === 'In' || e.operator === 'NotIn';
      if (needsValues && !e.values?.length) {
        ctx.addIssue({
          code: 'custom',
          path: ['expressions', i, 'values'],
          message: `${e.operator} needs values`,
        });
      }
      if (!needsValues && e.values?.length) {
        ctx.addIssue({
          code: 'custom',
          path: ['expressions', i, 'values'],
          message: `${e.operator} takes no values`,
        });
      }
    }
  });
export type ServerSelector = z.infer<typeof ServerSelectorSchema>;

/** The fields of a server that a selector looks at. */
export interface Selectable {
  id: string;
  provider: string;
  accountId: string;
  region?: string | undefined;
  labels: Record<string, string>;
}

function hasCriteria(sel: ServerSelector): boolean {
  return Boolean(
    sel.ids ||
      sel.providers ||
      sel.accountIds ||
      sel.regions ||
      // An empty label map is no criterion: it must never turn a selector into "every server".
      (sel.labels && Object.keys(sel.labels).length) ||
      sel.expressions?.length,
  );
}

/** Whether `server` is chosen by `selector`. Pure; every store uses it so results agree. */
export function matchesSelector(server: Selectable, selector: ServerSelector): boolean {
  if (!selector.all && !hasCriteria(selector)) return false;
  if (selector.ids && !selector.ids.includes(server.id)) return false;
  if (selector.providers && !selector.providers.includes(server.provider as never)) return false;
  if (selector.accountIds && !selector.accountIds.includes(server.accountId)) return false;
  if (selector.regions && !(server.region !== undefined && selector.regions.includes(server.region)))
    return false;
  // Own keys only: a label named like an Object.prototype member (`toString`) is not "set" on
  // every server, and a server whose labels came from elsewhere cannot inherit a match.
  for (const [k, v] of Object.entries(selector.labels ?? {})) {
    if (!Object.hasOwn(server.labels, k) || server.labels[k] !== v) return false;
  }
  for (const e of selector.expressions ?? []) {
    const has = Object.hasOwn(server.labels, e.key);
    const value = has ? server.labels[e.key] : undefined;
    switch (e.operator) {
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      case 'In':
        if (!has || !e.values!.includes(value!)) return false;
        break;
      case 'NotIn':
        if (has && e.values!.includes(value!)) return false;
        break;
    }
  }
  return true;
}

/** A selector in a few words, for explanations: `env=staging, provider aws`. */
export function describeSelector(selector: ServerSelector): string {
  const parts: string[] = [];
  if (selector.all) parts.push('all servers');
  if (selector.ids)
    parts.push(`id ${selector.ids.slice(0, 5).join('|')}${selector.ids.length > 5 ? '|…' : ''}`);
  if (selector.providers) parts.push(`provider ${selector.providers.join('|')}`);
  if (selector.accountIds) parts.push(`account ${selector.accountIds.join('|')}`);
  if (selector.regions) parts.push(`region ${selector.regions.join('|')}`);
  for (const [k, v] of Object.entries(selector.labels ?? {})) parts.push(`${k}=${v}`);
  for (const e of selector.expressions ?? []) {
    parts.push(e.values ? `${e.key} ${e.operator} (${e.values.join(',')})` : `${e.key} ${e.operator}`);
  }
  return parts.length ? parts.join(', ') : 'no server';
}
