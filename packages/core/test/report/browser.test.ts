import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describeIfAvailable } from '@fleetward/testkit';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  type ComplianceReportData,
  type RenderHtmlOptions,
  renderHtml,
  renderJson,
} from '../../src/report/index.js';
import { HOSTILE, hostileReport, sampleReport } from './sample.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../../../../test-artifacts/', import.meta.url));
const SUITE = 'renderHtml in Chromium';

/**
 * Escaping is only proven by a real HTML parser, so this suite drives Debian's Chromium. Where it
 * is missing the suite is skipped loudly; under FLEETWARD_REQUIRE_LAB=1 (CI) it fails instead, so
 * CI can never pass by skipping it.
 */
const chromiumMissing = existsSync(CHROMIUM)
  ? undefined
  : `${CHROMIUM} is missing (install: apt-get install -y --no-install-recommends chromium)`;

const LOGO =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 40" width="40" height="40">' +
  '<rect width="40" height="40" rx="9" fill="#ffffff"/>' +
  '<path d="M9 29V11h4l7 11 7-11h4v18h-4V18l-7 10-7-10v11z" fill="#0b5cad"/></svg>';

const HOSTILE_LOGO =
  '<svg xmlns="http://www.w3.org/2000/svg" onload="window.top.__pwned=\'logo\'" width="40" height="40">' +
  '<script>window.top.__pwned="logo-script"</script><rect width="40" height="40" fill="#c00"/>' +
  '<image href="http://127.0.0.1:9/x.png" width="10" height="10"/></svg>';

// The page functions below run inside Chromium. The project compiles without the DOM lib (adding
// it would leak browser globals into every Node file), so the little DOM they use is declared here,
// scoped to this module.
interface DomNode {
  readonly tagName: string;
  readonly id: string;
  readonly type: string;
  readonly textContent: string | null;
  readonly parentElement: DomNode | null;
  readonly attributes: Iterable<{ readonly name: string }>;
  getAttribute(name: string): string | null;
}
interface DomList extends Iterable<DomNode> {
  readonly length: number;
}
interface ImageNode {
  readonly complete: boolean;
  readonly naturalWidth: number;
}
declare const document: {
  readonly title: string;
  readonly scripts: DomList;
  readonly images: DomList;
  querySelector(selector: string): DomNode | null;
  querySelectorAll(selector: string): DomList;
};
declare const window: { readonly __pwned?: string };
declare function getComputedStyle(element: unknown): {
  readonly backgroundColor: string;
  readonly breakBefore: string;
};

interface Opened {
  page: Page;
  url: string;
  /** Every request but the report file itself: must stay empty. */
  requests: string[];
  problems: string[];
}

