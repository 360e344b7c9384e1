// scripts/bench's report of the throughput section: the per-overlay table
// (medians and ranges of throughput, RTT idle and under load, retransmits,
// the daemons' CPU and RSS) and the SUMMARY lines (scripts/bench-summary.ts)
// that put its headline ratios against issue 14's targets. Pure: it turns
// samples into text and prints nothing itself.

import type { Overlay, Sample } from './bench-measure';
import { summaryLine } from './bench-summary';

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function fmt(x: number, digits = 0): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd()).join('\n');
}

type Samples = Map<string, Sample[]>;

const med = (ss: Sample[] | undefined, f: (s: Sample) => number): number => median((ss ?? []).map(f));
const mbps = (ss: Sample[] | undefined): number => med(ss, (s) => s.mbps);

/** Per host of the overlay, the median of `f`, joined with `sep` ('-' where there is no daemon). */
function perHost(o: Overlay, ss: Sample[], f: (s: Sample) => Map<string, number>, sep: string): string {
  const vals = o.hosts.map((h) => median(ss.map((s) => f(s).get(h.name) ?? NaN)));
  return vals.every((v) => !Number.isFinite(v)) ? '-' : vals.map((v) => fmt(v)).join(sep);
}

export function resultsTable(overlays: Overlay[], samples: Samples): string {
  const wg = mbps(samples.get('wireguard-go'));
  const rows: string[][] = [[
    'overlay', 'Mbit/s', 'min..max', 'x wg-go', 'RTT idle', 'RTT load', 'p90 load', 'lost', 'retrans', 'CPU% per host', 'RSS MiB per host',
  ]];
  for (const o of overlays) {
    const ss = samples.get(o.name)!;
    const mb = ss.map((s) => s.mbps).filter(Number.isFinite);
    const sent = ss.reduce((n, s) => n + s.loadedSent, 0);
    const answered = ss.reduce((n, s) => n + s.loadedAnswered, 0);
    rows.push([
      o.label,
      fmt(median(mb)),
      mb.length > 0 ? `${fmt(Math.min(...mb))}..${fmt(Math.max(...mb))}` : '-',
      fmt(median(mb) / wg, 2),
      fmt(med(ss, (s) => s.rttMs), 3),
      fmt(med(ss, (s) => s.loadedRttMs), 3),
      fmt(med(ss, (s) => s.loadedP90Ms), 3),
      sent > 0 ? `${fmt(((sent - answered) / sent) * 100, 1)}%` : '-',
      fmt(med(ss, (s) => s.retransmits)),
      perHost(o, ss, (s) => s.cpuPct, '+'),
      perHost(o, ss, (s) => s.rssMiB, '/'),
    ]);
  }
  return table(rows);
}

export const RESULTS_LEGEND = [
  'Mbit/s: iperf3 receiver; x wg-go: median over wireguard-go\'s median; RTT ms: idle = median of 20 pings after the transfer,',
  'load = median and 90th percentile of fping -p 10 (a ping every 10 ms) during it; lost: loaded pings unanswered; retrans: iperf3 retransmits per transfer;',
  'CPU%: the overlay\'s own daemons on each host in the overlay\'s host order (% of one core over the transfer; not iperf3, not the kernel\'s',
  'softirq work); RSS: those daemons after the transfer (weave: the router process only, not its supervisor).',
];

