// `weave stop` when the API cannot help (cli/launch.ts): it signals the
// router it finds in the data directory's pid file only when /proc shows that
// pid runs `weave.js router` for that data directory; SIGTERM first, SIGKILL
// when SIGTERM is ignored; a pid file naming any other process gets no signal
// and the usual "not running" answer. The "router" here is a stand-in script
// named weave.js that ignores SIGTERM, so no real router is needed.

import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { ApiClient } from '../../cli/api-client';
import { stop, PID_FILE } from '../../cli/launch';

const STUBBORN = `
process.on('SIGTERM', () => process.stdout.write('ignored SIGTERM\\n'));
process.stdout.write('ready\\n');
setInterval(() => {}, 1000);`;

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

async function started(child: ChildProcess): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', () => reject(new Error('stand-in exited early')));
  });
}

function setup(t: { teardown(fn: () => unknown): void }, argv: (script: string, datadir: string) => string[]): { datadir: string; child: ChildProcess; client: ApiClient } {
  const datadir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-stop-'));
  const script = path.join(datadir, 'weave.js');
  fs.writeFileSync(script, STUBBORN);
  const child = spawn(process.execPath, argv(script, datadir), { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => {
    if (alive(child)) child.kill('SIGKILL');
    fs.rmSync(datadir, { recursive: true, force: true });
  });
  fs.writeFileSync(path.join(datadir, PID_FILE), `${child.pid}\n`);
  // No socket at all: the API cannot answer.
  return { datadir, child, client: new ApiClient(path.join(datadir, 'no.sock')) };
}

t.test('a router that ignores SIGTERM is killed after the grace period', async (t) => {
  const { datadir, child, client } = setup(t, (script, dir) => [script, 'router', '--datadir', dir]);
  await started(child);
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => resolve(sig)));
  const startedAt = Date.now();
  await stop(client, { datadir, killAfterMs: 500, pollIntervalMs: 20 });
  t.equal(await exited, 'SIGKILL', 'SIGTERM was ignored, SIGKILL ended it');
  t.ok(Date.now() - startedAt >= 500, 'SIGKILL only after the grace period');
});

t.test('a pid file naming another process gets no signal', async (t) => {
  const { datadir, child, client } = setup(t, (script) => [script, 'something-else']);
  await started(child);
  await t.rejects(stop(client, { datadir, killAfterMs: 100, pollIntervalMs: 20 }), /not running/);
  t.ok(alive(child), 'the stranger still runs');
});

t.test("a router of another data directory gets no signal", async (t) => {
  const { datadir, child, client } = setup(t, (script) => [script, 'router', '--datadir', '/var/lib/elsewhere']);
  await started(child);
  await t.rejects(stop(client, { datadir, killAfterMs: 100, pollIntervalMs: 20 }), /not running/);
  t.ok(alive(child), 'the other router still runs');
});
