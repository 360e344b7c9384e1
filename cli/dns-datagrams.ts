// DNS's batched UDP (dns/datagram-port.ts) over the addon's recvmmsg/sendmmsg
// (router/overlay/udp-batch.ts): one wakeup reads up to a batch of queries,
// the server answers them all, and the answers leave in one sendmmsg. Wired by
// cli/daemon.ts; dns/ never sees the data plane. Replies are copied into a
// preallocated send slab; one larger than a slot (never, at the 1232-byte EDNS
// cap of dns/constants.ts) is sent on its own.

import type { DatagramBatch, DatagramPort, DatagramSender } from '../dns/datagram-port';
import { EDNS_MAX_UDP_BYTES } from '../dns/constants';
import { UdpAddressTable, UdpBatchSocket } from '../router/overlay/udp-batch';

const BATCH = 256;
/** Queries larger than this are dropped by the kernel read (counted by the addon); real ones are far smaller. */
const QUERY_CAPACITY_BYTES = 4096;
const SOCKET_BUFFER_BYTES = 4 << 20;

class NativeDatagramPort implements DatagramPort, DatagramBatch {
  readonly port: number;
  count = 0;
  private readonly out = Buffer.alloc(BATCH * EDNS_MAX_UDP_BYTES);
  private readonly outOffsets = new Int32Array(BATCH);
  private readonly outLengths = new Int32Array(BATCH);
  private readonly dests = new UdpAddressTable(BATCH);
  private readonly one = new UdpAddressTable(1);
  private readonly oneOffset = new Int32Array(1);
  private readonly oneLength = new Int32Array(1);
  private pending = 0;

  constructor(private readonly sock: UdpBatchSocket) {
    this.port = sock.localPort;
    for (let i = 0; i < BATCH; i++) this.outOffsets[i] = i * EDNS_MAX_UDP_BYTES;
  }

  start(onBatch: (batch: DatagramBatch) => void): void {
    this.sock.onDatagrams((_slab, _offsets, _lengths, _sources, count) => {
      this.count = count;
      this.pending = 0;
      try {
        onBatch(this);
      } finally {
        this.flush();
      }
    });
  }

  datagram(i: number): Uint8Array {
    const at = this.sock.offsets[i] as number;
    return this.sock.slab.subarray(at, at + (this.sock.lengths[i] as number));
  }

  sourceAddress(i: number): string {
    return this.sock.sources.address(i);
  }

  sender(i: number): DatagramSender {
    return { address: this.sock.sources.address(i), port: this.sock.sources.port(i) };
  }

  reply(i: number, bytes: Uint8Array): void {
    if (bytes.length > EDNS_MAX_UDP_BYTES || this.pending >= BATCH) {
      this.sendTo(this.sender(i), bytes);
      return;
    }
    const n = this.pending++;
    this.out.set(bytes, this.outOffsets[n] as number);
    this.outLengths[n] = bytes.length;
    this.dests.copyFrom(n, this.sock.sources, i);
  }

  sendTo(to: DatagramSender, bytes: Uint8Array): void {
    this.one.set(0, to.address, to.port);
    this.oneLength[0] = bytes.length;
    this.sock.sendBatch(bytes, this.oneOffset, this.oneLength, this.one, 1);
  }

  close(): void {
    this.sock.close();
  }

  private flush(): void {
    if (this.pending === 0) return;
    this.sock.sendBatch(this.out, this.outOffsets, this.outLengths, this.dests, this.pending);
    this.pending = 0;
  }
}

/** Binds a batched UDP socket for DNS; throws (RouterError) when the addon is missing or the address is taken. */
export function openDnsDatagramPort(host: string, port: number): DatagramPort {
  return new NativeDatagramPort(UdpBatchSocket.open({
    address: host, port, maxBatchCount: BATCH, datagramCapacityBytes: QUERY_CAPACITY_BYTES,
    recvBufferBytes: SOCKET_BUFFER_BYTES, sendBufferBytes: SOCKET_BUFFER_BYTES,
  }));
}
