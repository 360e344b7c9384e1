// TapDevice against a real kernel. Each test opens a TAP in the root namespace
// under a unique name, moves it into a namespace it created (the fd keeps
// working after the move), and plays the host on the far side of the TAP:
// it answers ARP and ping, and watches UDP the namespace sends; one test joins
// two namespaces through a TAP->TAP forwarder and runs TCP across it. Traffic
// never leaves those namespaces. Needs root. Prints rough rates (no assertion).

import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { RouterError } from '../../router/mesh/errors';
import { loadNative, type TapHandle } from '../../router/overlay/native';
import { TapDevice, TAP_OFFLOAD_GSO, type TapOpenOptions } from '../../router/overlay/tap-device';

const PREFIX = `wvt-tap-${process.pid}-`;
const SUBNET = '10.213.0';
const NS_IP = `${SUBNET}.1`;          // the namespace's end of the TAP
const FAKE_IP = `${SUBNET}.2`;        // the host we play behind the TAP
const SINK_IP = `${SUBNET}.3`;        // a static neighbour whose frames we only watch
const FAKE_MAC = Buffer.from([0x02, 0x77, 0x76, 0x74, 0x00, 0x02]);
const SINK_MAC = '02:77:76:74:00:03';

interface HasTeardown { teardown(fn: () => void): void }

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function quiet(cmd: string, args: string[]): void {
  try { sh(cmd, args); } catch { /* already gone */ }
}

/** Async, so the event loop (and the TAP reader) keeps running meanwhile. */
function run(cmd: string, args: string[], timeoutMs = 20000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, out: stdout + stderr });
    });
  });
}

function waitFor(pred: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const tick = (): void => {
      if (pred()) resolve(true);
      else if (Date.now() > deadline) resolve(false);
      else setTimeout(tick, 5);
    };
    tick();
  });
}

