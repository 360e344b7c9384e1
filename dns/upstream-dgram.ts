// An upstream socket (dns/datagram-port.ts) over node:dgram, for when the
// composition root gives the forwarder no batched one (no addon, tests): one
// send call per query, one event per answer. Adapter: owns one socket and the
// queries waiting for its connect() to complete.

import dgram from 'node:dgram';
import { familyOfCanonical } from '../common/ip';
import type { OpenUpstreamSocket, UpstreamSocket, UpstreamSocketEvents } from './datagram-port';

class DgramUpstreamSocket implements UpstreamSocket {
  private readonly sock: dgram.Socket;
  /** Queries sent before connect() completed, sent when it does. */
  private queue: Buffer[] | null = [];
  private closed = false;

  constructor(host: string, port: number, private readonly events: UpstreamSocketEvents) {
    this.sock = dgram.createSocket(familyOfCanonical(host) === 6 ? 'udp6' : 'udp4');
    this.sock.on('error', (err) => this.fail(err));
    this.sock.on('message', (msg, rinfo) => {
      if (!this.closed) this.events.message(msg, rinfo.address, rinfo.port);
    });
    // connect() binds to a fresh ephemeral port chosen by the kernel at random.
    this.sock.connect(port, host, (err?: Error) => {
      // A failed connect leaves the socket unconnected: send() would then throw.
      if (err) {
        this.fail(err);
        return;
      }
      const queued = this.queue ?? [];
      this.queue = null;
      for (const out of queued) this.transmit(out);
    });
  }

  send(bytes: Uint8Array): void {
    if (this.closed) return;
    const out = Buffer.from(bytes);
    if (this.queue !== null) this.queue.push(out);
    else this.transmit(out);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = null;
    try {
      this.sock.close();
    } catch {
      // Already closed after an error: nothing left to release.
    }
  }

  private transmit(out: Buffer): void {
    if (this.closed) return;
    this.sock.send(out, (err) => {
      if (err !== null && err !== undefined) this.fail(err);
    });
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.events.error(err);
  }
}

export const openDgramUpstreamSocket: OpenUpstreamSocket = (host, port, events) => new DgramUpstreamSocket(host, port, events);
