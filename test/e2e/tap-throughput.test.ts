// TAP throughput against a real kernel: read and write frame rates of one TAP
// (printed, not asserted), and two namespaces joined through a TAP->TAP
// forwarder carrying TCP, plain and with vnet headers as GSO super-frames.
// Each TAP lives in a namespace of its own (tap-namespace.ts); traffic never
// leaves those namespaces. Needs root.

import t from 'tap';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { TapDevice, TAP_OFFLOAD_GSO, type TapOpenOptions } from '../../router/overlay/tap-device';
import { FAKE_MAC, NS_IP, SINK_IP, SUBNET, linkStats, run, sh, sweepStale, tapInNamespace } from './tap-namespace';
import { pollUntil } from '../../scripts/wait';

sweepStale();

/** Frames the kernel could not queue towards our reader (TAP ring full). */
function txDropped(ns: string, dev: string): number {
  const [link] = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', dev])) as
    Array<{ stats64: { tx: { dropped: number } } }>;
  return link?.stats64.tx.dropped ?? 0;
}

t.test('frame rates (printed, not asserted)', async (t) => {
  const { tap, ns } = tapInNamespace(t);

  // Read: a child in the namespace blasts 1400-byte datagrams with sendmmsg
  // (our own UdpBatchSocket), 64 per call, so the TAP reader is the bottleneck.
  const udpModule = path.resolve(__dirname, '..', '..', 'router', 'overlay', 'udp-batch.js');
  const ipModule = path.resolve(__dirname, '..', '..', 'common', 'ip.js');
  const count = 100_000;
  const blaster = `
    const { UdpBatchSocket, UdpAddressTable } = require(${JSON.stringify(udpModule)});
    const { parseIpv4 } = require(${JSON.stringify(ipModule)});
    const s = UdpBatchSocket.open({ address: '${NS_IP}', port: 0, sendBufferBytes: 4 << 20 });
    const slab = Buffer.alloc(64 * 1400), offs = new Int32Array(64).map((_, i) => i * 1400);
    const lens = new Int32Array(64).fill(1400), dests = new UdpAddressTable(64);
    for (let i = 0; i < 64; i++) dests.setIPv4(i, parseIpv4('${SINK_IP}'), 9999);
    let sent = 0;
    const step = () => { sent += s.sendBatch(slab, offs, lens, dests, 64); if (sent < ${count}) setImmediate(step); else s.close(); };
    step();`;
  let frames = 0;
  let firstNs = 0n;
  let lastNs = 0n;
  let batches = 0;
  tap.onFrames((_slab, _offs, _lens, n) => {
    lastNs = process.hrtime.bigint();
    if (frames === 0) firstNs = lastNs;
    frames += n;
    batches++;
  });
  const droppedBefore = txDropped(ns, tap.name);
  const sender = await run('ip', ['netns', 'exec', ns, process.execPath, '-e', blaster], 60000);
  t.equal(sender.code, 0, `sender ran (${sender.out.trim()})`);
  await pollUntil(() => frames >= count, { timeoutMs: 1000, intervalMs: 5 });
  const readSeconds = Number(lastNs - firstNs) / 1e9;
  t.comment(`TAP read, 1414-byte frames: ${frames}/${count} in ${readSeconds.toFixed(2)} s = ` +
    `${Math.round(frames / readSeconds)} frames/s, ${(frames * 1414 * 8 / readSeconds / 1e6).toFixed(0)} Mbit/s, ` +
    `avg batch ${(frames / Math.max(batches, 1)).toFixed(1)}, kernel dropped ${txDropped(ns, tap.name) - droppedBefore} ` +
    `at the TAP queue`);

  // Write: 60-byte frames to a MAC nobody has, so the kernel counts and drops them cheaply.
  const batch = 64;
  const slab = Buffer.alloc(batch * 64);
  const offsets = new Int32Array(batch).map((_, i) => i * 64);
  const lengths = new Int32Array(batch).fill(60);
  for (let i = 0; i < batch; i++) {
    Buffer.from([0x02, 0, 0, 0, 0, 0x99]).copy(slab, offsets[i]!);
    FAKE_MAC.copy(slab, offsets[i]! + 6);
    slab.writeUInt16BE(0x88b5, offsets[i]! + 12); // local experimental ethertype
  }
  const rxBefore = linkStats(ns, tap.name).rxPackets;
  const writeTarget = 200_000;
  let written = 0;
  const wStart = process.hrtime.bigint();
  while (written < writeTarget) written += tap.writeBatch(slab, offsets, lengths, batch);
  const wSeconds = Number(process.hrtime.bigint() - wStart) / 1e9;
  t.comment(`TAP write: ${written} frames of 60 B in ${wSeconds.toFixed(2)} s = ${Math.round(written / wSeconds)} frames/s`);
  t.equal(linkStats(ns, tap.name).rxPackets - rxBefore, written, 'kernel RX counter matches frames written');
});

