// One sender of the live mutation runner (scripts/mutate-live.ts), run inside
// a namespace of the simulated network with `ip netns exec`. It sends
// mutated messages (mutate-corpus.ts) of one kind at a live daemon, as fast
// as the daemon takes them, and prints one JSON line of counts at the end:
//   handshake  TCP to the control port: a mutated Hello, or a valid Hello (real
//              Handshake code, a password nobody has) and then a mutated Auth
//   control    a plaintext mesh: connects as a peer with the real handshake,
//              keeps the gossip the daemon sends (every channel) as seeds, then
//              sends mutated control messages and gossip, reconnecting when the
//              daemon hangs up; sleeve datagrams from the same peer in between
//   sleeve     UDP datagrams at the sleeve port, as a stranger
//   dns-udp, dns-tcp, mdns   mutated queries at weave DNS / the mDNS group
//
// Usage: node dist/scripts/mutate-worker.js <mode> --target IP --iterations N --seed S [--names a,b]

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { frame, FrameDecoder } from '../router/mesh/framing';
import { Handshake } from '../router/mesh/handshake';
import { PeerKey } from '../router/mesh/peer-key';
import { decodeControlMessage, encodeGossip } from '../router/mesh/protocol';
import type { PeerName } from '../router/mesh/peer-name';
import { loadSodium } from '../router/mesh/sodium';
import { SeededRng } from './chaos-faults';
import { mutate, randomPeerName, someControlMessage, someDnsPacket, someHello, someSleeveDatagram } from './mutate-corpus';

const PORT = 6783;
export interface WorkerCounts { mode: string; sent: number; connections: number; closedByDaemon: number; replies: number; established: number; seeds: number; errors: string[] }

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : fallback;
  if (v === undefined) throw new Error(`mutate-worker: --${name} is required`);
  return v;
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A TCP connection that hands out the daemon's frames one by one. */
class FramedConn {
  readonly decoder = new FrameDecoder(64 * 1024 * 1024);
  private waiting: ((b: Uint8Array | null) => void) | null = null;
  private queue: Uint8Array[] = [];
  closed = false;
  constructor(readonly sock: Socket) {
    sock.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let f = this.decoder.next(); f !== null; f = this.decoder.next()) this.queue.push(f);
      this.wake();
    });
    sock.on('close', () => { this.closed = true; this.wake(); });
    sock.on('error', () => undefined);
  }
  private wake(): void {
    if (this.waiting === null) return;
    const w = this.waiting;
    if (this.queue.length > 0) { this.waiting = null; w(this.queue.shift()!); } else if (this.closed) { this.waiting = null; w(null); }
  }
  next(timeoutMs: number): Promise<Uint8Array | null> {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift()!);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.waiting = null; resolve(null); }, timeoutMs);
      this.waiting = (b) => { clearTimeout(timer); resolve(b); };
    });
  }
  send(b: Uint8Array): void { if (!this.closed) this.sock.write(b); }
  static open(host: string): Promise<FramedConn | null> {
    return new Promise((resolve) => {
      const sock = connect({ host, port: PORT });
      const timer = setTimeout(() => { sock.destroy(); resolve(null); }, 3000);
      sock.once('connect', () => { clearTimeout(timer); resolve(new FramedConn(sock)); });
      sock.once('error', () => { clearTimeout(timer); resolve(null); });
    });
  }
}

async function handshakeMode(c: WorkerCounts, rng: SeededRng, target: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const conn = await FramedConn.open(target);
    if (conn === null) { await delay(100); continue; }
    c.connections++;
    const theirs = await conn.next(3000);
    if (theirs !== null && rng.next() < 0.5) {
      // A valid Hello from the real code, then a mutated Auth.
      const withPassword = theirs.length > 11 && (theirs[10]! & 1) === 1;
      const key = withPassword ? Uint8Array.from({ length: 32 }, () => rng.int(0, 255)) : null;
      const peerKey = PeerKey.fromSeed(Uint8Array.from({ length: 32 }, () => rng.int(0, 255)));
      const { handshake, hello } = Handshake.start({ local: { name: peerKey.name, nickname: 'mutator', incarnation: i, listenPort: PORT }, key: peerKey, passwordKey: key });
      conn.send(frame(hello));
      try {
        const auth = handshake.consumeHello(theirs).auth;
        conn.send(frame(rng.next() < 0.1 ? auth : mutate(rng, auth)));
      } catch (e) { c.errors.length < 5 && c.errors.push(`own handshake: ${String(e)}`); }
    } else {
      const hello = someHello(rng);
      conn.send(rng.next() < 0.1 ? mutate(rng, frame(hello)) : frame(mutate(rng, hello)));
    }
    c.sent++;
    if ((await conn.next(rng.next() < 0.9 ? 150 : 1000)) === null && conn.closed) c.closedByDaemon++;
    conn.sock.destroy();
  }
}

