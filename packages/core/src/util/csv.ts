/**
 * The one CSV writer of every report (compliance, access audit): RFC 4180 records made safe to
 * open in a spreadsheet. Report cells carry text from managed servers and from users (server and
 * package names, key comments, reasons), so every cell is treated as hostile.
 */

/** A value a CSV column can hold; `null` and `undefined` become an empty cell. */
export type CsvValue = string | number | boolean | null | undefined;

/** One column of a CSV table: its header and how a row gives its cell. */
export type CsvColumn<T> = readonly [header: string, value: (row: T) => CsvValue];

/**
 * Characters that make a spreadsheet (Excel, LibreOffice, Google Sheets) read a cell as a
 * formula or a DDE command when they open it: `=`, `+`, `-`, `@`, and tab / CR, which some of them
 * strip before looking at the next character (OWASP "CSV injection").
 */
const FORMULA_START = new Set(['=', '+', '-', '@', '\t', '\r']);

/**
 * Characters a spreadsheet may use to split cells when it guesses or is told the separator, and
 * line breaks, which start a new row. A cell holding one of these followed by a formula start
 * is refused the benefit of the doubt: spreadsheets honour the quotes we always write, but a
 * value built to open a formula after a `;` or a tab is hostile whatever the reader does.
 */
const SEPARATORS = new Set([',', ';', '\t', '|', '\r', '\n']);

/** Skipped before looking at the first significant character: spreadsheets trim them. */
const IGNORABLE = /[\s"']/u;

/**
 * A number written the way a spreadsheet reads one (`-3`, `+1.5`, `2e-7`). It cannot call a
 * function or reach another cell, so it stays a number the reader can sum instead of text with
 * a `'` in front. Anything more (`-3+A1`, `-2+3+cmd|'/C calc'!A0`) is not matched.
 */
const PLAIN_NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Whether `text`, from `from` on, starts (after trim-able characters) with a formula start. */
function formulaAt(text: string, from: number): boolean {
  let i = from;
  // Tab and CR are formula starts themselves, so they end the skip rather than being skipped.
  while (i < text.length && text[i] !== '\t' && text[i] !== '\r' && IGNORABLE.test(text[i]!)) i++;
  return i < text.length && FORMULA_START.has(text[i]!);
}

/**
 * Whether a spreadsheet could run `text` as a formula: its first significant character, or the
 * first one after any separator, is a formula start, and it is not a plain number.
 */
export function isFormulaLike(text: string): boolean {
  if (PLAIN_NUMBER.test(text)) return false;
  if (formulaAt(text, 0)) return true;
  for (let i = 0; i < text.length; i++) {
    if (SEPARATORS.has(text[i]!) && formulaAt(text, i + 1)) return true;
  }
  return false;
}

/**
 * Encodes one CSV cell. Every cell is quoted, so a `,`, `;`, tab or line break stays inside it
 * whatever separator the reader splits on; inner quotes are doubled (RFC 4180). A cell a
 * spreadsheet could run as a formula ({@link isFormulaLike}) gets a leading `'`, which makes
 * spreadsheets show it as text; the cost is a visible `'` on the rare legitimate value that looks
 * like one. Plain numbers (`-3`) are written as they are.
 */
export function csvCell(value: CsvValue): string {
  let text = value === null || value === undefined ? '' : String(value);
  if (isFormulaLike(text)) text = `'${text}`;
  return `"${text.replaceAll('"', '""')}"`;
}

/** One CSV record: the cells, comma-separated, ended by CRLF (the last record too). */
export function csvRow(values: readonly CsvValue[]): string {
  return `${values.map(csvCell).join(',')}\r\n`;
}

/**
 * A table as CSV: a header row of the column names, then one record per row in the given order.
 * Records end in CRLF, the final one too, so concatenated exports stay well-formed.
 */
export function csvTable<T>(columns: readonly CsvColumn<T>[], rows: readonly T[]): string {
  const lines = [csvRow(columns.map(([header]) => header))];
  for (const row of rows) lines.push(csvRow(columns.map(([, value]) => value(row))));
  return lines.join('');
}
