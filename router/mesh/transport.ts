// The byte-stream transport the control plane runs over: TCP in the daemon
// (tcp-transport.ts), in-memory pipes in simulations. Connections see only
// this interface, so protocol code never imports node:net.

export interface StreamHandlers {
  onData(chunk: Uint8Array): void;
  /** Called once, after which the stream is dead. `error` is null on an orderly close. */
  onClose(error: Error | null): void;
}

export interface ByteStream {
  /** host:port of the remote end as the transport sees it. */
  readonly remoteAddress: string;
  readonly remoteHost: string;
  /** Starts delivering events; data arriving earlier is buffered until then. */
  start(handlers: StreamHandlers): void;
  write(chunk: Uint8Array): void;
  /** Bytes written but not yet accepted by the other side / kernel. */
  readonly pendingBytes: number;
  close(): void;
}

export interface Transport {
  /** Starts accepting. Rejects when the port cannot be bound. */
  listen(port: number, onAccept: (stream: ByteStream) => void): Promise<void>;
  /** Opens a stream to host:port; the callback gets exactly one of error or stream. */
  dial(host: string, port: number, done: (error: Error | null, stream: ByteStream | null) => void): void;
  close(): void;
}