async function controlMode(c: WorkerCounts, rng: SeededRng, target: string, n: number): Promise<void> {
  const selfKey = PeerKey.fromSeed(Uint8Array.from({ length: 32 }, () => rng.int(0, 255)));
  const self = selfKey.name;
  const seeds: Uint8Array[] = [];
  const udp = createSocket('udp4');
  udp.bind(PORT);
  let peer: PeerName | null = null;
  let incarnation = Date.now();
  while (c.sent < n) {
    const conn = await FramedConn.open(target);
    if (conn === null) { await delay(300); continue; }
    c.connections++;
    const { handshake, hello } = Handshake.start({ local: { name: self, nickname: 'mutator', incarnation: incarnation++, listenPort: PORT }, key: selfKey, passwordKey: null });
    conn.send(frame(hello));
    const theirHello = await conn.next(3000);
    if (theirHello === null) { conn.sock.destroy(); await delay(300); continue; }
    try {
      conn.send(frame(handshake.consumeHello(theirHello).auth));
      const theirAuth = await conn.next(3000);
      if (theirAuth === null) throw new Error('no Auth');
      peer = handshake.consumeAuth(theirAuth).remote.name;
    } catch (e) {
      if (c.errors.length < 5) c.errors.push(`handshake: ${String(e)}`);
      conn.sock.destroy();
      await delay(500);
      continue;
    }
    c.established++;
    // Whatever the daemon gossips to a new neighbour is a valid seed of its channel.
    for (let f = await conn.next(1500); f !== null; f = await conn.next(seeds.length > 0 ? 50 : 1500)) {
      try {
        const m = decodeControlMessage(f);
        if (m.type === 'gossip' && seeds.length < 64) {
          seeds.push(encodeGossip(m.kind, m.channel, m.kind === 'neighbour' ? self : m.src, m.dst, m.payload));
          c.seeds++;
        }
      } catch { /* not ours to judge */ }
    }
    while (!conn.closed && c.sent < n) {
      const base = seeds.length > 0 && rng.next() < 0.6 ? rng.pick(seeds) : someControlMessage(rng, self, peer);
      conn.send(frame(rng.next() < 0.1 ? base : mutate(rng, base)));
      c.sent++;
      if (rng.next() < 0.3) udp.send(mutate(rng, someSleeveDatagram(rng, self, peer)), PORT, target);
      if (c.sent % 20 === 0) await delay(5);
      while ((await conn.next(0)) !== null) { /* drain */ }
    }
    if (conn.closed) c.closedByDaemon++;
    conn.sock.destroy();
    await delay(100);
  }
  udp.close();
}

async function datagramMode(c: WorkerCounts, sock: UdpSocket, n: number, make: () => Uint8Array, port: number, to: string): Promise<void> {
  sock.on('message', () => { c.replies++; });
  for (let i = 0; i < n; i++) {
    sock.send(make(), port, to);
    c.sent++;
    if (i % 10 === 0) await delay(2);
  }
  await delay(500);
  sock.close();
}

async function dnsTcpMode(c: WorkerCounts, rng: SeededRng, server: string, names: string[], n: number): Promise<void> {
  while (c.sent < n) {
    const sock = await new Promise<Socket | null>((resolve) => {
      const s = connect({ host: server, port: 53 });
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(null));
    });
    if (sock === null) { await delay(100); continue; }
    c.connections++;
    sock.on('data', () => { c.replies++; });
    sock.on('error', () => undefined);
    for (let k = rng.int(1, 4); k > 0 && c.sent < n; k--) {
      const q = someDnsPacket(rng, names, false);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(q.length);
      const whole = Uint8Array.from([...len, ...q]);
      sock.write(rng.next() < 0.1 ? whole : rng.next() < 0.3 ? mutate(rng, whole) : Uint8Array.from([...len, ...mutate(rng, q)].slice(0, 2 + 65535)));
      c.sent++;
    }
    await delay(rng.next() < 0.9 ? 20 : 300);
    sock.destroy();
  }
}

async function main(): Promise<void> {
  const mode = process.argv[2] ?? '';
  await loadSodium();
  const n = Number(arg('iterations'));
  const rng = new SeededRng(Number(arg('seed')));
  const c: WorkerCounts = { mode, sent: 0, connections: 0, closedByDaemon: 0, replies: 0, established: 0, seeds: 0, errors: [] };
  const names = arg('names', 'c1.weave.local').split(',');
  const nameserver = (): string => /^nameserver\s+(\S+)/m.exec(readFileSync('/etc/resolv.conf', 'utf8'))?.[1] ?? '127.0.0.1';
  switch (mode) {
    case 'handshake': await handshakeMode(c, rng, arg('target'), n); break;
    case 'control': await controlMode(c, rng, arg('target'), n); break;
    case 'sleeve': {
      const self = randomPeerName(rng);
      const victim = randomPeerName(rng);
      await datagramMode(c, createSocket('udp4'), n, () => mutate(rng, someSleeveDatagram(rng, rng.next() < 0.5 ? self : randomPeerName(rng), victim)), PORT, arg('target'));
      break;
    }
    case 'dns-udp': {
      const server = nameserver();
      await datagramMode(c, createSocket('udp4'), n, () => { const q = someDnsPacket(rng, names, false); return rng.next() < 0.1 ? q : mutate(rng, q); }, 53, server);
      break;
    }
    case 'dns-tcp': await dnsTcpMode(c, rng, nameserver(), names, n); break;
    case 'mdns': {
      const sock = createSocket({ type: 'udp4', reuseAddr: true });
      await new Promise<void>((r) => sock.bind(0, () => r()));
      sock.setMulticastInterface(arg('iface-address'));
      const local = names.map((x) => x.replace(/\.weave\.local$/, '.local'));
      await datagramMode(c, sock, n, () => { const q = someDnsPacket(rng, local, true); return rng.next() < 0.1 ? q : mutate(rng, q); }, 5353, '224.0.0.251');
      break;
    }
    default: throw new Error(`mutate-worker: unknown mode ${JSON.stringify(mode)}`);
  }
  process.stdout.write(`${JSON.stringify(c)}\n`);
}

if (require.main === module) {
  main().then(() => process.exit(0), (e: unknown) => {
    process.stderr.write(`mutate-worker: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
}