describeIfAvailable(SUITE, chromiumMissing, () => {
  let profile: string;
  let files: string;
  let context: BrowserContext;

  beforeAll(async () => {
    // A fresh profile per run: nothing cached or configured from an earlier run can hide a request.
    profile = await mkdtemp(join(tmpdir(), 'fleetward-report-profile-'));
    files = await mkdtemp(join(tmpdir(), 'fleetward-report-html-'));
    await mkdir(ARTIFACTS, { recursive: true });
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 900 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  afterAll(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    if (files) await rm(files, { recursive: true, force: true });
  });

  async function open(name: string, html: string): Promise<Opened> {
    const path = join(files, name);
    await writeFile(path, html);
    const url = pathToFileURL(path).href;
    const page = await context.newPage();
    const requests: string[] = [];
    const problems: string[] = [];
    page.on('request', (r) => {
      if (r.url() !== url) requests.push(r.url());
    });
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console.${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('dialog', (d) => {
      problems.push(`dialog: ${d.message()}`);
      void d.dismiss();
    });
    await page.goto(url, { waitUntil: 'load' });
    return { page, url, requests, problems };
  }

  const jsonOf = (data: ComplianceReportData) => JSON.parse(renderJson(data)) as ComplianceReportData;

  it('renderHtml — renders offline in Chromium with the JSON report totals, and screenshots', async () => {
    const data = sampleReport();
    const options: RenderHtmlOptions = {
      brand: { name: 'Northwind Managed Services', color: '#0b5cad', logoSvg: LOGO },
    };
    const { page, requests, problems } = await open('report.html', renderHtml(data, options));
    const json = jsonOf(data);

    expect(problems).toEqual([]);
    expect(requests).toEqual([]);
    expect(await page.title()).toBe('Patch compliance report — Acme Corp');

    for (const metric of ['servers', 'compliant', 'nonCompliant', 'unknown'] as const) {
      const kpi = page.locator(`[data-metric="${metric}"]`);
      // biome-ignore lint/performance/useDomNodeTextContent: the rendered text is what a reader sees.
      expect(Number(await kpi.locator('.kpi-value').innerText()), metric).toBe(json.totals[metric]);
      expect(Number(await kpi.getAttribute('data-value')), metric).toBe(json.totals[metric]);
    }
    expect(await page.locator('.donut .donut-value').textContent()).toBe(
      `${Math.round((json.totals.compliant / json.totals.servers) * 1000) / 10}%`,
    );
    const arcs = await page
      .locator('.donut circle.arc')
      .evaluateAll((els) =>
        els.map((e) => [e.getAttribute('data-status'), Number(e.getAttribute('data-value'))]),
      );
    expect(arcs).toEqual([
      ['compliant', json.totals.compliant],
      ['non-compliant', json.totals.nonCompliant],
      ['unknown', json.totals.unknown],
    ]);

    const bars = await page.locator('g.bar').evaluateAll((els) =>
      els.map((e) => ({
        by: e.getAttribute('data-by'),
        key: e.getAttribute('data-key'),
        total: Number(e.getAttribute('data-total')),
        compliant: Number(e.getAttribute('data-compliant')),
        nonCompliant: Number(e.getAttribute('data-non-compliant')),
        unknown: Number(e.getAttribute('data-unknown')),
        shown: e.querySelector('.bar-count')?.textContent,
      })),
    );
    const expected = json.groups.map((g) => ({ ...g, shown: `${g.compliant} of ${g.total} compliant` }));
    const order = (x: { by: string | null; key: string | null }) => `${x.by}/${x.key}`;
    expect([...bars].sort((a, b) => order(a).localeCompare(order(b)))).toEqual(
      [...expected].sort((a, b) => order(a).localeCompare(order(b))),
    );

    const embedded = await page.locator('#report-data').textContent();
    expect(JSON.parse(embedded ?? '')).toEqual(json);

    expect(await page.locator('#servers tbody tr[data-server-id]').count()).toBe(json.servers.length);
    expect(await page.locator('#patches tbody tr[data-server-id]').count()).toBe(json.patches.length);
    const alertRows = page.locator('#servers tr.alert');
    expect(await alertRows.count()).toBe(json.servers.filter((s) => s.alert).length);
    const highlight = await alertRows
      .first()
      .locator('td')
      .first()
      .evaluate((td) => getComputedStyle(td).backgroundColor);
    expect(highlight).not.toMatch(/^rgba?\(0, 0, 0, 0\)$|^rgb\(255, 255, 255\)$/);

    // The one hostile server in the sample shows its name as text.
    expect(await page.locator('tr[data-server-id="srv-build-01"] .server-name').textContent()).toBe(
      HOSTILE.script,
    );
    expect(await page.evaluate(() => window.__pwned)).toBeUndefined();

    const logo = await page
      .locator('.brand img')
      .evaluate(
        (img) => (img as unknown as ImageNode).complete && (img as unknown as ImageNode).naturalWidth,
      );
    expect(logo).toBe(40);

    await page.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });
    await page.close();
  });

  it('renderHtml — in Chromium, hostile strings show as text and nothing injected exists or runs', async () => {
    const data = hostileReport();
    const html = renderHtml(data, { brand: { name: HOSTILE.img, logoSvg: HOSTILE_LOGO } });
    const { page, requests, problems } = await open('hostile.html', html);
    // Give an onerror / onload handler, had one been injected, time to run.
    await page.waitForTimeout(200);

    expect(problems).toEqual([]);
    expect(requests).toEqual([]);
    expect(await page.evaluate(() => window.__pwned)).toBeUndefined();

    const dom = await page.evaluate(() => ({
      scripts: [...document.scripts].map((s) => `${s.type}#${s.id}`),
      images: document.images.length,
      styles: document.querySelectorAll('style').length,
      svgs: [...document.querySelectorAll('svg')].map(
        (s) => s.getAttribute('class') ?? s.parentElement?.tagName,
      ),
      dangerous: document.querySelectorAll(
        'iframe,object,embed,base,form,link:not([rel=icon]),meta[http-equiv=refresh]',
      ).length,
      handlers: [...document.querySelectorAll('*')].flatMap((el) =>
        [...el.attributes]
          .filter((a) => a.name.toLowerCase().startsWith('on'))
          .map((a) => `${el.tagName}@${a.name}`),
      ),
      title: document.title,
      h1: document.querySelector('h1')?.textContent,
      brand: document.querySelector('.brand span')?.textContent,
      scope: document.querySelector('.meta dd')?.textContent,
    }));
    expect(dom).toEqual({
      scripts: ['application/json#report-data'],
      images: 1,
      styles: 1,
      svgs: ['donut', 'FIGURE', 'FIGURE', 'FIGURE', 'FIGURE', 'FIGURE'],
      dangerous: 0,
      handlers: [],
      title: `${HOSTILE.script} — ${HOSTILE.style}`,
      h1: HOSTILE.script,
      brand: HOSTILE.img,
      scope: `${HOSTILE.style} (${HOSTILE.img})`,
    });

    const names = await page.locator('.server-name').allTextContents();
    expect(names).toEqual(data.servers.map((s) => s.name));
    expect(await page.locator('#servers tbody tr').first().locator('.reasons li').allTextContents()).toEqual(
      Object.values(HOSTILE),
    );
    const firstPatch = await page.locator('#patches tbody tr').first().locator('td').allTextContents();
    expect(firstPatch.slice(0, 6)).toEqual([
      HOSTILE.img,
      HOSTILE.script,
      HOSTILE.style,
      HOSTILE.json,
      HOSTILE.svg,
      HOSTILE.img,
    ]);
    const label = await page.locator('g.bar[data-by="project"] .bar-label title').textContent();
    expect(label).toBe(HOSTILE.json);
    expect(await page.locator('g.bar[data-by="project"]').getAttribute('data-key')).toBe(HOSTILE.json);
    // Visible to a reader, not only present in the DOM.
    await expect(page.getByText(HOSTILE.script, { exact: true }).first().isVisible()).resolves.toBe(true);

    expect(JSON.parse((await page.locator('#report-data').textContent()) ?? '')).toEqual(jsonOf(data));

    // The hostile logo is an image: its scripts did not run (checked above) and it still renders.
    const logo = await page
      .locator('.brand img')
      .evaluate(
        (img) => (img as unknown as ImageNode).complete && (img as unknown as ImageNode).naturalWidth,
      );
    expect(logo).toBe(40);
    await page.close();
  });

  it('renderHtml — prints to PDF, each section starting a new page', async () => {
    const data = sampleReport();
    const { page, problems } = await open('print.html', renderHtml(data));
    await page.emulateMedia({ media: 'print' });
    const breaks = await page
      .locator('section.section')
      .evaluateAll((els) => els.map((e) => `${e.id}:${getComputedStyle(e).breakBefore}`));
    expect(breaks).toEqual(['summary:auto', 'groups:page', 'servers:page', 'patches:page']);
    const pdf = await page.pdf({ format: 'A4', printBackground: true });
    await writeFile(join(ARTIFACTS, 'report.pdf'), pdf);
    expect(pdf.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    const pages = pdf.toString('latin1').match(/\/Type\s*\/Page\b(?!s)/g) ?? [];
    expect(pages.length).toBeGreaterThanOrEqual(4);
    expect(problems).toEqual([]);
    await page.close();
  });
});
