// Kernel relay rules (router/host/kernel-relay-rules.ts) on a real kernel:
// three hosts on one switch, h1 and h3 unable to reach each other, h2 relaying
// between their UDP 6783 with KernelRelayRules running inside h2's namespace
// (kernel-relay-agent.ts; its ports reserved there, as the router's would be).
// Checked with real sockets: h1's datagram to h2:portA reaches h3 from
// h2:portB and h3's reply reaches h1 from h2:portA; another port or host is
// not forwarded; counters count exactly what was forwarded; the ports are
// held while open and free after; close() stops exactly its pair and leaves
// none of its rules; closeAll() and removeKernelRelayTable leave no table.
// Frames written into a TAP on the switch (CHECKSUM_NONE, so h3 checks the
// UDP checksum itself) show the checksum right after the rewrite, a zero
// checksum passing as zero, and that broadcasts, datagrams for an address
// not h2's and fragments are left alone. Needs root.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';
import { ExecCommandRunner, NetnsCommandRunner } from '../../router/host/command-runner';
import { removeKernelRelayTable, type KernelRelayPair } from '../../router/host/kernel-relay-rules';
import { TapDevice } from '../../router/overlay/tap-device';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { sleep, waitFor } from '../../scripts/wait';
import type { AgentRequest, Heard } from './kernel-relay-agent';
import { checksum, macBytes } from './spoof-frames';

t.setTimeout(120_000);

const SLEEVE = 6783;
const OTHER = 6790;
const TABLE = ['netdev', 'weave-krelay'];
// A MAC for the frames the TAP plays; the bridge learns it on the TAP's port.
const WIRE_MAC = '02:6b:72:00:00:01';

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

/** A kernel-relay-agent.js in a namespace, asked one request at a time. */
class Agent {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly child: ChildProcessWithoutNullStreams;
  readonly ready: Promise<void>;
  stderr = '';

  constructor(readonly host: SimHost) {
    const script = join(__dirname, 'kernel-relay-agent.js');
    this.child = spawn('ip', ['netns', 'exec', host.ns, process.execPath, script], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    let ready: () => void = () => undefined;
    this.ready = new Promise((resolve) => { ready = resolve; });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      if (line === 'ready') { ready(); return; }
      const answer = JSON.parse(line) as { id: number; ok: boolean; result?: unknown; error?: string };
      const w = this.waiting.get(answer.id);
      this.waiting.delete(answer.id);
      if (answer.ok) w?.resolve(answer.result);
      else w?.reject(new Error(answer.error));
    });
    this.child.on('exit', (code) => {
      for (const w of this.waiting.values()) w.reject(new Error(`agent in ${host.name} exited (${code}): ${this.stderr.slice(-500)}`));
      this.waiting.clear();
    });
  }

  call<R>(req: AgentRequest): Promise<R> {
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.stdin.write(`${JSON.stringify({ id, ...req })}\n`);
    });
  }

  heard(port: number): Promise<Heard[]> {
    return this.call({ op: 'heard', port });
  }

  /** Closing stdin asks it to close everything and exit; a kill is the fallback. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin.end();
    await Promise.race([exited, sleep(5_000)]);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

function ipv4Bytes(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

interface FrameSpec {
  dstMac: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  text: string;
  /** 'good' as a kernel without offload would compute it; 'zero' for none. */
  udpChecksum: 'good' | 'zero';
  moreFragments?: boolean;
}

/** An Ethernet frame holding one IPv4 UDP datagram, every checksum filled in by hand. */
function udpFrame(f: FrameSpec): Buffer {
  const payload = Buffer.from(f.text);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(f.sport, 0);
  udp.writeUInt16BE(f.dport, 2);
  udp.writeUInt16BE(8 + payload.length, 4);
  if (f.udpChecksum === 'good') {
    const pseudo = Buffer.concat([ipv4Bytes(f.src), ipv4Bytes(f.dst), Buffer.from([0, 17]), udp.subarray(4, 6)]);
    udp.writeUInt16BE(checksum(pseudo, udp, payload) || 0xffff, 6);
  }
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 8 + payload.length, 2);
  ip.writeUInt16BE(0x1234, 4);
  ip.writeUInt16BE(f.moreFragments === true ? 0x2000 : 0x4000, 6);
  ip[8] = 64;
  ip[9] = 17;
  ipv4Bytes(f.src).copy(ip, 12);
  ipv4Bytes(f.dst).copy(ip, 16);
  ip.writeUInt16BE(checksum(ip), 10);
  return Buffer.concat([macBytes(f.dstMac), macBytes(WIRE_MAC), Buffer.from([0x08, 0x00]), ip, udp, payload]);
}

