import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { type ComplianceReportData, REPORT_CSP, renderHtml, renderJson } from '../../src/report/index.js';
import { HOSTILE, hostileReport, sampleReport } from './sample.js';

const count = (text: string, needle: string) => text.toLowerCase().split(needle.toLowerCase()).length - 1;

/** The text of the `#report-data` block, found the way an HTML parser would: up to the first `</script`. */
function embeddedJson(html: string): string {
  const open = '<script type="application/json" id="report-data">';
  const start = html.indexOf(open);
  expect(start).toBeGreaterThan(0);
  const end = html.toLowerCase().indexOf('</script', start);
  return html.slice(start + open.length, end);
}

describe('renderHtml', () => {
  it('renderHtml — escapes hostile strings in every field: no markup but ours survives', () => {
    const html = renderHtml(hostileReport(), { brand: { name: HOSTILE.img } });
    // Exactly our own elements: one JSON script, one stylesheet, no images, no inline SVG from input.
    expect(count(html, '<script')).toBe(1);
    expect(count(html, '</script')).toBe(1);
    expect(count(html, '<style')).toBe(1);
    expect(count(html, '</style')).toBe(1);
    expect(count(html, '<img')).toBe(0);
    expect(count(html, '<!--')).toBe(0);
    expect(html).not.toContain('<svg onload');
    expect(html).toContain('&lt;script&gt;window.__pwned=&quot;script&quot;&lt;/script&gt;');
    expect(html).toContain('&quot;&gt;&lt;img src=x onerror=&quot;window.__pwned=&#39;img&#39;&quot;&gt;');
    expect(html).toContain('&lt;/style&gt;&lt;script&gt;');
  });

  it('renderHtml — embeds the JSON report, escaped against </script> and <!--', () => {
    const data = hostileReport();
    const block = embeddedJson(renderHtml(data));
    expect(block).not.toMatch(/[<>&]/);
    expect(block).toContain('\\u003c/script\\u003e\\u003c!--');
    expect(JSON.parse(block)).toEqual(JSON.parse(renderJson(data)));
  });

  it('renderHtml — embeds numbers as data attributes equal to the JSON totals', () => {
    const data = sampleReport();
    const html = renderHtml(data);
    const totals = (JSON.parse(renderJson(data)) as ComplianceReportData).totals;
    expect(html).toContain(
      `id="summary" data-servers="${totals.servers}" data-compliant="${totals.compliant}" ` +
        `data-non-compliant="${totals.nonCompliant}" data-unknown="${totals.unknown}"`,
    );
    expect(html).toContain(`data-metric="compliant" data-value="${totals.compliant}"`);
    expect(html).toContain('data-by="project" data-key="Storefront" data-total="4" data-compliant="3"');
  });

  it('renderHtml — declares the strict CSP before anything it governs', () => {
    const html = renderHtml(sampleReport());
    const csp = `<meta http-equiv="Content-Security-Policy" content="${REPORT_CSP.replaceAll("'", '&#39;')}">`;
    expect(REPORT_CSP.startsWith("default-src 'none'; style-src 'unsafe-inline'; img-src data:")).toBe(true);
    expect(html.indexOf(csp)).toBeGreaterThan(0);
    expect(html.indexOf(csp)).toBeLessThan(html.indexOf('<title>'));
    expect(html.indexOf(csp)).toBeLessThan(html.indexOf('<style>'));
    // Nothing that could fetch: no external URLs at all.
    expect(html).not.toMatch(/(?:src|href)="(?!data:)/);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/@import|url\(/);
  });

  it('renderHtml — has a print stylesheet with page breaks between sections', () => {
    const html = renderHtml(sampleReport());
    expect(html).toContain('@media print{');
    expect(html).toContain('.section+.section{break-before:page}');
    expect(count(html, '<section class="section"')).toBe(4);
  });

  it('renderHtml — white-labels with a validated brand and names no vendor without one', () => {
    const plain = renderHtml(sampleReport());
    expect(plain).not.toMatch(/fleetward/i);
    const branded = renderHtml(sampleReport(), { brand: { name: 'Northwind MSP', color: '#0B5CAD' } });
    expect(branded).toContain('--accent:#0B5CAD;');
    expect(branded).toContain('Prepared by Northwind MSP for Acme Corp');
    for (const color of ['red', '#0b5cad;}</style><script>', 'url(https://x)', '#12345']) {
      expect(() => renderHtml(sampleReport(), { brand: { name: 'x', color } })).toThrow(ValidationError);
    }
  });

  it('renderHtml — shows a hostile logo only as a data: image, where it cannot script', () => {
    const logoSvg =
      '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script>' +
      '<image href="https://evil.example/x.png"/></svg>';
    const html = renderHtml(sampleReport(), { brand: { name: 'x', logoSvg } });
    expect(count(html, '<img')).toBe(1);
    expect(html).toContain(
      `<img src="data:image/svg+xml;base64,${Buffer.from(logoSvg).toString('base64')}" alt="">`,
    );
    expect(html).not.toContain('alert(');
    expect(() => renderHtml(sampleReport(), { brand: { name: 'x', logoSvg: '<b>not svg</b>' } })).toThrow(
      ValidationError,
    );
  });

  it('renderHtml — renders an empty report without dividing by zero', () => {
    const data = sampleReport();
    data.servers = [];
    data.patches = [];
    data.groups = [];
    data.totals = { servers: 0, compliant: 0, nonCompliant: 0, unknown: 0 };
    const html = renderHtml(data);
    expect(html).toContain('No servers</text>');
    expect(html).toContain('No servers in scope.');
    expect(html).toContain('No pending updates.');
    expect(html).not.toContain('NaN');
    expect(html).not.toContain('id="groups"');
  });

  it('renderHtml — derives a patch age from firstSeenAt when ageDays is absent', () => {
    const html = renderHtml(sampleReport());
    // openssl: first seen 2025-06-09T06:00Z, report generated 2025-06-30T09:15Z.
    expect(html).toMatch(
      /data-age-days="21"><td class="name">web-03\.acme\.example<\/td><td class="pkg">openssl</,
    );
  });
});
