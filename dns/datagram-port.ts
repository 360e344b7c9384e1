// The seam between the DNS server and a batched UDP socket: the composition
// root may hand the server a DatagramPort (cli/dns-datagrams.ts wraps the
// addon's recvmmsg/sendmmsg), so that a burst of queries costs one wakeup and
// one send call instead of a Node event and a send per query. dns/ may not
// import the data plane, hence this interface; without one the server uses
// node:dgram. The forwarder's upstream sockets have a seam of the same kind
// (UpstreamSocket). Types only.

/** Where a datagram came from, kept to answer it later (a forwarded query). */
export interface DatagramSender {
  readonly address: string;
  readonly port: number;
}

/**
 * One received batch; valid only until the handler returns. A reply is
 * either handed over (reply) or written straight into the send buffer:
 * `output` from replyAt() on, at most replyCapacity bytes, then commit().
 */
export interface DatagramBatch {
  readonly count: number;
  /** The receive buffer: datagram i is input[offset(i), offset(i) + length(i)). */
  readonly input: Uint8Array;
  offset(i: number): number;
  length(i: number): number;
  /** Datagram i, a view into the receive buffer (allocates the view). */
  datagram(i: number): Uint8Array;
  /** Source address of datagram i, IPv4 mapped addresses as dotted quads. */
  sourceAddress(i: number): string;
  sender(i: number): DatagramSender;
  /** Queues `bytes` for the sender of datagram i; the queue leaves in one call when the handler returns. */
  reply(i: number, bytes: Uint8Array): void;
  /** The send buffer; the next reply goes at replyAt(), at most replyCapacity bytes. */
  readonly output: Uint8Array;
  readonly replyCapacity: number;
  replyAt(): number;
  /** Queues the `length` bytes written at replyAt() for the sender of datagram i, like reply(). */
  commit(i: number, length: number): void;
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

/**
 * A UDP socket connected to one upstream server, on a port the kernel picked
 * at random; only that server's datagrams reach it. The forwarder's pool opens
 * these through an `OpenUpstreamSocket` (cli/dns-datagrams.ts over the addon:
 * the queries of one burst leave in one sendmmsg, answers arrive by recvmmsg;
 * dns/upstream-dgram.ts over node:dgram without it).
 */
export interface UpstreamSocket {
  /** Queues `bytes` (copied at once) for the upstream; what is queued leaves before the event loop turns. */
  send(bytes: Uint8Array): void;
  /** Idempotent; nothing is delivered after it. */
  close(): void;
}

export interface UpstreamSocketEvents {
  /** A datagram and where it came from; `bytes` is valid only during the call. */
  message(bytes: Uint8Array, address: string, port: number): void;
  /** The socket failed for good (cannot connect or send, a read error); close it. */
  error(err: Error): void;
}

/** Opens a socket connected to host:port; throws when the socket cannot be made at all. */
export type OpenUpstreamSocket = (host: string, port: number, events: UpstreamSocketEvents) => UpstreamSocket;