/** The throughput section's SUMMARY lines; a figure whose inputs were not measured is printed as not measured. */
export function summaryLines(samples: Samples, routerRssSetupMB: number): string[] {
  const weave = samples.get('weave');
  const wgS = samples.get('wireguard-go');
  const [ours, wg] = [mbps(weave), mbps(wgS)];
  const peers = ['tinc', 'nebula', 'fastd'].filter((n) => samples.has(n)).map((n) => ({ n, v: mbps(samples.get(n)) })).filter((p) => Number.isFinite(p.v));
  const best = peers.reduce<{ n: string; v: number } | null>((b, p) => (b === null || p.v > b.v ? p : b), null);
  const relayed = mbps(samples.get('weave-relayed'));
  const forwarded = mbps(samples.get('weave-forwarded'));
  const fastdp = mbps(samples.get('weave-fastdp'));
  const vxlan = mbps(samples.get('vxlan'));
  const rttIdle = [med(weave, (s) => s.rttMs), med(wgS, (s) => s.rttMs)];
  const rttRelayed = med(samples.get('weave-relayed'), (s) => s.rttMs);
  const rttLoad = [med(weave, (s) => s.loadedRttMs), med(wgS, (s) => s.loadedRttMs)];
  const hosts = samples.get('weave-hosts');
  const rttIdleHosts = med(hosts, (s) => s.rttMs);
  const p90Load = [med(weave, (s) => s.loadedP90Ms), med(wgS, (s) => s.loadedP90Ms)];
  const retrans = [med(weave, (s) => s.retransmits), med(wgS, (s) => s.retransmits)];
  const rssDuring = Math.max(...[...(weave ?? [])].flatMap((s) => [...s.rssMiB.values()]).filter(Number.isFinite));
  const cpu = med(weave, (s) => [...s.cpuPct.values()].reduce((a, b) => a + b, 0));
  return [
    summaryLine('throughput.weave_mbps', ours, '-', 'weave encrypted, container to container, Mbit/s (one iperf3 TCP stream)', 0),
    summaryLine('throughput.vs_wireguard_go', ours / wg, '>=8', `weave encrypted / wireguard-go throughput (${fmt(ours)} / ${fmt(wg)} Mbit/s)`),
    summaryLine('throughput.vs_best_peer', best === null ? NaN : ours / best.v, '>=6',
      `weave encrypted / best of tinc, nebula, fastd (${best === null ? 'none measured' : `${best.n} ${fmt(best.v)} Mbit/s`})`),
    summaryLine('throughput.relayed_vs_direct', relayed / ours, '>=0.8', `weave relayed through one host / direct (${fmt(relayed)} / ${fmt(ours)} Mbit/s)`),
    summaryLine('throughput.forwarded_vs_direct', forwarded / ours, '-',
      `weave with its underlay forwarded by one host's kernel / direct, the relayed row's ceiling (${fmt(forwarded)} / ${fmt(ours)} Mbit/s)`),
    summaryLine('throughput.relayed_vs_forwarded', relayed / forwarded, '-',
      `weave relayed by one host (a kernel relay: nftables rules) / the same hop IP-forwarded by its kernel (${fmt(relayed)} / ${fmt(forwarded)} Mbit/s)`),
    summaryLine('throughput.fastdp_vs_vxlan', fastdp / vxlan, '>=0.9', `weave fast path / kernel VXLAN (${fmt(fastdp)} / ${fmt(vxlan)} Mbit/s)`),
    summaryLine('rtt.idle_vs_wireguard_go', rttIdle[0]! / rttIdle[1]!, '<=1', `RTT idle, weave / wireguard-go (${fmt(rttIdle[0]!, 3)} / ${fmt(rttIdle[1]!, 3)} ms)`),
    summaryLine('rtt.relayed_idle_vs_wireguard_go', rttRelayed / rttIdle[1]!, '-',
      `RTT idle, weave relayed through one host / wireguard-go direct (${fmt(rttRelayed, 3)} / ${fmt(rttIdle[1]!, 3)} ms)`),
    summaryLine('rtt.idle_hosts_vs_wireguard_go', rttIdleHosts / rttIdle[1]!, '<=1',
      `RTT idle, like for like: weave host to host (weave expose) / wireguard-go (also host to host) (${fmt(rttIdleHosts, 3)} / ${fmt(rttIdle[1]!, 3)} ms)`),
    summaryLine('rtt.loaded_vs_wireguard_go', rttLoad[0]! / rttLoad[1]!, '<=1',
      `RTT during the transfer, median, weave / wireguard-go (${fmt(rttLoad[0]!, 3)} / ${fmt(rttLoad[1]!, 3)} ms)`),
    summaryLine('rtt.loaded_p90_vs_wireguard_go', p90Load[0]! / p90Load[1]!, '-',
      `RTT during the transfer, 90th percentile, weave / wireguard-go (${fmt(p90Load[0]!, 3)} / ${fmt(p90Load[1]!, 3)} ms)`),
    summaryLine('throughput.retransmits', retrans[0]!, Number.isFinite(retrans[1]!) ? `<=${fmt(retrans[1]!)}` : '-',
      'weave iperf3 retransmits per transfer, median (target: no more than wireguard-go\'s)', 0),
    summaryLine('throughput.router_cpu_pct', cpu, '-', 'weave routers\' CPU during the transfer, both hosts together, % of one core', 0),
    summaryLine('throughput.router_rss_setup_mb', routerRssSetupMB, '<60', 'router RSS on h1 after every setup, settled 20 s, before any transfer (one container attached), MB'),
    summaryLine('throughput.router_rss_transfer_mib', rssDuring, '-', 'router RSS after a transfer, largest of the two hosts, MiB', 0),
  ];
}
