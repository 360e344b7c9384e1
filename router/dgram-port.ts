// A DatagramPort on node:dgram: the portable fallback when the native
// addon's batched UDP is not available. One syscall and one copy per datagram.

import * as dgram from 'node:dgram';
import type { DatagramPort } from './overlay-ports';

export class DgramPort implements DatagramPort {
  private constructor(private readonly socket: dgram.Socket) {}

  static bind(port: number, host = '0.0.0.0'): Promise<DgramPort> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
      socket.once('error', (err: NodeJS.ErrnoException) => reject(new Error(err.code === 'EADDRINUSE'
        ? `UDP port ${port} is already in use (is another weave router running in this network namespace?)`
        : `cannot bind UDP port ${port}: ${err.message}`)));
      socket.bind(port, host, () => {
        socket.removeAllListeners('error');
        // ICMP errors on sends surface here; the overlay's probes notice broken paths.
        socket.on('error', () => undefined);
        resolve(new DgramPort(socket));
      });
    });
  }

  start(onDatagram: (buf: Buffer, off: number, len: number, host: string, port: number) => void, onBatchEnd: () => void): void {
    this.socket.on('message', (msg, rinfo) => {
      onDatagram(msg, 0, msg.length, rinfo.address, rinfo.port);
      onBatchEnd();
    });
  }

  send(buf: Buffer, off: number, len: number, host: string, port: number): void {
    // dgram keeps a reference until the send completes, and callers reuse buffers.
    this.socket.send(Buffer.from(buf.subarray(off, off + len)), port, host);
  }

  flush(): void {}

  close(): void {
    try { this.socket.close(); } catch { /* already closed */ }
  }
}
