// End-to-end damaged state (issue 11): a router whose data directory holds a
// garbage ipam.json, a truncated containers.json, a peers.json of the wrong
// types, a huge dns-resolv.json and a garbage expose.json starts anyway, says
// in its log and in `weave status` which file it ignored and why, keeps each
// one aside (FILE.corrupt-TIMESTAMP), and works (attach gets an address). A
// router whose data directory fills up (a 4 MiB tmpfs) keeps running, warns,
// and writes its state once there is room again. The variants of each file
// (garbage, truncated, wrong types, huge) are in test/unit/state-files.test.ts.
// Needs root (namespaces, a tmpfs mount).

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { run } from '../../scripts/command';
import type { SimHost } from '../../scripts/sim-host';
import { SimNetwork } from '../../scripts/sim-network';
import { waitFor } from '../../scripts/wait';
import type { DaemonStatus } from '../../cli/daemon-health';

t.setTimeout(300_000);

const FILES = ['ipam.json', 'containers.json', 'peers.json', 'dns-resolv.json', 'expose.json'];

function stateWarnings(s: DaemonStatus): string[] {
  return s.health.filter((h) => h.code === 'state-file').map((h) => h.text);
}

t.test('damaged state files and a full disk', async (t) => {
  const net = await SimNetwork.create({ hosts: 2, weaveEnv: { WEAVE_TEST_FAST: '1' } });
  const [h1, h2] = net.hosts as [SimHost, SimHost];
  let mounted = false;
  t.teardown(async () => {
    for (const h of net.hosts) await h.weave(['stop'], { timeoutMs: 15_000 });
    if (mounted) await run(['umount', '-l', h2.datadir]);
    await net.destroy();
  });
  const attach = async (h: SimHost, key: string): Promise<string> => {
    const ns = `${net.prefix}${key}`;
    await run(['ip', 'netns', 'add', ns], { check: true });
    const r = await h.weave(['attach', `netns:${ns}`], { timeoutMs: 60_000 });
    t.equal(r.code, 0, `attach ${key} on ${h.name}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  };

  await t.test('each damaged file is ignored with the file and the reason, kept aside, and the router works', async (t) => {
    const dir = h1.datadir;
    fs.writeFileSync(path.join(dir, 'ipam.json'), Buffer.from([0x7b, 0x00, 0xff, 0xfe, 0x22]));
    fs.writeFileSync(path.join(dir, 'containers.json'), '{"version": 1, "containers": [{"kind": "netns", "id": "netns:x", "na');
    fs.writeFileSync(path.join(dir, 'peers.json'), '{"peers": [1, 2, 3]}');
    const huge = fs.openSync(path.join(dir, 'dns-resolv.json'), 'w');
    fs.ftruncateSync(huge, 100 * 1024 * 1024);
    fs.closeSync(huge);
    fs.writeFileSync(path.join(dir, 'expose.json'), 'not json at all');

    const r = await h1.weave(['launch', '--nickname', 'h1']);
    t.equal(r.code, 0, `launch despite the damage: ${r.stderr.trim()}`);
    const status = await h1.weaveStatus() as DaemonStatus;
    const warnings = stateWarnings(status);
    const log = h1.readLog('weave.log', 400);
    for (const f of FILES) {
      const w = warnings.find((x) => x.startsWith(`ignored ${f}: `));
      t.ok(w, `status names ${f}: ${w ?? warnings.join(' | ')}`);
      t.match(w ?? '', /kept as .*\.corrupt-\d{8}T\d{6}Z/, `${f}: says where the original is`);
      t.match(log, new RegExp(`state file ignored .*file=\\S*/${f.replace('.', '\\.')} `), `${f}: in the log`);
      const aside = fs.readdirSync(dir).filter((x) => x.startsWith(`${f}.corrupt-`));
      t.equal(aside.length, 1, `${f}: kept aside as ${aside.join(', ')}`);
    }
    t.match(warnings.find((x) => x.startsWith('ignored dns-resolv.json')) ?? '', /more than the/, 'the huge file is refused by size, unread');
    t.match(warnings.find((x) => x.startsWith('ignored ipam.json')) ?? '', /UTF-8|JSON/, 'ipam.json: why');
    const text = await h1.weave(['status']);
    t.match(text.stdout, /ignored peers\.json: /, '`weave status` shows it too');
    const ip = await attach(h1, 'a1');
    t.match(ip, /^10\.(3[2-9]|4[0-7])\.\d+\.\d+/, `attach works: ${ip}`);
    t.ok(fs.existsSync(path.join(dir, 'ipam.json')) && fs.existsSync(path.join(dir, 'containers.json')), 'fresh state files written beside the kept ones');
  });

  await t.test('a full disk: no crash, a warning, and the write lands once there is room', async (t) => {
    const dir = h2.datadir;
    await run(['mount', '-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', dir], { check: true });
    mounted = true;
    const r = await h2.weave(['launch', '--nickname', 'h2']);
    t.equal(r.code, 0, `launch on the tmpfs: ${r.stderr.trim()}`);
    const pid = Number(fs.readFileSync(path.join(dir, 'weave.pid'), 'utf8'));
    const first = await attach(h2, 'b1');

    // Fill it up: the next state writes fail with ENOSPC.
    const filler = path.join(dir, 'filler');
    await run(['dd', 'if=/dev/zero', `of=${filler}`, 'bs=64k'], { timeoutMs: 20_000 });
    const second = await attach(h2, 'b2');
    t.not(second, first, 'attach still works on a full disk');
    const full = await waitFor(async () => {
      const s = await h2.weaveStatus() as DaemonStatus;
      return stateWarnings(s).some((w) => /cannot write containers\.json: .*ENOSPC/.test(w)) ? s : null;
    }, { what: 'status warns that containers.json cannot be written', timeoutMs: 15_000, detail: () => h2.readLog() });
    t.ok(full.health.some((h) => h.code === 'state-file' && h.severity === 'error'), stateWarnings(full).join(' | '));
    t.notMatch(fs.readFileSync(path.join(dir, 'containers.json'), 'utf8'), new RegExp(`${net.prefix}b2`), 'the record on disk is the old one, whole');

    fs.rmSync(filler);
    await waitFor(async () => stateWarnings(await h2.weaveStatus() as DaemonStatus).length === 0, {
      what: 'the warning goes once the write lands', timeoutMs: 45_000, detail: () => h2.readLog(),
    });
    t.match(fs.readFileSync(path.join(dir, 'containers.json'), 'utf8'), new RegExp(`${net.prefix}b2`), 'containers.json now records b2');
    t.equal(Number(fs.readFileSync(path.join(dir, 'weave.pid'), 'utf8')), pid, 'the same router ran all along');
    t.match(h2.readLog('weave.log', 400), /state file written after earlier failures/, 'the recovery is logged');
  });
});
