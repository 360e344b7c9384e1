// TapDevice against a real kernel: argument and name checks, ping through a
// TAP whose far side we play (ARP and echo replies), frames queued while
// paused arriving as intact batches, a device deleted under its reader,
// persistence, and closing from inside the handler. Each test moves its TAP
// into a namespace of its own (tap-namespace.ts); traffic never leaves those
// namespaces. Needs root.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { RouterError } from '../../router/mesh/errors';
import { loadNative, type TapHandle } from '../../router/overlay/native';
import { TapDevice, TAP_OFFLOAD_GSO } from '../../router/overlay/tap-device';
import {
  FAKE_IP, FAKE_MAC, NS_IP, SINK_IP, SINK_MAC, ipBytes, linkStats, quiet, run, sh, sweepStale, tapInNamespace,
} from './tap-namespace';
import { pollUntil } from '../../scripts/wait';

sweepStale();

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
  t.ok(await pollUntil(() => host.udpToSink.length >= 200, { timeoutMs: 5000, intervalMs: 5 }), 'all 200 frames arrive after resume');
  let intact = 0;
  host.udpToSink.forEach((f, seq) => { if (isIntactDatagram(f, tapMac, seq)) intact++; });
  t.equal(intact, 200, 'every frame intact and in order');
  const biggest = Math.max(...host.batches);
  t.ok(biggest > 1 && biggest <= 64, `batches of more than one, at most 64 (largest ${biggest})`);
});

t.test('drainNow delivers what waits at once, through the batch handler', async (t) => {
  const { tap, ns } = tapInNamespace(t);
  const host = new FakeHost(tap);
  tap.onFrames(host.onFrames);
  // The sender runs while the event loop is blocked, so no reader wakes up before drainNow.
  execFileSync('ip', ['netns', 'exec', ns, process.execPath, '-e',
    `const s = require('dgram').createSocket('udp4'); s.send(Buffer.alloc(60), 9999, '${SINK_IP}', () => s.close());`]);
  t.equal(host.udpToSink.length, 0, 'nothing read while the loop was blocked');
  tap.drainNow();
  t.equal(host.udpToSink.length, 1, 'drainNow delivered the frame synchronously');
  tap.drainNow();
  t.equal(host.batches.length, 1, 'an empty queue delivers no batch');
  tap.pause();
  execFileSync('ip', ['netns', 'exec', ns, process.execPath, '-e',
    `const s = require('dgram').createSocket('udp4'); s.send(Buffer.alloc(60), 9999, '${SINK_IP}', () => s.close());`]);
  tap.drainNow();
  t.equal(host.udpToSink.length, 1, 'a paused reader is not drained');
});

t.test('a deleted device stops the reader with an error, not a crash or a spin', async (t) => {
  const { tap, ns } = tapInNamespace(t);
  const errors: RouterError[] = [];
  tap.onFrames(() => undefined);
  tap.onError((err) => errors.push(err));
  sh('ip', ['-n', ns, 'link', 'del', tap.name]);
  t.ok(await pollUntil(() => errors.length > 0, { timeoutMs: 3000, intervalMs: 5 }), 'onError fired');
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