function ipBytes(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

function linkStats(ns: string, dev: string): { rxPackets: number; mac: Buffer } {
  const [link] = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', dev])) as
    Array<{ address: string; stats64: { rx: { packets: number } } }>;
  if (link === undefined) throw new Error(`no link ${dev} in ${ns}`);
  return { rxPackets: link.stats64.rx.packets, mac: Buffer.from(link.address.split(':').map((h) => parseInt(h, 16))) };
}

/** Kills what runs inside the namespace (a deleted namespace lives on in its processes), then deletes it. */
function removeNamespace(ns: string): void {
  try {
    for (const pid of sh('ip', ['netns', 'pids', ns]).split('\n').filter((l) => /^\d+$/.test(l))) {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
    }
  } catch { /* no such namespace */ }
  quiet('ip', ['netns', 'del', ns]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Teardown does not run when the runner kills a timed-out test, so first
 * remove what an earlier, dead run of this file left: namespaces named
 * wvt-tap-<pid>-N and root links wvt<pid>{tN,p,cN} whose pid is gone.
 */
function sweepStale(): void {
  for (const line of sh('ip', ['netns', 'list']).split('\n')) {
    const m = /^wvt-tap-(\d+)-\d+\b/.exec(line);
    if (m !== null && !alive(Number(m[1]))) removeNamespace(m[0]);
  }
  for (const line of sh('ip', ['-br', 'link']).split('\n')) {
    const m = /^(wvt(\d+)(?:t\d+|p|c\d))[\s@]/.exec(line);
    if (m !== null && m[1] !== undefined && !alive(Number(m[2]))) quiet('ip', ['link', 'del', m[1]]);
  }
}

sweepStale();

/** Frames the kernel could not queue towards our reader (TAP ring full). */
function txDropped(ns: string, dev: string): number {
  const [link] = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', dev])) as
    Array<{ stats64: { tx: { dropped: number } } }>;
  return link?.stats64.tx.dropped ?? 0;
}

let nsCounter = 0;

/** A namespace holding an up TAP with `address`/24 and a static neighbour SINK_IP; all removed at teardown. */
function tapInNamespace(t: HasTeardown, opts: TapOpenOptions = {}, address = NS_IP): { tap: TapDevice; ns: string; tapMac: Buffer } {
  nsCounter++;
  const ns = `${PREFIX}${nsCounter}`;
  const name = `wvt${process.pid}t${nsCounter}`;
  sh('ip', ['netns', 'add', ns]);
  let tap: TapDevice | null = null;
  t.teardown(() => {
    tap?.close();
    removeNamespace(ns);
    quiet('ip', ['link', 'del', name]);
  });
  tap = TapDevice.open(name, opts);
  sh('ip', ['link', 'set', name, 'netns', ns]);
  sh('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1']);
  sh('ip', ['-n', ns, 'link', 'set', name, 'up']);
  sh('ip', ['-n', ns, 'addr', 'add', `${address}/24`, 'dev', name]);
  sh('ip', ['-n', ns, 'neigh', 'add', SINK_IP, 'lladdr', SINK_MAC, 'dev', name]);
  return { tap, ns, tapMac: linkStats(ns, name).mac };
}

function checksum(buf: Buffer, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end - 1; i += 2) sum += buf.readUInt16BE(i);
  if ((end - start) % 2 === 1) sum += (buf[end - 1] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Plays FAKE_IP behind the TAP: answers ARP requests and ICMP echo requests
 * for it, one writeBatch per read batch. Frames start after `hdr` bytes of
 * vnet header (written back as zeros: no offload state).
 */
class FakeHost {
  arpRequests: Array<{ senderMac: string; senderIp: string }> = [];
  echoRequests = 0;
  batches: number[] = [];
  udpToSink: Buffer[] = [];
  private readonly out = Buffer.alloc(64 * 2048);
  private readonly outOffsets = new Int32Array(64).map((_, i) => i * 2048);
  private readonly outLengths = new Int32Array(64);

  constructor(private readonly tap: TapDevice) {}

  readonly onFrames = (slab: Buffer, offsets: Int32Array, lengths: Int32Array, count: number): void => {
    this.batches.push(count);
    const hdr = this.tap.vnetHdrBytes;
    let replies = 0;
    for (let i = 0; i < count; i++) {
      const f = slab.subarray(offsets[i]! + hdr, offsets[i]! + lengths[i]!);
      const type = f.length >= 14 ? f.readUInt16BE(12) : 0;
      const o = this.outOffsets[replies]!;
      if (type === 0x0806 && f.length >= 42 && f.readUInt16BE(20) === 1 && f.subarray(38, 42).equals(ipBytes(FAKE_IP))) {
        this.arpRequests.push({ senderMac: f.subarray(22, 28).toString('hex'), senderIp: [...f.subarray(28, 32)].join('.') });
        const r = this.out.subarray(o, o + hdr + 42);
        r.fill(0, 0, hdr);
        const a = r.subarray(hdr);
        f.copy(a, 0, 6, 12);            // eth dst = requester
        FAKE_MAC.copy(a, 6);            // eth src = us
        a.writeUInt16BE(0x0806, 12);
        a.writeUInt16BE(1, 14); a.writeUInt16BE(0x0800, 16); a[18] = 6; a[19] = 4;
        a.writeUInt16BE(2, 20);         // reply
        FAKE_MAC.copy(a, 22); ipBytes(FAKE_IP).copy(a, 28);
        f.copy(a, 32, 22, 32);          // target = original sender MAC + IP
        this.outLengths[replies++] = hdr + 42;
      } else if (type === 0x0800 && f.length >= 34 && f[23] === 1 && f.subarray(30, 34).equals(ipBytes(FAKE_IP))) {
        const ihl = (f[14]! & 0x0f) * 4;
        const ipLen = f.readUInt16BE(16);
        if (f[14 + ihl] !== 8 || 14 + ipLen > f.length || ipLen > 2000) continue;
        this.echoRequests++;
        const r = this.out.subarray(o, o + hdr + 14 + ipLen);
        r.fill(0, 0, hdr);
        const a = r.subarray(hdr);
        f.copy(a, 0, 0, 14 + ipLen);
        f.copy(a, 0, 6, 12); FAKE_MAC.copy(a, 6);                  // swap MACs
        f.copy(a, 26, 30, 34); f.copy(a, 30, 26, 30);              // swap IPs
        a[22] = 64; a.writeUInt16BE(0, 24); a.writeUInt16BE(checksum(a, 14, 14 + ihl), 24);
        a[14 + ihl] = 0;                                            // echo reply
        a.writeUInt16BE(0, 16 + ihl); a.writeUInt16BE(checksum(a, 14 + ihl, 14 + ipLen), 16 + ihl);
        this.outLengths[replies++] = hdr + 14 + ipLen;
      } else if (type === 0x0800 && f.length >= 42 && f[23] === 17 && f.subarray(30, 34).equals(ipBytes(SINK_IP))) {
        this.udpToSink.push(Buffer.from(f));
      }
    }
    if (replies > 0) this.tap.writeBatch(this.out, this.outOffsets, this.outLengths, replies);
  };
}

/** Runs a short node program inside the namespace that sends `count` numbered UDP datagrams to SINK_IP:9999. */
function sendUdpFromNamespace(ns: string, count: number): Promise<{ code: number; out: string }> {
  const script = `
    const s = require('dgram').createSocket('udp4');
    let i = 0;
    const next = () => {
      if (i === ${count}) return s.close();
      const b = Buffer.alloc(60 + (i % 200));
      b.writeUInt32BE(i, 0);
      for (let k = 4; k < b.length; k++) b[k] = (i + k) & 255;
      i++;
      s.send(b, 9999, '${SINK_IP}', next);
    };
    next();`;
  return run('ip', ['netns', 'exec', ns, process.execPath, '-e', script], 60000);
}

/** Checks a captured frame is the UDP datagram number `seq` as sent by sendUdpFromNamespace. */
function isIntactDatagram(f: Buffer, tapMac: Buffer, seq: number): boolean {
  const ihl = (f[14]! & 0x0f) * 4;
  const udp = 14 + ihl;
  const payload = f.subarray(udp + 8);
  if (!f.subarray(0, 6).equals(Buffer.from(SINK_MAC.split(':').map((h) => parseInt(h, 16))))) return false;
  if (!f.subarray(6, 12).equals(tapMac)) return false;
  if (!f.subarray(26, 30).equals(ipBytes(NS_IP)) || f.readUInt16BE(udp + 2) !== 9999) return false;
  if (payload.length !== 60 + (seq % 200) || f.readUInt16BE(udp + 4) !== 8 + payload.length) return false;
  if (payload.readUInt32BE(0) !== seq) return false;
  for (let k = 4; k < payload.length; k++) if (payload[k] !== ((seq + k) & 255)) return false;
  return true;
}

t.test('bogus names and bad arguments give JS errors, not crashes', async (t) => {
  const expectCode = (fn: () => unknown, code: string, what: string): void => {
    try {
      fn();
      t.fail(`${what}: no exception`);
    } catch (err) {
      t.ok(err instanceof RouterError && err.code === code, `${what}: RouterError ${code} (${String(err)})`);
    }
  };
  expectCode(() => TapDevice.open('x'.repeat(40)), 'config', 'name too long');
  expectCode(() => TapDevice.open(''), 'config', 'empty name');
  expectCode(() => TapDevice.open('bad/name'), 'io', 'name the kernel refuses');
  expectCode(() => TapDevice.open('wvtok', { offloadFlags: TAP_OFFLOAD_GSO }), 'config', 'offloads without vnet header');
  expectCode(() => TapDevice.open('wvtok', { maxBatchCount: 0 }), 'config', 'batch of zero');

  // Straight at the addon, past the TypeScript checks.
  const native = loadNative();
  const fake = {} as unknown as TapHandle;
  const garbage: Array<[string, () => unknown, RegExp]> = [
    ['name too long', () => native.tapOpen('x'.repeat(40), false, 0, 0), /limit is 15/],
    ['name not a string', () => native.tapOpen(42 as unknown as string, false, 0, 0), /must be a string/],
    ['name with NUL', () => native.tapOpen('wvt\0x', false, 0, 0), /NUL/],
    ['bad vnet header size', () => native.tapOpen('wvtok', false, 11 as 10, 0), /vnetHdrBytes/],
    ['persist not a boolean', () => native.tapOpen('wvtok', 'yes' as unknown as boolean, 0, 0), /boolean/],
    ['write to a fake handle', () => native.tapWrite(fake, Buffer.alloc(10), new Int32Array(1), new Int32Array(1), 1), /handle/],
    ['UDP function on nothing', () => native.localAddress(undefined as never), /handle/],
  ];
  for (const [what, fn, re] of garbage) t.throws(fn, re, what);
  const tooLong = (() => { try { native.tapOpen('bad/name', false, 0, 0); return null; } catch (e) { return e; } })();
  t.match(tooLong, { code: 'EINVAL', syscall: 'TUNSETIFF' }, 'kernel refusals carry code and syscall');
});

t.test('ping through the TAP: frames arrive as batches, written frames reach the kernel', async (t) => {
  for (const vnet of [false, true]) {
    await t.test(vnet ? 'with vnet header and GSO offloads' : 'plain frames', async (t) => {
      const { tap, ns, tapMac } = tapInNamespace(t, vnet ? { vnetHdr: true, offloadFlags: TAP_OFFLOAD_GSO } : {});
      t.equal(tap.vnetHdrBytes, vnet ? 10 : 0);
      t.throws(() => sh('ip', ['link', 'show', tap.name]), 'the link left the root namespace');
      const host = new FakeHost(tap);
      tap.onFrames(host.onFrames);
      const before = linkStats(ns, tap.name).rxPackets;
      const ping = await run('ip', ['netns', 'exec', ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', FAKE_IP]);
      t.equal(ping.code, 0, 'ping succeeds: our ARP and echo replies reached the kernel');
      t.match(ping.out, /3 received/);
      t.ok(host.arpRequests.length >= 1, 'ARP request seen');
      t.same(host.arpRequests[0], { senderMac: tapMac.toString('hex'), senderIp: NS_IP }, 'ARP request content');
      t.equal(host.echoRequests, 3, 'three echo requests seen');
      const s = tap.stats();
      t.ok(s.txPackets >= 4, `tx counted in the addon (${s.txPackets})`);
      t.equal(s.txErrors, 0);
      t.ok(linkStats(ns, tap.name).rxPackets - before >= 4, 'kernel counted our frames as received');
      t.ok(s.rxBatches >= 1 && s.rxPackets >= 4);
    });
  }
});

t.test('frames queued while paused arrive in batches of up to 64, contents intact', async (t) => {
  const { tap, ns, tapMac } = tapInNamespace(t);
  const host = new FakeHost(tap);
  tap.onFrames(host.onFrames);
  tap.pause();
  const sent = await sendUdpFromNamespace(ns, 200);
  t.equal(sent.code, 0, `sender ran (${sent.out.trim()})`);
  t.equal(host.udpToSink.length, 0, 'nothing delivered while paused');
  tap.resume();
  t.ok(await waitFor(() => host.udpToSink.length >= 200, 5000), 'all 200 frames arrive after resume');
  let intact = 0;
  host.udpToSink.forEach((f, seq) => { if (isIntactDatagram(f, tapMac, seq)) intact++; });
  t.equal(intact, 200, 'every frame intact and in order');
  const biggest = Math.max(...host.batches);
  t.ok(biggest > 1 && biggest <= 64, `batches of more than one, at most 64 (largest ${biggest})`);
});

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
  await waitFor(() => frames >= count, 1000);
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
      t.ok(await waitFor(() => serverOut.includes('ready'), 10000), 'sink listening in namespace B');
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

t.test('a deleted device stops the reader with an error, not a crash or a spin', async (t) => {
  const { tap, ns } = tapInNamespace(t);
  const errors: RouterError[] = [];
  tap.onFrames(() => undefined);
  tap.onError((err) => errors.push(err));
  sh('ip', ['-n', ns, 'link', 'del', tap.name]);
  t.ok(await waitFor(() => errors.length > 0, 3000), 'onError fired');
  t.match(errors[0]?.message ?? '', /EBADFD|EIO/, String(errors[0]));
  t.equal(errors[0]?.code, 'io');
  const polls = tap.stats().pollErrors;
  await new Promise((r) => setTimeout(r, 100));
  t.equal(tap.stats().pollErrors, polls, 'no further wakeups once stopped');
  t.equal(tap.writeFrame(Buffer.alloc(60), 0, 60), false, 'writes fail quietly');
  t.ok(tap.stats().txErrors >= 1, 'and are counted');
  tap.close();
  t.equal(tap.writeFrame(Buffer.alloc(60), 0, 60), false, 'writes after close are dropped');
});

t.test('persist keeps the device after close; reopening can drop it', async (t) => {
  const name = `wvt${process.pid}p`;
  t.teardown(() => quiet('ip', ['link', 'del', name]));
  TapDevice.open(name, { persist: true, vnetHdr: true, vnetHdrBytes: 12, offloadFlags: TAP_OFFLOAD_GSO }).close();
  t.doesNotThrow(() => sh('ip', ['link', 'show', name]), 'persistent device outlives its fd');
  // Reopening without vnet header must work although the device had offloads:
  // the addon always resets them (TUNSETOFFLOAD 0).
  const again = TapDevice.open(name, { persist: false });
  t.equal(again.vnetHdrBytes, 0);
  again.close();
  t.throws(() => sh('ip', ['link', 'show', name]), 'non-persistent device is gone with its fd');
});

t.test('close inside the handler; a process with an open reader still exits', async (t) => {
  const { tap, ns } = tapInNamespace(t);
  let calls = 0;
  tap.onFrames(() => { calls++; tap.close(); });
  await run('ip', ['netns', 'exec', ns, 'ping', '-c', '2', '-i', '0.2', '-W', '1', FAKE_IP]);
  t.equal(calls, 1, 'no batch after close');
  t.ok(tap.closed);

  // No traffic: the device is created down in the root namespace and dies with the child.
  const modulePath = path.resolve(__dirname, '..', '..', 'router', 'overlay', 'tap-device.js');
  const scripts: Record<string, string> = {
    unref: `const { TapDevice } = require(${JSON.stringify(modulePath)});
      const tap = TapDevice.open('wvt${process.pid}c1'); tap.onFrames(() => {}); tap.unref();`,
    close: `const { TapDevice } = require(${JSON.stringify(modulePath)});
      const tap = TapDevice.open('wvt${process.pid}c2'); tap.onFrames(() => {}); setTimeout(() => tap.close(), 50);`,
    exitCall: `const { TapDevice } = require(${JSON.stringify(modulePath)});
      const tap = TapDevice.open('wvt${process.pid}c3'); tap.onFrames(() => {}); setTimeout(() => process.exit(0), 50);`,
  };
  t.teardown(() => { for (const n of ['c1', 'c2', 'c3']) quiet('ip', ['link', 'del', `wvt${process.pid}${n}`]); });
  for (const [what, script] of Object.entries(scripts)) {
    const res = await run(process.execPath, ['-e', script], 10000);
    t.equal(res.code, 0, `${what}: exits on its own (${res.out.trim()})`);
  }
});
