// The seam between the DNS server and a batched UDP socket: the composition
// root may hand the server a DatagramPort (cli/dns-datagrams.ts wraps the
// addon's recvmmsg/sendmmsg), so that a burst of queries costs one wakeup and
// one send call instead of a Node event and a send per query. dns/ may not
// import the data plane, hence this interface; without one the server uses
// node:dgram. Types only.

/** Where a datagram came from, kept to answer it later (a forwarded query). */
export interface DatagramSender {
  readonly address: string;
  readonly port: number;
}

/** One received batch; valid only until the handler returns. */
export interface DatagramBatch {
  readonly count: number;
  /** Datagram i, a view into the receive buffer. */
  datagram(i: number): Uint8Array;
  /** Source address of datagram i, IPv4 mapped addresses as dotted quads. */
  sourceAddress(i: number): string;
  sender(i: number): DatagramSender;
  /** Queues `bytes` for the sender of datagram i; the queue leaves in one call when the handler returns. */
  reply(i: number, bytes: Uint8Array): void;
}

export interface DatagramPort {
  /** The bound port (chosen by the kernel when 0 was asked). */
  readonly port: number;
  /** Starts receiving; `onBatch` runs once per wakeup. */
  start(onBatch: (batch: DatagramBatch) => void): void;
  sendTo(to: DatagramSender, bytes: Uint8Array): void;
  close(): void;
}

/** Binds host:port; throws when it cannot (the server then falls back to node:dgram). */
export type OpenDatagramPort = (host: string, port: number) => DatagramPort;
