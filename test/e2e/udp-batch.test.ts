// UdpBatchSocket on loopback only: batches in, batches out, contents and
// sources intact, hostile arguments rejected without a crash, and a process
// holding a socket still exits. UdpBatchPort passes datagrams on from its
// receive buffer (sendFrom) beside staged ones, as a relay does. Prints a rough datagram rate (no assertion).

import t from 'tap';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { RouterError } from '../../router/mesh/errors';
import { loadNative, type UdpHandle } from '../../router/overlay/native';
import { UdpAddressTable, UdpBatchSocket, formatIPBytes, parseIPToBytes } from '../../router/overlay/udp-batch';
import { UdpBatchPort } from '../../router/overlay/udp-batch-port';
import { parseIpv4 } from '../../common/ip';
import { pollUntil } from '../../scripts/wait';

const LOOPBACK = parseIpv4('127.0.0.1');


function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A slab holding `sizes.length` datagrams, datagram i filled with a pattern keyed by i. */
function buildBatch(sizes: number[]): { slab: Buffer; offsets: Int32Array; lengths: Int32Array; expected: Buffer[] } {
  const stride = 65536;
  const slab = Buffer.alloc(stride * sizes.length);
  const offsets = new Int32Array(sizes.length);
  const lengths = new Int32Array(sizes.length);
  const expected: Buffer[] = [];
  sizes.forEach((size, i) => {
    offsets[i] = i * stride + 3; // deliberately unaligned
    lengths[i] = size;
    for (let k = 0; k < size; k++) slab[offsets[i]! + k] = (i * 31 + k * 7) & 255;
    expected.push(Buffer.from(slab.subarray(offsets[i]!, offsets[i]! + size)));
  });
  return { slab, offsets, lengths, expected };
}

/** The one thing the helpers need from a tap test object. */
interface HasTeardown { teardown(fn: () => void): void }

function pair(t: HasTeardown, recvBufferBytes = 4 << 20): { rx: UdpBatchSocket; tx: UdpBatchSocket } {
  const rx = UdpBatchSocket.open({ address: '127.0.0.1', port: 0, recvBufferBytes });
  const tx = UdpBatchSocket.open({ address: '127.0.0.1', port: 0, sendBufferBytes: 4 << 20 });
  t.teardown(() => { rx.close(); tx.close(); });
  return { rx, tx };
}

t.test('100 datagrams of different sizes arrive intact, in batches, with their source', async (t) => {
  const { rx, tx } = pair(t);
  const sizes = Array.from({ length: 100 }, (_, i) => (i === 0 ? 0 : i === 99 ? 60000 : 1 + ((i * 137) % 1500)));
  const { slab, offsets, lengths, expected } = buildBatch(sizes);
  const dests = new UdpAddressTable(100);
  for (let i = 0; i < 100; i++) dests.setIPv4(i, LOOPBACK, rx.localPort);

  const got: Buffer[] = [];
  const batches: number[] = [];
  const sources = new Set<string>();
  rx.onDatagrams((s, offs, lens, src, count) => {
    batches.push(count);
    for (let i = 0; i < count; i++) {
      got.push(Buffer.from(s.subarray(offs[i]!, offs[i]! + lens[i]!)));
      sources.add(`${src.address(i)}:${src.port(i)}`);
    }
  });
  t.equal(tx.sendBatch(slab, offsets, lengths, dests, 100), 100, 'sendBatch reports all 100 sent');
  t.ok(await pollUntil(() => got.length >= 100, { timeoutMs: 5000, intervalMs: 5 }), 'all 100 received');
  t.equal(got.length, 100);
  // Loopback keeps order for one socket pair, so compare position by position.
  let intact = 0;
  for (let i = 0; i < 100; i++) if (got[i]?.equals(expected[i]!)) intact++;
  t.equal(intact, 100, 'every datagram byte-for-byte intact');
  t.same([...sources], [`127.0.0.1:${tx.localPort}`], 'source address and port are the sender');
  t.ok(Math.max(...batches) > 1, `batches larger than one (${batches.join(',')})`);
  t.ok(Math.max(...batches) <= 64, 'no batch above the 64 default');
  const s = tx.stats();
  t.equal(s.txPackets, 100);
  t.equal(s.txBytes, sizes.reduce((a, b) => a + b, 0));
  t.equal(rx.stats().rxPackets, 100);
});

