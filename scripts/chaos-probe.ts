// The chaos suite's prober: one Node process per container namespace (so 5
// containers cost 5 processes, not one `ping` per pair). It answers UDP echo
// probes on its port, sends one to every target every --interval ms, and asks
// weave DNS (the nameserver of the container's resolv.conf) for every target
// name every --dns-every ms. It records, per target, the send times of the
// probes that were answered, and per name the times of lookups that were
// missing (no answer, NXDOMAIN, timeout) or wrong (an address other than the
// expected one; for a name expected gone, any address). The orchestrator
// (chaos.ts) reads those records from --out, which is written every few seconds
// and at SIGTERM, and changes the targets by rewriting --targets (polled).
//
// Usage (inside the container's namespace):
//   node dist/scripts/chaos-probe.js --targets FILE --out FILE [--port 7070] [--interval 200] [--dns-every 1000]
// Targets file: {"targets": [{"name": "c2", "ip": "10.32.0.2"}...], "dnsOnly": [...], "gone": ["c5"], "domain": "weave.local"}

import { createSocket, type RemoteInfo } from 'node:dgram';
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import * as packet from 'dns-packet';

export interface ProbeTarget { name: string; ip: string }
/** targets get echo probes and lookups; dnsOnly (containers without a prober) only lookups. */
export interface ProbeTargets { targets: ProbeTarget[]; dnsOnly: ProbeTarget[]; gone: string[]; domain: string }

/** What the prober writes to --out. Times are ms since the epoch. */
export interface ProbeRecord {
  startedMs: number;
  writtenMs: number;
  /** Per target name: send times of answered probes. */
  answered: Record<string, number[]>;
  /** Per target name: how many probes were sent. */
  sent: Record<string, number>;
  /** Per name: times of lookups that got no address (or timed out). */
  dnsMissing: Record<string, number[]>;
  /** Per name: times and answers of lookups that returned something other than expected. */
  dnsWrong: Record<string, { t: number; got: string[] }[]>;
  dnsOk: number;
}

const PROBE = 0x51; // 'Q'
const REPLY = 0x52; // 'R'
const DNS_TIMEOUT_MS = 1500;

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : fallback;
  if (v === undefined) throw new Error(`chaos-probe: --${name} is required`);
  return v;
}

function nameserver(): string {
  const conf = readFileSync('/etc/resolv.conf', 'utf8');
  const m = /^nameserver\s+(\S+)/m.exec(conf);
  if (m === null) throw new Error('chaos-probe: no nameserver in /etc/resolv.conf');
  return m[1]!;
}

function main(): void {
  const targetsPath = arg('targets');
  const outPath = arg('out');
  const port = Number(arg('port', '7070'));
  const intervalMs = Number(arg('interval', '200'));
  const dnsEveryMs = Number(arg('dns-every', '1000'));
  const rec: ProbeRecord = { startedMs: Date.now(), writtenMs: 0, answered: {}, sent: {}, dnsMissing: {}, dnsWrong: {}, dnsOk: 0 };
  let current: ProbeTargets = { targets: [], dnsOnly: [], gone: [], domain: 'weave.local' };
  let targetsMtime = 0;
  const reload = (): void => {
    try {
      const m = statSync(targetsPath).mtimeMs;
      if (m === targetsMtime) return;
      current = JSON.parse(readFileSync(targetsPath, 'utf8')) as ProbeTargets;
      targetsMtime = m;
    } catch {
      // Half-written or not there yet: keep the previous targets.
    }
  };
  reload();

  const echo = createSocket('udp4');
  const byIp = (ip: string): string | undefined => current.targets.find((t) => t.ip === ip)?.name;
  echo.on('message', (msg: Buffer, from: RemoteInfo) => {
    if (msg.length !== 9) return;
    if (msg[0] === PROBE) {
      msg[0] = REPLY;
      echo.send(msg, from.port, from.address);
    } else if (msg[0] === REPLY) {
      const name = byIp(from.address);
      if (name !== undefined) (rec.answered[name] ??= []).push(Number(msg.readBigUInt64BE(1)));
    }
  });
  echo.on('error', () => undefined);
  echo.bind(port);

  const probe = Buffer.alloc(9);
  setInterval(() => {
    const now = Date.now();
    probe[0] = PROBE;
    probe.writeBigUInt64BE(BigInt(now), 1);
    for (const t of current.targets) {
      rec.sent[t.name] = (rec.sent[t.name] ?? 0) + 1;
      echo.send(probe, port, t.ip);
    }
  }, intervalMs);

  // DNS: one socket, ids matched to outstanding lookups.
  const server = nameserver();
  const dnsSock = createSocket('udp4');
  const pending = new Map<number, { name: string; t: number; expect: string | null; timer: NodeJS.Timeout }>();
  let nextId = 1;
  const judge = (p: { name: string; t: number; expect: string | null }, got: string[]): void => {
    if (p.expect === null ? got.length === 0 : got.length === 1 && got[0] === p.expect) rec.dnsOk++;
    else if (p.expect !== null && got.length === 0) (rec.dnsMissing[p.name] ??= []).push(p.t);
    else (rec.dnsWrong[p.name] ??= []).push({ t: p.t, got });
  };
  dnsSock.on('message', (msg: Buffer) => {
    let reply: packet.Packet;
    try { reply = packet.decode(msg); } catch { return; }
    const p = pending.get(reply.id ?? -1);
    if (p === undefined) return;
    pending.delete(reply.id!);
    clearTimeout(p.timer);
    const got = (reply.answers ?? []).flatMap((a) => (a.type === 'A' ? [String(a.data)] : [])).sort();
    judge(p, got);
  });
  dnsSock.on('error', () => undefined);
  setInterval(() => {
    const names = [...[...current.targets, ...current.dnsOnly].map((t) => ({ name: t.name, expect: t.ip as string | null })),
      ...current.gone.map((name) => ({ name, expect: null }))];
    for (const { name, expect } of names) {
      const id = nextId;
      nextId = nextId >= 0xffff ? 1 : nextId + 1;
      const t = Date.now();
      const timer = setTimeout(() => {
        if (!pending.delete(id)) return;
        // No reply is "missing" for a live name, and fine for a gone one only if the server is up: count it as missing either way.
        (rec.dnsMissing[name] ??= []).push(t);
      }, DNS_TIMEOUT_MS);
      pending.set(id, { name, t, expect, timer });
      const q = packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name: `${name}.${current.domain}` }] });
      dnsSock.send(q, 53, server);
    }
  }, dnsEveryMs);

  const write = (): void => {
    rec.writtenMs = Date.now();
    writeFileSync(`${outPath}.tmp`, JSON.stringify(rec));
    renameSync(`${outPath}.tmp`, outPath);
  };
  setInterval(() => { reload(); }, 1000);
  setInterval(write, 5000);
  process.on('SIGTERM', () => { write(); process.exit(0); });
}

if (require.main === module) main();
