import type { Logger } from '@fleetward/core';

/** The levels `--log-level` takes, least to most verbose (`off` logs nothing). */
export const LOG_LEVELS = ['off', 'error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * A logger writing one JSON object per line (`time`, `level`, `msg` and the fields, pino's shape)
 * to `write`, for levels up to `level`. The Fleet redacts every record before it gets here.
 */
export function jsonLinesLogger(
  level: LogLevel,
  write: (line: string) => void,
  now: () => Date = () => new Date(),
  bindings: Record<string, unknown> = {},
): Logger {
  const rank = LOG_LEVELS.indexOf(level);
  const at =
    (name: Exclude<LogLevel, 'off'>) =>
    (fieldsOrMessage: object | string, message?: string): void => {
      if (LOG_LEVELS.indexOf(name) > rank || rank === 0) return;
      const fields = typeof fieldsOrMessage === 'string' ? {} : fieldsOrMessage;
      const msg = typeof fieldsOrMessage === 'string' ? fieldsOrMessage : message;
      write(
        `${JSON.stringify({ time: now().toISOString(), level: name, ...bindings, ...fields, ...(msg ? { msg } : {}) })}\n`,
      );
    };
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: (more) => jsonLinesLogger(level, write, now, { ...bindings, ...more }),
  };
}
