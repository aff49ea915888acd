import type { z } from 'zod';
import { ValidationError, type ValidationIssue } from '../errors.js';

/** Converts zod issues into our field-path issues. */
export function toIssues(error: z.ZodError): ValidationIssue[] {
  return error.issues.map((issue) => ({
    path: issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p)),
    message: issue.message,
    code: issue.code,
  }));
}

/**
 * Parses `input` with `schema`, throwing a {@link ValidationError} naming `subject` and every
 * bad field path. Returns the parsed (defaulted, normalised) value.
 */
export function validate<S extends z.ZodType>(schema: S, input: unknown, subject: string): z.output<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new ValidationError(subject, toIssues(result.error));
  return result.data;
}
