// End to end: what strangers without the password can cost a real router
// (issue 9). Hosts h1 (the target) and h2 (a real peer) run `weave` with a
// password in namespaces; a third namespace, atk, with a dozen source
// addresses runs test/e2e/preauth-attacker.ts: 200 idle TCP connections and
// 50 that announce a message just under the old 8 MiB limit and stream it,
// each reopened as soon as the router drops it. Meanwhile h2 is refused with
// the wrong password (and status says so, not "unencrypted"), then connects
// with the right one within seconds; h1's RSS stays under 200 MB throughout,
// and its status and health name the pressure. Needs root.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { BackgroundProcess } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { sleep, waitFor } from '../../scripts/wait';
import type { RouterStatus } from '../../router/mesh/status';

t.setTimeout(240_000);

const PASSWORD = 'e2e preauth password';
const MESH_PORT = 6783;
const IDLE_CONNECTIONS = 200;
const BIG_CONNECTIONS = 50;
/** Attacker source addresses: 12 x the per-source cap of 8 is more than the global cap of 64. */
const SOURCES = Array.from({ length: 12 }, (_, i) => `10.250.0.${100 + i}`);
const RSS_LIMIT_KB = 200 * 1024;
/** "Within seconds", from the router's start to the connection that was kept (WEAVE_TEST_FAST retries every 0.2 to 2 s). */
const CONNECT_WITHIN_MS = 5_000;

function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

function routerPid(h: SimHost): number {
  return Number(readFileSync(join(h.datadir, 'weave.pid'), 'utf8').trim());
}

function established(s: RouterStatus): number {
  return s.connections.filter((c) => c.state === 'established').length;
}

async function launch(t: Tap, h: SimHost, peers: SimHost[], password?: string): Promise<void> {
  const r = await h.weave(['launch', '--nickname', h.name, ...peers.map((p) => p.address)], {
    timeoutMs: 30_000, ...(password !== undefined ? { password } : {}),
  });
  t.equal(r.code, 0, `weave launch on ${h.name}`, { stderr: r.stderr });
  if (r.code !== 0) throw new Error(`weave launch on ${h.name} failed: ${r.stderr.trim()}`);
}

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

