// UdpBatchSocket.omitChecksums on loopback: after it, an IPv4 socket's
// datagrams carry UDP checksum 0 (tcpdump prints "[no cksum]") and still
// arrive; a socket that did not ask keeps its checksum; IPv6, which requires
// one, refuses. The sealed sleeve relies on this (docs/architecture.md).

import t from 'tap';
import { spawn } from 'node:child_process';
import { parseIpv4 } from '../../common/ip';
import { UdpAddressTable, UdpBatchSocket } from '../../router/overlay/udp-batch';
import { waitFor } from '../../scripts/wait';

const LOOPBACK = parseIpv4('127.0.0.1');

/** tcpdump's verbose line for the first datagram to `port` on lo, once `send` has run. */
async function captureOne(port: number, send: () => void): Promise<string> {
  const dump = spawn('tcpdump', ['-i', 'lo', '-nn', '-vv', '-l', '--immediate-mode', '-c', '1', `udp and dst port ${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  dump.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  dump.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<void>((resolve) => dump.on('close', () => resolve()));
  try {
    await waitFor(() => err.includes('listening on'), { what: 'tcpdump listening', timeoutMs: 10_000, intervalMs: 50 });
    send();
    await waitFor(() => out.includes('UDP'), { what: 'tcpdump saw the datagram', timeoutMs: 10_000, intervalMs: 50 });
  } finally {
    dump.kill();
    await exited;
  }
  return out;
}

t.test('checksums off: checksum 0 on the wire, the datagram still arrives', async (t) => {
  const rx = UdpBatchSocket.open({ address: '127.0.0.1', port: 0 });
  const plain = UdpBatchSocket.open({ address: '127.0.0.1', port: 0 });
  const bare = UdpBatchSocket.open({ address: '127.0.0.1', port: 0 });
  const v6 = UdpBatchSocket.open({ address: '::1', port: 0 });
  t.teardown(() => { rx.close(); plain.close(); bare.close(); v6.close(); });
  t.equal(bare.omitChecksums(), true, 'an IPv4 socket takes it');
  t.equal(v6.omitChecksums(), false, 'an IPv6 socket refuses');

  const received: number[] = [];
  rx.onDatagrams((_slab, _offsets, lengths, _src, count) => { for (let i = 0; i < count; i++) received.push(lengths[i]!); });
  const payload = Buffer.alloc(3000, 0x5a);
  const dests = new UdpAddressTable(1);
  dests.setIPv4(0, LOOPBACK, rx.localPort);
  const sendFrom = (s: UdpBatchSocket) => (): void => { s.sendBatch(payload, Int32Array.of(0), Int32Array.of(payload.length), dests, 1); };

  const withSum = await captureOne(rx.localPort, sendFrom(plain));
  t.notMatch(withSum, /no cksum/, `a socket that did not ask keeps its checksum: ${withSum.trim().split('\n').at(-1)}`);
  const without = await captureOne(rx.localPort, sendFrom(bare));
  t.match(without, /\[no cksum\]/, `checksum 0 on the wire: ${without.trim().split('\n').at(-1)}`);
  await waitFor(() => received.length >= 2, { what: 'both datagrams received', timeoutMs: 5_000, intervalMs: 20 });
  t.same(received, [payload.length, payload.length], 'the receiver accepts both');
});
