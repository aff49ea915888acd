/**
 * Static HTTP server for the lab's repositories, bound only to the lab's gateway address, so
 * hosts reach it over their (cuttable) network like a real mirror and nothing else can.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

const CONTENT_TYPES: Record<string, string> = {
  '.deb': 'application/vnd.debian.binary-package',
  '.rpm': 'application/x-rpm',
  '.gz': 'application/gzip',
  '.xz': 'application/x-xz',
  '.zst': 'application/zstd',
  '.xml': 'text/xml',
};

const MAX_LOG = 10_000;

export interface RepoRequest {
  method: string;
  path: string;
  status: number;
}

export class LabRepoServer {
  readonly requests: RepoRequest[] = [];
  private readonly roots = new Map<string, string>();
  private readonly server: Server;
  private port = 0;

  constructor(private readonly address: string) {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    this.server.keepAliveTimeout = 2000;
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.address, port: 0, exclusive: true }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
    return this.port;
  }

  /** Serves `dir` under `/<name>/`; switching dirs is how a publish becomes visible at once. */
  setRoot(name: string, dir: string): void {
    this.roots.set(name, dir);
  }

  url(name: string): string {
    return `http://${this.address}:${this.port}/${name}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const status = await this.respond(method, path, res);
    if (this.requests.length >= MAX_LOG) this.requests.shift();
    this.requests.push({ method, path, status });
  }

  private async respond(method: string, path: string, res: ServerResponse): Promise<number> {
    if (method !== 'GET' && method !== 'HEAD') return end(res, 405);
    let segments: string[];
    try {
      segments = decodeURIComponent(path).split('/').filter(Boolean);
    } catch {
      return end(res, 400);
    }
    if (segments.some((s) => s === '..' || s === '.' || s.includes('\0'))) return end(res, 400);
    const [name, ...rest] = segments;
    const root = name === undefined ? undefined : this.roots.get(name);
    if (root === undefined || rest.length === 0) return end(res, 404);
    const file = join(root, ...rest);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) return end(res, 404);
    const ext = /\.[a-z0-9]+$/.exec(file)?.[0] ?? '';
    // Always 200, never 304: cached builds are reused across publishes, so a newer publish can
    // carry older mtimes and If-Modified-Since would keep stale metadata on the hosts.
    res.writeHead(200, {
      'Content-Type': CONTENT_TYPES[ext] ?? 'application/octet-stream',
      'Content-Length': info.size,
      'Cache-Control': 'no-store',
    });
    if (method === 'HEAD') {
      res.end();
      return 200;
    }
    await new Promise<void>((resolve, reject) => {
      const stream = createReadStream(file);
      stream.on('error', reject);
      res.on('close', resolve);
      stream.pipe(res);
    });
    return 200;
  }
}

function end(res: ServerResponse, status: number): number {
  res.writeHead(status, { 'Content-Length': 0 });
  res.end();
  return status;
}
