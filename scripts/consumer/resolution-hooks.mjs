/**
 * Module customization hooks (`module.register`) that append the URL of every module Node
 * resolves to the file named in `initialize`'s data, one per line. Used by
 * `scripts/consumer-check.mjs` to see what an import really loads. They run on Node's hooks
 * thread, so they write synchronously: nothing is lost when the program exits.
 */
import { appendFileSync } from 'node:fs';

let logPath;

/** Receives `{ logPath }` from `register`. */
export function initialize(data) {
  logPath = data.logPath;
}

/** Resolves as Node would, then records the result. */
export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  appendFileSync(logPath, `${resolved.url}\n`);
  return resolved;
}
