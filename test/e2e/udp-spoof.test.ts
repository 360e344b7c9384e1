// A plaintext mesh (no password) under a UDP spoofing attack: a third host on
// the underlay sends h2 sleeve datagrams that name h1 (frames and probes,
// built with the sleeve codec) while a container on h2 pings one on h1.
// h2 must keep sending h1's frames to h1's real address: the attacker gets no
// frame, status still shows h1's address, the pings keep working, and h2
// counts the spoofed datagrams as dropped for their source
// (router/overlay/udp-endpoint.ts). Needs root.

import t from 'tap';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { sleep, waitFor } from '../../scripts/wait';
import type { PeerName } from '../../router/mesh/peer-name';
import type { RouterStatus } from '../../router/mesh/status';
import {
  BROADCAST_PEER, INNER_HEADER_BYTES, MAX_HOPS, peerNameBytes, SLEEVE_HEADER_BYTES, SLEEVE_TYPE_FRAME, SLEEVE_TYPE_PROBE,
  VNET_HDR_BYTES, writeInnerHeader, writeSleeveHeader,
} from '../../router/overlay/sleeve-codec';

t.setTimeout(240_000);

const SLEEVE_PORT = 6783;
const ATTACK_MS = 6_000;
const PINGS = 20;

/** A spoofed sleeve datagram naming `sender`: a probe, or a broadcast frame "captured" at the sender. */
function spoofed(type: number, sender: PeerName): Buffer {
  const eth = Buffer.concat([Buffer.alloc(6, 0xff), Buffer.from([2, 0, 0, 0, 0x66, 0x66, 0x88, 0xb5]), Buffer.from('spoofed frame')]);
  const body = type === SLEEVE_TYPE_FRAME ? INNER_HEADER_BYTES + VNET_HDR_BYTES + eth.length : 0;
  const d = Buffer.alloc(SLEEVE_HEADER_BYTES + body);
  writeSleeveHeader(d, 0, type, peerNameBytes(sender), 1_000_000);
  if (type === SLEEVE_TYPE_FRAME) {
    writeInnerHeader(d, SLEEVE_HEADER_BYTES, peerNameBytes(sender), peerNameBytes(BROADCAST_PEER), MAX_HOPS);
    eth.copy(d, SLEEVE_HEADER_BYTES + INNER_HEADER_BYTES + VNET_HDR_BYTES);
  }
  return d;
}

// The attacker: from its own UDP 6783 (where the old code would have sent h1's
// frames) it sends the datagrams every 20 ms, counts what comes back by sleeve
// type, and prints the counts as JSON when done.
const ATTACKER_JS = `
const dgram = require('node:dgram');
const [target, port, ms, ...hex] = process.argv.slice(1);
const datagrams = hex.map((h) => Buffer.from(h, 'hex'));
const got = { frame: 0, probe: 0, other: 0, sent: 0 };
const s = dgram.createSocket('udp4');
s.on('message', (m) => { if (m[1] === 1) got.frame++; else if (m[1] === 2) got.probe++; else got.other++; });
s.bind(${SLEEVE_PORT}, () => {
  const timer = setInterval(() => { for (const d of datagrams) { s.send(d, Number(port), target); got.sent++; } }, 20);
  setTimeout(() => { clearInterval(timer); setTimeout(() => { console.log(JSON.stringify(got)); s.close(); }, 500); }, Number(ms));
});
`;

function linkTo(s: RouterStatus, nickname: string) {
  return s.connections.find((c) => c.state === 'established' && c.nickname === nickname);
}