t.test('UdpBatchPort: datagrams sent from the receive buffer (sendFrom) and staged ones leave at the flush, intact', async (t) => {
  const { rx, tx } = pair(t);
  const sink = UdpBatchSocket.open({ address: '127.0.0.1', port: 0, recvBufferBytes: 4 << 20 });
  t.teardown(() => sink.close());
  const relay = new UdpBatchPort(rx);
  const sizes = [40, 1400, 60_000, 7];
  const { slab, offsets, lengths, expected } = buildBatch(sizes);
  const got: Buffer[] = [];
  sink.onDatagrams((s, offs, lens, _src, count) => {
    for (let i = 0; i < count; i++) got.push(Buffer.from(s.subarray(offs[i]!, offs[i]! + lens[i]!)));
  });
  let staged = 0;
  const sources: string[] = [];
  relay.start((buf, off, len, host, port) => {
    sources.push(`${host}:${port}`);
    // Each datagram goes on from where it arrived, and a staged one of 3 bytes beside it.
    relay.sendFrom(buf, off, len, '127.0.0.1', sink.localPort);
    const at = relay.stageOffset();
    relay.stageSlab().fill(0xee, at, at + 3);
    relay.commit(3, '127.0.0.1', sink.localPort);
    staged++;
  }, () => relay.flush());
  const dests = new UdpAddressTable(sizes.length);
  for (let i = 0; i < sizes.length; i++) dests.setIPv4(i, LOOPBACK, rx.localPort);
  t.equal(tx.sendBatch(slab, offsets, lengths, dests, sizes.length), sizes.length);
  t.ok(await pollUntil(() => got.length >= 2 * sizes.length, { timeoutMs: 5000, intervalMs: 5 }), 'all passed on');
  const passed = got.filter((g) => g.length !== 3);
  t.equal(staged, sizes.length);
  // The port hands on a batch's small datagrams first (loaded RTT), so the order may change; sizes are distinct.
  t.same(passed.map((g) => g.length).sort((a, b) => a - b), [...sizes].sort((a, b) => a - b), 'every one passed on');
  t.ok(passed.every((g) => g.equals(expected[sizes.indexOf(g.length)]!)), 'byte for byte');
  t.equal(got.filter((g) => g.length === 3 && g.every((b) => b === 0xee)).length, sizes.length, 'and the staged ones');
  t.same(new Set(sources), new Set([`127.0.0.1:${tx.localPort}`]), 'each with its source (the text cached per address)');
});

/** Bind errors here mean the machine has no ::1, which is not our bug. */
function ipv6LoopbackError(): string | false {
  try {
    UdpBatchSocket.open({ address: '::1', port: 0 }).close();
    return false;
  } catch (err) {
    return `no IPv6 loopback here: ${String(err)}`;
  }
}

t.test('IPv6 loopback works with the same address tables', { skip: ipv6LoopbackError() }, async (t) => {
  const rx = UdpBatchSocket.open({ address: '::1', port: 0 });
  const tx = UdpBatchSocket.open({ address: '::1', port: 0 });
  t.teardown(() => { rx.close(); tx.close(); });
  const { slab, offsets, lengths, expected } = buildBatch([10, 20, 30]);
  const dests = new UdpAddressTable(3);
  for (let i = 0; i < 3; i++) dests.set(i, '::1', rx.localPort);
  const got: string[] = [];
  rx.onDatagrams((s, offs, lens, src, count) => {
    for (let i = 0; i < count; i++) {
      const ok = Buffer.from(s.subarray(offs[i]!, offs[i]! + lens[i]!)).equals(expected[got.length]!);
      got.push(`${src.address(i)}:${src.port(i)}:${ok}`);
    }
  });
  t.equal(tx.sendBatch(slab, offsets, lengths, dests, 3), 3);
  t.ok(await pollUntil(() => got.length >= 3, { timeoutMs: 3000, intervalMs: 5 }));
  t.same(got, [0, 1, 2].map(() => `::1:${tx.localPort}:true`));
  t.equal(rx.family, 6);
});

t.test('address tables round-trip IPv4 and IPv6 text', async (t) => {
  const table = new UdpAddressTable(4);
  table.set(0, '10.1.2.3', 6783);
  table.set(1, '2001:db8::1', 1);
  table.set(2, '::ffff:192.168.0.1', 2);
  table.set(3, 'fe80:0:0:1:0:0:0:5', 3);
  t.equal(table.address(0), '10.1.2.3');
  t.equal(table.ipv4(0), parseIpv4('10.1.2.3'));
  t.equal(table.port(0), 6783);
  t.equal(table.address(1), '2001:db8::1');
  t.equal(table.ipv4(1), -1);
  t.equal(table.address(2), '192.168.0.1');
  t.equal(table.address(3), 'fe80:0:0:1::5');
  const copy = new UdpAddressTable(1);
  copy.copyFrom(0, table, 1);
  t.equal(copy.address(0), '2001:db8::1');
  t.equal(copy.port(0), 1);
  const b = new Uint8Array(16);
  parseIPToBytes('::', b, 0);
  t.equal(formatIPBytes(b, 0), '::');
  t.throws(() => table.set(0, 'not-an-ip', 1), RouterError);
  t.throws(() => table.set(0, 'fe80::1%eth0', 1), RouterError);
  t.throws(() => table.set(9, '10.0.0.1', 1), RouterError);
});

