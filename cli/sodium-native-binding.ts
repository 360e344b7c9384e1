// sodium-native's binding (its binding.js) as the bundled router loads it
// (scripts/bundle-router.ts puts this file in its place): the prebuilt
// addon for this platform, required by path. sodium-native's own binding.js
// finds it through require-addon, whose resolver (bare-module-resolve,
// bare-semver: a dozen modules and many path operations) made Node's path
// functions hot enough for V8's optimizing compiler to run in an idle router,
// and its code pages cost ~3.5 MB of RSS (issue 14). Where there is no plain
// prebuild (musl, which sodium-native builds separately; a local build),
// sodium-native's own loader decides, exactly as without the bundle.

import fs from 'node:fs';
import path from 'node:path';

function loadBinding(): unknown {
  const dir = path.dirname(require.resolve('sodium-native/package.json'));
  const prebuild = path.join(dir, 'prebuilds', `${process.platform}-${process.arch}`, 'sodium-native.node');
  // require-addon's own test for a musl host, whose prebuilds have another name.
  const musl = process.platform === 'linux' && fs.existsSync('/etc/alpine-release');
  if (!musl && fs.existsSync(prebuild)) return require(prebuild) as unknown;
  const addon = require('require-addon') as (specifier: string, parent: string) => unknown;
  return addon('.', path.join(dir, 'binding.js'));
}

export = loadBinding();
