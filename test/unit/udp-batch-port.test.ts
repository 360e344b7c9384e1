// UdpBatchPort's receive order: a batch's small datagrams (pings, ACKs) are
// delivered first, in their order, then the rest in theirs, with one call
// between the two when there were both. Driven through a stand-in for the
// native socket: no kernel needed.

import t from 'tap';
import { SMALL_DATAGRAM_BYTES, UdpBatchPort } from '../../router/overlay/udp-batch-port';
import { UdpAddressTable, type UdpBatchSocket } from '../../router/overlay/udp-batch';

type Handler = (slab: Buffer, offsets: Int32Array, lengths: Int32Array, sources: UdpAddressTable, count: number, segSizes: Uint16Array | null) => void;

function fakeSocket(): { socket: UdpBatchSocket; deliver: (lengths: number[]) => void } {
  let handler: Handler | null = null;
  const sources = new UdpAddressTable(8);
  for (let i = 0; i < 8; i++) sources.setIPv4(i, 0x0a000001 + i, 6783);
  const socket = { onDatagrams: (h: Handler) => { handler = h; } } as unknown as UdpBatchSocket;
  const deliver = (lengths: number[]): void => {
    const offsets = Int32Array.from(lengths.map((_, i) => i * 8192));
    handler!(Buffer.alloc(8 * 8192), offsets, Int32Array.from(lengths), sources, lengths.length, null);
  };
  return { socket, deliver };
}

t.test('small datagrams first, each group in arrival order, one call between them', async (t) => {
  const { socket, deliver } = fakeSocket();
  const port = new UdpBatchPort(socket);
  const events: string[] = [];
  port.start((_buf, off, len, host) => events.push(`${len}@${off / 8192}:${host}`), () => events.push('end'), () => events.push('small-done'));
  const big = SMALL_DATAGRAM_BYTES + 1;
  deliver([5000, 100, big, SMALL_DATAGRAM_BYTES, 60]);
  t.same(events, [`100@1:10.0.0.2`, `${SMALL_DATAGRAM_BYTES}@3:10.0.0.4`, '60@4:10.0.0.5', 'small-done', '5000@0:10.0.0.1', `${big}@2:10.0.0.3`, 'end']);
  events.length = 0;
  deliver([100, 60]);
  t.same(events, ['100@0:10.0.0.1', '60@1:10.0.0.2', 'end'], 'only small ones: nothing to do between');
  events.length = 0;
  deliver([5000, 6000]);
  t.same(events, ['5000@0:10.0.0.1', '6000@1:10.0.0.2', 'end'], 'only big ones: order kept');
});