t.test('bad arguments throw errors and never crash', async (t) => {
  const { rx, tx } = pair(t, 0);
  const { slab, offsets, lengths } = buildBatch([10, 10]);
  const dests = new UdpAddressTable(2);
  dests.setIPv4(0, LOOPBACK, rx.localPort);
  dests.set(1, '::1', rx.localPort);
  const asConfig = (fn: () => unknown, what: string): void => {
    try {
      fn();
      t.fail(`${what}: no exception`);
    } catch (err) {
      t.ok(err instanceof RouterError && err.code === 'config', `${what}: RouterError config (${String(err)})`);
    }
  };
  asConfig(() => tx.sendBatch(slab, offsets, lengths, dests, 2), 'IPv6 destination on an IPv4 socket');
  asConfig(() => tx.sendBatch(slab, offsets, lengths, dests, 3), 'count beyond the tables');
  asConfig(() => tx.sendBatch(slab, offsets, lengths, dests, -1), 'negative count');
  asConfig(() => tx.sendBatch(slab.subarray(0, 5), offsets, lengths, dests, 1), 'datagram outside the slab');
  asConfig(() => UdpBatchSocket.open({ address: 'localhost', port: 0 }), 'host name instead of address');
  asConfig(() => UdpBatchSocket.open({ address: '127.0.0.1', port: 70000 }), 'port out of range');
  try {
    UdpBatchSocket.open({ address: '127.0.0.1', port: rx.localPort });
    t.fail('second bind to a used port succeeded');
  } catch (err) {
    t.ok(err instanceof RouterError && err.code === 'io' && /EADDRINUSE/.test(err.message), String(err));
  }

  // Straight at the addon: garbage handles and argument types.
  const native = loadNative();
  const h = native.udpOpen(4, '127.0.0.1', 0, 0, 0);
  t.teardown(() => native.close(h));
  const fake = {} as unknown as UdpHandle;
  const noop = (): void => undefined;
  const garbage: Array<[string, () => unknown]> = [
    ['plain object as handle', () => native.udpSend(fake, slab, offsets, lengths, dests.ips, dests.ports, 1)],
    ['null as handle', () => native.stats(null as unknown as UdpHandle)],
    ['Buffer as handle', () => native.close(Buffer.alloc(8) as unknown as UdpHandle)],
    ['string as slab', () => native.udpSend(h, 'x' as unknown as Uint8Array, offsets, lengths, dests.ips, dests.ports, 1)],
    ['Float64Array as offsets', () => native.readStart(h, slab, new Float64Array(2) as unknown as Int32Array, lengths,
      10, 2, dests.ips, dests.ports, noop)],
    ['fractional count', () => native.udpSend(h, slab, offsets, lengths, dests.ips, dests.ports, 0.5)],
    ['callback not a function', () => native.readStart(h, slab, offsets, lengths, 10, 2, dests.ips, dests.ports,
      42 as unknown as () => void)],
    ['NaN family', () => native.udpOpen(NaN as 4, '127.0.0.1', 0, 0, 0)],
    ['huge buffer size', () => native.udpOpen(4, '127.0.0.1', 0, 2 ** 40, 0)],
    ['too few arguments', () => (native.udpOpen as unknown as (...a: unknown[]) => unknown)(4)],
    ['IPv6 destination via the addon', () => native.udpSend(h, slab, offsets, lengths, dests.ips, dests.ports, 2)],
  ];
  for (const [what, fn] of garbage) t.throws(fn, `${what} throws`);

  // The receive arrays are checked against the batch size before reading starts.
  t.throws(() => native.readStart(h, Buffer.alloc(100), new Int32Array(4), new Int32Array(4), 200, 4,
    new Uint8Array(64), new Uint16Array(4), noop), /does not fit/, 'slots beyond the slab');
  t.throws(() => native.readStart(h, Buffer.alloc(1000), new Int32Array(4), new Int32Array(4), 50, 4,
    new Uint8Array(16), new Uint16Array(4), noop), /addrs needs/, 'address table too small');
  t.throws(() => native.readStart(h, Buffer.alloc(1000), new Int32Array(4), new Int32Array(4), 50, 999,
    new Uint8Array(64), new Uint16Array(4), noop), RangeError, 'batch above the cap');

  // Closed sockets: sends are dropped quietly, stats still readable, close idempotent.
  tx.close();
  tx.close();
  t.equal(tx.sendBatch(slab, offsets, lengths, dests, 1), 0);
  t.equal(tx.stats().txPackets, 0);
});

