import type { Logger } from '@fleetward/core';

/** One record as a logger received it: its level, its fields (child bindings merged in) and its message. */
export interface CapturedRecord {
  level: 'error' | 'warn' | 'info' | 'debug';
  fields: Record<string, unknown>;
  msg: string | undefined;
}

/** A {@link Logger} that keeps every record, with `child` as pino has it. */
export interface CapturingLogger extends Logger {
  records: CapturedRecord[];
  /** Records whose message is `msg`. */
  find(msg: string): CapturedRecord[];
  /** Every record as one JSON text, the way a log shipper would see them. */
  text(): string;
}

export function capturingLogger(): CapturingLogger {
  const records: CapturedRecord[] = [];
  const make = (bindings: Record<string, unknown>): Logger => {
    const at =
      (level: CapturedRecord['level']) =>
      (first: object | string, second?: string): void => {
        const [fields, msg] = typeof first === 'string' ? [{}, first] : [first, second];
        records.push({ level, fields: { ...bindings, ...(fields as Record<string, unknown>) }, msg });
      };
    return {
      error: at('error'),
      warn: at('warn'),
      info: at('info'),
      debug: at('debug'),
      child: (more) => make({ ...bindings, ...more }),
    };
  };
  return {
    ...make({}),
    records,
    find: (msg) => records.filter((r) => r.msg === msg),
    text: () => JSON.stringify(records),
  };
}

/** Every string in `value`, keys included. */
export function stringsOf(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(stringsOf);
  if (value && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) => [k, ...stringsOf(v)]);
  }
  return [];
}

/** Records (fields, bindings, messages, and their JSON) that mention `secret` anywhere. */
export function mentioning(records: readonly CapturedRecord[], secret: string): CapturedRecord[] {
  return records.filter(
    (r) => JSON.stringify(r).includes(secret) || stringsOf(r).some((text) => text.includes(secret)),
  );
}