/** The rules of our table in h2, each as its chain and comment, sorted; null when there is no table. */
async function listTable(h2: SimHost): Promise<string[] | null> {
  const r = await h2.exec(['nft', '-j', 'list', 'table', ...TABLE]);
  if (r.code !== 0) return null;
  const items = (JSON.parse(r.stdout) as { nftables: Array<{ rule?: { chain: string; comment?: string } }> }).nftables;
  return items.flatMap((i) => (i.rule === undefined ? [] : [`${i.rule.chain} ${i.rule.comment ?? ''}`.trim()])).sort();
}

/** What listTable shows for one pair on a host with one device: its legs' rules, two a chain. */
const legRules = (p: KernelRelayPair): string[] =>
  [p.portA, p.portA, p.portB, p.portB].map((port) => `leg-${port} ${key(p)}`).sort();

const key = (p: KernelRelayPair): string => `${p.portA}/${p.portB}`;
const texts = (heard: Heard[]): string[] => heard.map((h) => h.text);

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (namespaces, nftables)';
  return false;
}

t.test('h2 relays h1 <-> h3 in its kernel, exactly as opened, until closed', { skip: skipReason() }, async (t: Tap) => {
  const net = await SimNetwork.create({ hosts: 3 });
  const agents: Agent[] = [];
  let tap: TapDevice | null = null;
  const tapName = `wvt${process.pid}t9`;
  t.teardown(async () => {
    tap?.close();
    for (const a of agents) await a.stop();
    await net.destroy();
    await run(['ip', 'link', 'del', tapName]); // only if the move into the switch never happened
  });
  const [h1, h2, h3] = net.hosts as [SimHost, SimHost, SimHost];
  await net.blockBetween('h1', 'h3', 'all');
  const [r, e1, e3] = [h2, h1, h3].map((h) => {
    const a = new Agent(h);
    agents.push(a);
    return a;
  }) as [Agent, Agent, Agent];
  await Promise.all(agents.map((a) => a.ready));
  for (const e of [e1, e3]) for (const port of [SLEEVE, OTHER]) await e.call({ op: 'bind', port });
  const h2Mac = (JSON.parse((await h2.exec(['ip', '-j', 'link', 'show', 'eth0'], { check: true })).stdout) as Array<{ address: string }>)[0]!.address;

  const a = { host: h1.address, port: SLEEVE };
  const b = { host: h3.address, port: SLEEVE };
  const pair = await r.call<KernelRelayPair>({ op: 'open', a, b });
  t.not(pair.portA, pair.portB);
  t.same(await listTable(h2), ['in-eth0', ...legRules(pair)], 'the base chain\'s rule, and two rules a leg');
  t.equal(await r.call({ op: 'canBind', port: pair.portA }), 'EADDRINUSE', 'portA is held');
  t.equal(await r.call({ op: 'canBind', port: pair.portB }), 'EADDRINUSE', 'portB is held');

  const send = (e: Agent, from: number, to: { host: string; port: number }, text: string) => e.call({ op: 'send', from, host: to.host, port: to.port, text });
  const waitHeard = (e: Agent, port: number, text: string) => waitFor(async () => (await e.heard(port)).find((h) => h.text === text), {
    what: `${e.host.name}:${port} hearing ${text}`, timeoutMs: 10_000, intervalMs: 50, detail: () => r.stderr.slice(-2000),
  });
  const relayA = { host: h2.address, port: pair.portA };
  const relayB = { host: h2.address, port: pair.portB };
  let forwarded = 0;
  let forwardedBytes = 0;
  const counted = (text: string) => { forwarded++; forwardedBytes += 20 + 8 + Buffer.byteLength(text); };

  await t.test('a datagram each way, from the relay\'s other port', async (t) => {
    await send(e1, SLEEVE, relayA, 'one');
    t.same(await waitHeard(e3, SLEEVE, 'one'), { from: h2.address, port: pair.portB, text: 'one' });
    counted('one');
    await send(e3, SLEEVE, relayB, 'reply');
    t.same(await waitHeard(e1, SLEEVE, 'reply'), { from: h2.address, port: pair.portA, text: 'reply' });
    counted('reply');
  });

  await t.test('another source port or host is not forwarded', async (t) => {
    await send(e1, OTHER, relayA, 'wrong-port');
    await send(e3, SLEEVE, relayA, 'wrong-host');
    await send(e1, SLEEVE, relayB, 'wrong-way');
    // Sent after the strays on the same wires: once it is heard, they would have been.
    await send(e1, SLEEVE, relayA, 'two');
    await waitHeard(e3, SLEEVE, 'two');
    counted('two');
    await sleep(300);
    const all = [...await e1.heard(SLEEVE), ...await e1.heard(OTHER), ...await e3.heard(SLEEVE), ...await e3.heard(OTHER)];
    t.same(texts(all).filter((x) => x.startsWith('wrong')), []);
  });

  await t.test('frames on the wire: checksums right after the rewrite, strays left alone', async (t) => {
    tap = TapDevice.open(tapName);
    await run(['ip', 'link', 'set', tapName, 'netns', net.switchNs], { check: true });
    await run(['ip', '-n', net.switchNs, 'link', 'set', tapName, 'master', 'br0', 'up'], { check: true });
    const frame = (text: string, over: Partial<FrameSpec> = {}) => udpFrame({
      dstMac: h2Mac, src: h1.address, dst: h2.address, sport: SLEEVE, dport: pair.portA, text, udpChecksum: 'good', ...over,
    });
    const write = (f: Buffer) => t.ok(tap!.writeFrame(f, 0, f.length), 'the TAP took the frame');
    write(frame('wrong-broadcast', { dstMac: 'ff:ff:ff:ff:ff:ff' }));
    write(frame('wrong-not-ours', { dst: h2.address.replace(/\.\d+$/, '.77') }));
    write(frame('wrong-fragment', { moreFragments: true }));
    write(frame('wire-zero', { udpChecksum: 'zero' }));
    write(frame('wire-checksummed'));
    await waitHeard(e3, SLEEVE, 'wire-zero');
    counted('wire-zero');
    await waitHeard(e3, SLEEVE, 'wire-checksummed');
    counted('wire-checksummed');
    await sleep(300);
    t.same(texts(await e3.heard(SLEEVE)).filter((x) => x.startsWith('wrong')), []);
    const csumErrors = await h3.exec(['nstat', '-az', 'UdpInCsumErrors'], { check: true });
    t.match(csumErrors.stdout, /UdpInCsumErrors\s+0\s/, 'h3 found no bad checksum');
  });

  await t.test('counters count exactly what was forwarded', async (t) => {
    t.same(await r.call({ op: 'counters' }), { [key(pair)]: { packets: forwarded, bytes: forwardedBytes } });
  });

  await t.test('close stops exactly its pair and frees its ports', async (t) => {
    const other = await r.call<KernelRelayPair>({ op: 'open', a: { host: h1.address, port: OTHER }, b: { host: h3.address, port: OTHER } });
    await r.call({ op: 'close', pair });
    await r.call({ op: 'close', pair });
    t.same(await listTable(h2), ['in-eth0', ...legRules(other)].sort(), 'only the other pair\'s rules are left');
    await send(e1, SLEEVE, relayA, 'after-close');
    await send(e1, OTHER, { host: h2.address, port: other.portA }, 'other');
    t.same(await waitHeard(e3, OTHER, 'other'), { from: h2.address, port: other.portB, text: 'other' });
    await sleep(300);
    t.notOk(texts(await e3.heard(SLEEVE)).includes('after-close'));
    t.equal(await r.call({ op: 'canBind', port: pair.portA }), 'bound', 'portA is free again');
    t.equal(await r.call({ op: 'canBind', port: pair.portB }), 'bound', 'portB is free again');
    t.same(await r.call({ op: 'counters' }), { [key(other)]: { packets: 1, bytes: 20 + 8 + 5 } });

    await r.call({ op: 'closeAll' });
    t.equal(await listTable(h2), null, 'closeAll leaves no table');
    await send(e1, OTHER, { host: h2.address, port: other.portA }, 'after-close-all');
    await sleep(500);
    t.notOk(texts(await e3.heard(OTHER)).includes('after-close-all'));
  });

  await t.test('refusals change nothing', async (t) => {
    await t.rejects(r.call({ op: 'open', a, b: { host: '198.51.100.1', port: SLEEVE } }), /route to 198\.51\.100\.1: .*Network is unreachable/);
    await t.rejects(r.call({ op: 'open', a, b: { host: h2.address, port: SLEEVE } }), /is an address of this host/);
    await t.rejects(r.call({ op: 'open', a, b: { host: 'fd00::3', port: SLEEVE } }), /kernel relay is IPv4 only/);
    t.equal(await listTable(h2), null);
  });

  await t.test('removeKernelRelayTable, as weave reset runs it without a router', async (t) => {
    await r.call({ op: 'open', a, b });
    t.equal((await listTable(h2))?.length, 5);
    const runner = new NetnsCommandRunner(new ExecCommandRunner(), h2.ns);
    await removeKernelRelayTable(runner);
    t.equal(await listTable(h2), null);
    await removeKernelRelayTable(runner);
    t.pass('and again, with nothing to remove');
  });
});