t.test('pause holds datagrams in the kernel; resume delivers them; close inside the handler stops delivery', async (t) => {
  const { rx, tx } = pair(t);
  const { slab, offsets, lengths } = buildBatch(Array.from({ length: 10 }, () => 100));
  const dests = new UdpAddressTable(10);
  for (let i = 0; i < 10; i++) dests.setIPv4(i, LOOPBACK, rx.localPort);
  let received = 0;
  let calls = 0;
  rx.onDatagrams((_s, _o, _l, _src, count) => { received += count; calls++; });
  rx.pause();
  tx.sendBatch(slab, offsets, lengths, dests, 10);
  // Proving an absence: give a wrongly delivered batch the time to show up.
  await sleep(100);
  t.equal(received, 0, 'nothing delivered while paused');
  rx.resume();
  t.ok(await pollUntil(() => received === 10, { timeoutMs: 3000, intervalMs: 5 }), 'all delivered after resume');

  // Close from inside the handler: the rest of that wakeup and later ones are not delivered.
  rx.onDatagrams(() => { calls++; rx.close(); });
  const before = calls;
  tx.sendBatch(slab, offsets, lengths, dests, 10);
  t.ok(await pollUntil(() => rx.closed, { timeoutMs: 3000, intervalMs: 5 }), 'the first batch reached the handler, which closed the socket');
  tx.sendBatch(slab, offsets, lengths, dests, 10);
  // Nothing may arrive now; give a wrongly delivered batch the time to show up.
  await sleep(100);
  t.equal(calls - before, 1, 'exactly one handler call, then closed');
  t.ok(rx.closed);
});

t.test('a process holding a socket exits: unref while reading, or close', async (t) => {
  const modulePath = path.resolve(__dirname, '..', '..', 'router', 'overlay', 'udp-batch.js');
  const scripts = {
    unref: `const { UdpBatchSocket } = require(${JSON.stringify(modulePath)});
      const s = UdpBatchSocket.open({ address: '127.0.0.1', port: 0 });
      s.onDatagrams(() => {}); s.unref();`,
    close: `const { UdpBatchSocket } = require(${JSON.stringify(modulePath)});
      const s = UdpBatchSocket.open({ address: '127.0.0.1', port: 0 });
      s.onDatagrams(() => {}); setTimeout(() => s.close(), 50);`,
    pausedAndForgotten: `const { UdpBatchSocket } = require(${JSON.stringify(modulePath)});
      const s = UdpBatchSocket.open({ address: '127.0.0.1', port: 0 });
      s.onDatagrams(() => {}); s.pause();`,
  };
  for (const [name, script] of Object.entries(scripts)) {
    const result = await new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, ['-e', script], { timeout: 10000 }, (_err, _stdout, stderr) => {
        resolve({ code: child.exitCode, signal: child.signalCode, stderr });
      });
    });
    t.same([result.code, result.signal], [0, null], `${name}: exits on its own (${result.stderr.trim()})`);
  }
});

t.test('throughput on loopback (printed, not asserted)', async (t) => {
  const { rx, tx } = pair(t, 16 << 20);
  const batch = 64;
  const { slab, offsets, lengths } = buildBatch(Array.from({ length: batch }, () => 1400));
  const dests = new UdpAddressTable(batch);
  for (let i = 0; i < batch; i++) dests.setIPv4(i, LOOPBACK, rx.localPort);
  let received = 0;
  let lastReceiveNs = 0n;
  rx.onDatagrams((_s, _o, _l, _src, count) => { received += count; lastReceiveNs = process.hrtime.bigint(); });
  const target = 200_000;
  let sent = 0;
  const start = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    // One batch per event-loop turn: the receiver gets one wakeup (one batch)
    // per turn too, so a faster sender would only overflow its buffer.
    const step = (): void => {
      sent += tx.sendBatch(slab, offsets, lengths, dests, batch);
      if (sent < target) setImmediate(step);
      else resolve();
    };
    step();
  });
  await pollUntil(() => received >= sent, { timeoutMs: 2000, intervalMs: 5 });
  const seconds = Number(lastReceiveNs - start) / 1e9;
  const st = rx.stats();
  t.comment(`UDP loopback, 1400 B, one thread both ends: sent ${sent}, received ${received} ` +
    `in ${seconds.toFixed(2)} s = ${Math.round(received / seconds)} datagrams/s each way, ` +
    `${(received * 1400 * 8 / seconds / 1e6).toFixed(0)} Mbit/s, avg batch ${(st.rxPackets / st.rxBatches).toFixed(1)}`);
  t.ok(received > 0);
});
