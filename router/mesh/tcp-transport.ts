// The daemon's control-plane transport: TCP via node:net. The only file of the
// control plane that touches sockets.

import * as net from 'node:net';
import type { ByteStream, StreamHandlers, Transport } from './transport';

const DIAL_TIMEOUT_MS = 10_000;

class TcpStream implements ByteStream {
  readonly remoteAddress: string;
  readonly remoteHost: string;
  private handlers: StreamHandlers | null = null;
  private closed = false;
  private early: Uint8Array[] = [];

  constructor(private readonly socket: net.Socket) {
    const host = socket.remoteAddress ?? '?';
    // IPv4 clients of a dual-stack listener show up as ::ffff:a.b.c.d.
    this.remoteHost = host.startsWith('::ffff:') ? host.slice(7) : host;
    const port = socket.remotePort ?? 0;
    this.remoteAddress = this.remoteHost.includes(':') ? `[${this.remoteHost}]:${port}` : `${this.remoteHost}:${port}`;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.on('data', (chunk: Buffer) => {
      if (this.handlers) this.handlers.onData(chunk);
      else this.early.push(chunk);
    });
    let error: Error | null = null;
    socket.on('error', (err) => { error = err; });
    socket.on('close', () => {
      if (this.closed) return;
      this.closed = true;
      this.handlers?.onClose(error);
    });
  }

  get pendingBytes(): number {
    return this.socket.writableLength;
  }

  start(handlers: StreamHandlers): void {
    this.handlers = handlers;
    const early = this.early;
    this.early = [];
    for (const chunk of early) handlers.onData(chunk);
  }

  write(chunk: Uint8Array): void {
    if (!this.closed) this.socket.write(chunk);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Nothing more is read: a peer (or stranger) still streaming at us fills its own
    // send buffer, not our memory, for the moments until destroy().
    this.socket.pause();
    // end() lets a final REFUSE message reach the peer; destroy() if it does not drain soon.
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2_000).unref();
  }
}

export class TcpTransport implements Transport {
  private server: net.Server | null = null;
  private readonly dialing = new Set<net.Socket>();

  /** `dialFrom`: the local address outbound connections leave from (many peers in one namespace, scripts/bench-memory); default the kernel's choice. */
  constructor(private readonly bindHost: string = '::', private readonly dialFrom?: string) {}

  listen(port: number, onAccept: (stream: ByteStream) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = net.createServer((socket) => onAccept(new TcpStream(socket)));
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(new Error(err.code === 'EADDRINUSE'
          ? `TCP port ${port} is already in use (is another weave router running in this network namespace?)`
          : `cannot listen on TCP port ${port}: ${err.message}`));
      });
      server.listen({ port, host: this.bindHost, ipv6Only: false }, () => {
        server.removeAllListeners('error');
        server.on('error', () => undefined);
        this.server = server;
        resolve();
      });
    });
  }

  dial(host: string, port: number, done: (error: Error | null, stream: ByteStream | null) => void): void {
    const socket = net.connect({ host, port, ...(this.dialFrom !== undefined ? { localAddress: this.dialFrom } : {}) });
    this.dialing.add(socket);
    let settled = false;
    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      this.dialing.delete(socket);
      socket.setTimeout(0);
      if (err) {
        socket.destroy();
        done(err, null);
      } else {
        done(null, new TcpStream(socket));
      }
    };
    socket.setTimeout(DIAL_TIMEOUT_MS, () => finish(new Error(`timed out after ${DIAL_TIMEOUT_MS} ms`)));
    socket.once('connect', () => finish(null));
    socket.once('error', (err) => finish(err));
  }

  close(): void {
    this.server?.close();
    this.server = null;
    for (const s of this.dialing) s.destroy();
    this.dialing.clear();
  }
}
