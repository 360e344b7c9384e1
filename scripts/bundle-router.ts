// scripts/bundle-router: builds dist/cli/weave-router.js, the one file the
// router process runs under `weave launch` (issue 14: idle RSS). It is the
// whole `weave` CLI of dist/cli/weave.js (tsc's output, the code the unit
// tests run) with every module it requires put in one file by esbuild.
//
// Why a bundle: loading ~230 files made Node's module resolution (path
// normalisation, node_modules lookups) hot enough for V8's optimizing compiler
// to run in a router that has nothing to do, and its code pages and zones were
// ~3.5 MB of an idle router's RSS; with one file nothing is optimized until
// frames flow. Only the router runs it: the CLI keeps its files, because a
// short command parsing the whole bundle started ~50 ms slower.
//
// The bundle sits beside weave.js, so every path derived from __dirname (the
// native addon, package.json) resolves as it does for weave.js. Left out:
// libsodium-wrappers (the WASM fallback, required only where sodium-native
// does not load) and require-addon (sodium-native's loader, kept for the
// platforms cli/sodium-native-binding.ts leaves to it). cli/launch.ts runs
// the bundle only when it is newer than weave.js, so a `tsc` without this
// step runs the files, never an old bundle.
//
// Usage: node dist/scripts/bundle-router.js   (npm run build runs it after tsc)

import fs from 'node:fs';
import path from 'node:path';
import type { BuildOptions, Plugin } from 'esbuild';

const DIST = path.resolve(__dirname, '..');
export const ROUTER_BUNDLE = path.join(DIST, 'cli', 'weave-router.js');

/** sodium-native's binding.js becomes cli/sodium-native-binding.ts (see there why). */
const sodiumBinding: Plugin = {
  name: 'sodium-native-binding',
  setup(build) {
    build.onResolve({ filter: /^\.\/binding(\.js)?$/ }, (args) =>
      args.importer.includes(`${path.sep}sodium-native${path.sep}`) ? { path: path.join(DIST, 'cli', 'sodium-native-binding.js') } : undefined);
  },
};

/** esbuild's options for the bundle; the test rebuilds with them (write: false) to find a stale file. */
export function bundleOptions(): BuildOptions {
  return {
    entryPoints: [path.join(DIST, 'cli', 'weave.js')],
    outfile: ROUTER_BUNDLE,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['libsodium-wrappers', 'require-addon', 'sodium-native/package.json'],
    plugins: [sodiumBinding],
    logLevel: 'warning',
  };
}

async function main(): Promise<void> {
  const esbuild = await import('esbuild');
  await esbuild.build(bundleOptions());
  fs.chmodSync(ROUTER_BUNDLE, 0o755);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`bundle-router: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