t.test('plaintext mesh: spoofed datagrams naming a peer do not move its data path', async (t) => {
  const net = await SimNetwork.create({ hosts: ['h1', 'h2', 'evil'], password: null, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 10_000 });
    await net.destroy();
  });
  const [h1, h2, evil] = net.hosts as [SimHost, SimHost, SimHost];
  for (const [h, peers] of [[h1, []], [h2, [h1.address]]] as const) {
    // The sleeve's address pinning is what this tests: without --no-fastdp a
    // plaintext mesh moves unicast to kernel VXLAN (its own firewall:
    // test/e2e/fastdp), and the sleeve carries only broadcasts.
    const r = await h.weave(['launch', '--nickname', h.name, '--no-fastdp', ...peers]);
    t.equal(r.code, 0, `weave launch on ${h.name}: ${r.stderr.trim()}`);
  }
  const containers: Record<string, { ns: string; ip: string }> = {};
  for (const [h, name, ip] of [[h1, 'c1', '10.32.7.1'], [h2, 'c2', '10.32.7.2']] as const) {
    const ns = `${net.prefix}${name}`;
    await run(['ip', 'netns', 'add', ns], { check: true });
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], { check: true });
    const r = await h.weave(['attach', `${ip}/24`, `netns:${ns}`]);
    t.equal(r.code, 0, `attach ${name} on ${h.name}: ${r.stderr.trim()}`);
    containers[name] = { ns, ip };
  }
  const ping = (from: string, to: string, count: number) => run(['ip', 'netns', 'exec', containers[from]!.ns, 'ping', '-c', String(count),
    '-i', '0.2', '-W', '2', containers[to]!.ip], { timeoutMs: 60_000 });
  let last = '';
  await waitFor(async () => {
    const r = await ping('c1', 'c2', 2);
    last = r.stdout + r.stderr;
    const s2 = await h2.weaveStatus();
    return r.code === 0 && linkTo(s2, 'h1')?.dataPath === 'udp' && linkTo(await h1.weaveStatus(), 'h2')?.dataPath === 'udp';
  }, { what: 'c1 pings c2 with both directions on UDP', timeoutMs: 40_000, intervalMs: 500, detail: () => `${last}\n${h2.readLog()}` });
  const before = await h2.weaveStatus();
  const realAddress = `${h1.address}:${SLEEVE_PORT}`;
  t.equal(linkTo(before, 'h1')?.udpAddress, realAddress, 'h2 sends to h1 at its real address');
  t.notOk(before.encryption, 'the mesh is plaintext');
  t.equal(linkTo(before, 'h1')?.cipher, undefined, 'no sleeve cipher without a password, whatever the hardware offers');

  const h1Name = (await h1.weaveStatus()).name;
  const hex = [spoofed(SLEEVE_TYPE_FRAME, h1Name), spoofed(SLEEVE_TYPE_PROBE, h1Name)].map((d) => d.toString('hex'));
  const attacker = evil.spawn(['node', '-e', ATTACKER_JS, h2.address, String(SLEEVE_PORT), String(ATTACK_MS), ...hex]);
  // Pings from c2 to c1 while the attack runs: h2 starts each echo request
  // towards h1, the direction the spoofed datagrams try to divert (a reply
  // would follow the request h1 just sent, and hide a moved address).
  // Meanwhile, status is sampled: the address must never leave h1.
  const seen = new Set<string>();
  const sampling = (async () => {
    while (attacker.running) {
      seen.add(linkTo(await h2.weaveStatus(), 'h1')?.udpAddress ?? 'none');
      await sleep(300);
    }
  })();
  const p = await ping('c2', 'c1', PINGS);
  const attack = await attacker.exited;
  await sampling;
  t.same([...seen], [realAddress], `h2's address for h1 during the attack, sampled: ${[...seen].join(', ')}`);
  t.equal(attack.code, 0, `the attacker ran: ${attack.stderr.trim()}`);
  const got = JSON.parse(attack.stdout.trim() || '{}') as { frame?: number; probe?: number; sent?: number };
  t.ok((got.sent ?? 0) > 100, `the attacker sent ${got.sent} spoofed datagrams naming h1`);
  t.equal(got.frame, 0, 'the attacker received no frame');
  t.comment(`the attacker received ${got.probe} challenge probes (capped per probe interval)`);

  const received = Number(/(\d+) received/.exec(p.stdout)?.[1] ?? 0);
  t.ok(received >= PINGS / 2, `pings kept working during the attack: ${received} of ${PINGS} replies`);
  const after = await h2.weaveStatus();
  t.equal(linkTo(after, 'h1')?.udpAddress, realAddress, 'h2 still sends to h1 at its real address');
  t.equal(linkTo(after, 'h1')?.dataPath, 'udp', 'and still over UDP');
  const dropped = after.counters['frames_dropped{reason="source"}'] ?? 0;
  t.ok(dropped > 100, `h2 dropped the spoofed datagrams for their source (${dropped})`);
  // About 300 spoofed frames were sent; the real ones are the echo replies and some ARP or neighbour discovery.
  const delivered = (after.counters['framesToBridge'] ?? 0) - (before.counters['framesToBridge'] ?? 0);
  t.ok(delivered <= PINGS + 20, `h2 delivered ${delivered} frames to its bridge during the attack: the replies, no spoofed frame`);
});
