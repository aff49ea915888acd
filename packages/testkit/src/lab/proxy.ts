/**
 * A TCP proxy that delays every chunk by a fixed time in each direction: emulated latency for
 * kernels without `netem`. Order is kept and backpressure respected, so SSH runs through it
 * unchanged, only slower.
 */
import { createServer, type Server, Socket } from 'node:net';
import type { LabSlowProxy } from './types.js';

/** Bytes queued in one direction before the sending side is paused. */
const HIGH_WATER = 1024 * 1024;

export async function startDelayProxy(options: {
  listenAddress: string;
  targetAddress: string;
  targetPort: number;
  delayMs: number;
}): Promise<LabSlowProxy> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = new Socket();
    sockets.add(client).add(upstream);
    const forget = () => {
      sockets.delete(client);
      sockets.delete(upstream);
    };
    const destroyBoth = () => {
      client.destroy();
      upstream.destroy();
      forget();
    };
    client.on('error', destroyBoth).on('close', destroyBoth);
    upstream.on('error', destroyBoth).on('close', destroyBoth);
    // Writes before the connection is up are buffered by the socket.
    upstream.connect(options.targetPort, options.targetAddress);
    delayPipe(client, upstream, options.delayMs);
    delayPipe(upstream, client, options.delayMs);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.listenAddress, port: 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no TCP address');
  let closed: Promise<void> | undefined;
  return {
    address: options.listenAddress,
    port: address.port,
    delayMs: options.delayMs,
    close() {
      closed ??= new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}

function delayPipe(from: Socket, to: Socket, delayMs: number): void {
  let queued = 0;
  let ending = false;
  let last = 0;
  const release = (at: number, action: () => void) => {
    // Timers with equal or increasing deadlines fire in order; `last` keeps them increasing.
    last = Math.max(at, last);
    setTimeout(action, Math.max(0, last - Date.now()));
  };
  from.on('data', (chunk: Buffer) => {
    queued += chunk.length;
    if (queued > HIGH_WATER) from.pause();
    release(Date.now() + delayMs, () => {
      queued -= chunk.length;
      if (!to.destroyed) to.write(chunk);
      if (queued <= HIGH_WATER && from.isPaused() && !ending) from.resume();
    });
  });
  from.on('end', () => {
    ending = true;
    release(Date.now() + delayMs, () => {
      if (!to.destroyed) to.end();
    });
  });
}