t.test('strangers flooding handshakes neither keep a real peer out nor balloon memory', async (t) => {
  const net = await SimNetwork.create({ hosts: ['h1', 'h2', 'atk'], password: PASSWORD, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const [h1, h2, atk] = net.hosts as [SimHost, SimHost, SimHost];
  let attacker: BackgroundProcess | null = null;
  t.teardown(async () => {
    if (!t.passing()) {
      for (const h of [h1, h2]) t.comment(`--- ${h.name} weave.log ---\n${h.readLog('weave.log', 30)}`);
      if (attacker) t.comment(`--- attacker ---\n${attacker.stdout.split('\n').slice(-5).join('\n')}${attacker.stderr}`);
    }
    await attacker?.stop();
    await Promise.all([h1, h2].map((h) => h.weave(['stop'], { timeoutMs: 20_000 }).catch(() => undefined)));
    await net.destroy();
  });
  for (const a of SOURCES) await atk.exec(['ip', 'addr', 'add', `${a}/24`, 'dev', 'eth0'], { check: true, timeoutMs: 5_000 });

  await launch(t, h1, []);
  const pid = routerPid(h1);
  const baselineKb = rssKb(pid);
  t.comment(`h1 router pid ${pid}, RSS before the attack ${Math.round(baselineKb / 1024)} MB`);

  // Sampled all along, so a peak between two checks is not missed.
  let peakKb = baselineKb;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      try { peakKb = Math.max(peakKb, rssKb(pid)); } catch { /* the router is gone; the checks below say so */ }
      await sleep(200);
    }
  })();
  t.teardown(() => { sampling = false; });

  const script = resolve(__dirname, 'preauth-attacker.js');
  attacker = atk.spawn(['node', script, h1.address, String(MESH_PORT), String(IDLE_CONNECTIONS), String(BIG_CONNECTIONS), ...SOURCES]);

  const pressured = await waitFor(async () => {
    const s = await h1.weaveStatus();
    return s.health.some((w) => w.code === 'handshake-pressure') ? s : null;
  }, { what: 'h1 health to report handshake pressure', timeoutMs: 20_000, intervalMs: 500, detail: async () => JSON.stringify((await h1.weaveStatus()).handshakes) });
  t.ok((pressured.handshakes?.inProgress ?? 0) <= 64, `at most 64 handshakes in progress (${pressured.handshakes?.inProgress})`);
  t.ok((pressured.handshakes?.droppedLastMinute ?? 0) > 0, `strangers dropped (${pressured.handshakes?.droppedLastMinute} in the last minute)`);

  await t.test('a peer with the wrong password is refused with the reason, not shown as unencrypted', async (t) => {
    await launch(t, h2, [h1], 'not the mesh password');
    const refused = await waitFor(async () => {
      const s = await h1.weaveStatus();
      return s.connections.find((c) => c.state === 'failed' && c.address.startsWith(`${h2.address}:`) && c.failure === 'password-mismatch') ?? null;
    }, { what: 'h1 to list h2 as refused over the password', timeoutMs: 20_000, intervalMs: 500 });
    t.match(refused.info, /password/, 'the reason names the password');
    const text = await h1.weave(['status', 'connections']);
    const line = text.stdout.split('\n').find((l) => l.includes(`${h2.address}:`)) ?? '';
    t.match(line, /refused: wrong password/, `h1 shows it refused: ${line.trim()}`);
    t.notMatch(line, /unencrypted/);
    const r = await h2.weave(['stop'], { timeoutMs: 20_000 });
    t.equal(r.code, 0, 'weave stop on h2');
  });

  await t.test('the real peer still connects within seconds', async (t) => {
    await launch(t, h2, [h1]);
    // Waiting through the CLI is slow on a loaded machine; the router's own clock says how long it took.
    const s2 = await waitFor(async () => {
      const [a, b] = [await h1.weaveStatus(), await h2.weaveStatus()];
      return established(a) === 1 && established(b) === 1 ? b : null;
    }, { what: 'h1 and h2 connected under attack', timeoutMs: 60_000, intervalMs: 250, detail: () => h2.readLog('weave.log', 20) });
    const conn = s2.connections.find((c) => c.state === 'established')!;
    const tookMs = conn.sinceMs - s2.startedMs;
    t.ok(tookMs < CONNECT_WITHIN_MS, `h2's connection to h1 began ${(tookMs / 1000).toFixed(1)} s after h2's router started`);
  });

  // Keep the pressure on a little longer, then read what the operator sees.
  await sleep(3_000);
  const s = await h1.weaveStatus();
  t.ok(s.health.some((w) => w.code === 'handshake-pressure'), 'health still names the pressure');
  t.equal(established(s), 1, 'the established peer kept its connection');
  const overview = await h1.weave(['status']);
  t.match(overview.stdout, /Handshakes: \d+\/64 in progress, \d+ dropped in the last minute/, 'weave status prints the handshake line');
  t.match(overview.stdout, /handshake-pressure/, 'and the health warning');
  const lastCounts = attacker.stdout.trim().split('\n').pop() ?? '{}';
  const counts = JSON.parse(lastCounts) as { opened?: number; bigBytesSent?: number };
  t.ok((counts.opened ?? 0) > IDLE_CONNECTIONS + BIG_CONNECTIONS, `the attacker kept reconnecting (${lastCounts})`);

  sampling = false;
  await sampler;
  t.comment(`h1 RSS peak under attack ${Math.round(peakKb / 1024)} MB (before: ${Math.round(baselineKb / 1024)} MB)`);
  t.ok(peakKb < RSS_LIMIT_KB, `h1 RSS stayed under 200 MB (peak ${Math.round(peakKb / 1024)} MB)`);
});