t.test('TAP to TAP forwarding carries TCP between two namespaces; with vnet headers as GSO super-frames', async (t) => {
  const sink = `
    const net = require('net');
    net.createServer((c) => {
      let bytes = 0, first = 0;
      c.on('data', (d) => { if (bytes === 0) first = Date.now(); bytes += d.length; });
      c.on('end', () => { console.log(JSON.stringify({ bytes, ms: Date.now() - first })); process.exit(0); });
    }).listen(5201, '${SUBNET}.12', () => console.log('ready'));`;
  const megabytes = 100;
  const source = `
    const c = require('net').connect(5201, '${SUBNET}.12');
    const chunk = Buffer.alloc(1 << 20, 7);
    let left = ${megabytes};
    const pump = () => { while (left > 0) { left--; if (!c.write(chunk)) return void c.once('drain', pump); } c.end(); };
    c.on('connect', pump);`;
  for (const vnet of [false, true]) {
    await t.test(vnet ? 'vnet header + TSO offloads' : 'plain 1500-byte frames', async (t) => {
      const opts: TapOpenOptions = vnet ? { vnetHdr: true, offloadFlags: TAP_OFFLOAD_GSO } : {};
      const a = tapInNamespace(t, opts, `${SUBNET}.11`);
      const b = tapInNamespace(t, opts, `${SUBNET}.12`);
      // The forwarder: each read batch goes out as one write batch, straight from the slab.
      let largest = 0;
      let batches = 0;
      let frames = 0;
      const forward = (to: TapDevice) => (slab: Buffer, offs: Int32Array, lens: Int32Array, n: number): void => {
        for (let i = 0; i < n; i++) if (lens[i]! > largest) largest = lens[i]!;
        batches++;
        frames += n;
        to.writeBatch(slab, offs, lens, n);
      };
      a.tap.onFrames(forward(b.tap));
      b.tap.onFrames(forward(a.tap));

      const server = execFile('ip', ['netns', 'exec', b.ns, process.execPath, '-e', sink], { encoding: 'utf8', timeout: 60000 });
      t.teardown(() => { server.kill(); });
      let serverOut = '';
      server.stdout?.on('data', (d: string) => { serverOut += d; });
      const done = new Promise<void>((resolve) => server.on('exit', () => resolve()));
      t.ok(await pollUntil(() => serverOut.includes('ready'), { timeoutMs: 10000, intervalMs: 5 }), 'sink listening in namespace B');
      const client = await run('ip', ['netns', 'exec', a.ns, process.execPath, '-e', source], 60000);
      t.equal(client.code, 0, `source in namespace A ran (${client.out.trim()})`);
      await done;
      const line = serverOut.split('\n').find((l) => l.startsWith('{'));
      const result = JSON.parse(line ?? '{"bytes":0,"ms":1}') as { bytes: number; ms: number };
      t.equal(result.bytes, megabytes << 20, 'every byte arrived');
      if (vnet) t.ok(largest > 1514 + 10, `super-frames larger than the MTU passed (largest ${largest} bytes)`);
      else t.ok(largest <= 1514, `plain frames stay within the MTU (largest ${largest})`);
      t.comment(`TAP->TAP forwarder, ${vnet ? 'vnet+TSO' : 'plain'}: ${megabytes} MB in ${result.ms} ms = ` +
        `${(result.bytes * 8 / (result.ms / 1000) / 1e6).toFixed(0)} Mbit/s TCP, largest frame ${largest} B, ` +
        `avg batch ${(frames / Math.max(batches, 1)).toFixed(1)}`);
    });
  }
});
