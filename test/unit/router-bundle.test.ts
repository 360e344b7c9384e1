// The router's bundle (scripts/bundle-router.ts, dist/cli/weave-router.js):
// it must exist after a build, be exactly what esbuild makes of the current
// dist/cli/weave.js (a stale bundle would run yesterday's router), hold the
// daemon and sodium-native's direct binding, run as one file (no module of
// ours or of require-addon's resolver loaded beside it), and be chosen by
// `weave launch` only while it is newer than weave.js.

import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as esbuild from 'esbuild';
import { bundleOptions, ROUTER_BUNDLE } from '../../scripts/bundle-router';
import { ROUTER_BUNDLE_FILE, routerScript } from '../../cli/launch';

const CLI_DIR = path.dirname(ROUTER_BUNDLE);
const BUILD_HINT = 'run `npm run build` (tsc, then node dist/scripts/bundle-router.js)';

t.test('the bundle is built, current and chosen by weave launch', async (t) => {
  t.ok(fs.existsSync(ROUTER_BUNDLE), `${ROUTER_BUNDLE} exists (${BUILD_HINT})`);
  if (!fs.existsSync(ROUTER_BUNDLE)) return;
  t.equal(routerScript(CLI_DIR), ROUTER_BUNDLE, `the bundle is newer than weave.js (${BUILD_HINT})`);
  const fresh = await esbuild.build({ ...bundleOptions(), write: false, metafile: true, logLevel: 'silent' });
  const out = fresh.outputFiles?.[0];
  t.ok(out !== undefined, 'esbuild made one file');
  if (out === undefined) return;
  t.ok(Buffer.from(out.contents).equals(fs.readFileSync(ROUTER_BUNDLE)), `the bundle is what esbuild makes of today's dist (${BUILD_HINT})`);
  const inputs = Object.keys(fresh.metafile?.inputs ?? {});
  const has = (end: string): boolean => inputs.some((i) => i.endsWith(end));
  t.ok(has(path.join('cli', 'daemon.js')), 'the daemon is in the bundle');
  t.ok(has(path.join('cli', 'sodium-native-binding.js')), "sodium-native's direct binding is in the bundle");
  t.ok(has(path.join('sodium-native', 'index.js')), "sodium-native's argument checks are in the bundle");
  t.notOk(has(path.join('sodium-native', 'binding.js')), "sodium-native's require-addon binding is not");
});

t.test('the bundle runs as one file', async (t) => {
  if (!fs.existsSync(ROUTER_BUNDLE)) return t.fail(`no bundle (${BUILD_HINT})`);
  // Without the test runner's NODE_OPTIONS (its --import hooks are files of its own).
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_DEBUG: 'module' };
  delete env['NODE_OPTIONS'];
  const bundled = spawnSync(process.execPath, [ROUTER_BUNDLE, 'version'], { encoding: 'utf8', env, timeout: 30_000 });
  const files = spawnSync(process.execPath, [path.join(CLI_DIR, 'weave.js'), 'version'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(bundled.status, 0, 'weave-router.js version exits 0');
  // package.json is found from the bundle's directory as from weave.js's.
  t.equal(bundled.stdout, files.stdout, 'the same version line as weave.js');
  t.match(bundled.stdout, /^weave \d+\.\d+\.\d+/);
  // Files the test runner's spawn hooks load in every child are not ours: only
  // what the bundle holds, or sodium-native's resolver, would say it is not one file.
  const fresh = await esbuild.build({ ...bundleOptions(), write: false, metafile: true, logLevel: 'silent' });
  const held = new Set(Object.keys(fresh.metafile?.inputs ?? {}).map((i) => path.resolve(i)));
  const loaded = [...bundled.stderr.matchAll(/load "([^"]+)"/g)].map((m) => m[1] as string)
    .filter((f) => held.has(f) || /node_modules\/(require-addon|bare-[a-z-]+)\//.test(f));
  t.ok(held.size > 100, `the bundle holds the CLI's files (${held.size})`);
  t.same(loaded, [], 'none of its files loaded beside it');
});

t.test('weave launch runs the files when tsc rewrote them after the bundle', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-bundle-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const files = path.join(dir, 'weave.js');
  const bundle = path.join(dir, ROUTER_BUNDLE_FILE);
  fs.writeFileSync(files, '');
  t.equal(routerScript(dir), files, 'no bundle: weave.js');
  fs.writeFileSync(bundle, '');
  fs.utimesSync(files, new Date(1_000_000), new Date(1_000_000));
  t.equal(routerScript(dir), bundle, 'bundle newer: the bundle');
  fs.utimesSync(files, new Date(), new Date(Date.now() + 60_000));
  t.equal(routerScript(dir), files, 'weave.js newer (a tsc since): weave.js');
});
