// The house rules of docs/architecture.md, enforced: who may import whom,
// how long a source file may grow, and that every source file opens with a
// comment saying what it owns. The rules are pure functions over paths and
// import lists (table-tested below, so the check itself can be seen to fail);
// the last tests run them over the real tree.
//
// Imports are read with TypeScript's own pre-processor (static `import ...
// from`, `export ... from`, `import x = require()`, `require()` and
// `import()`), so comments and strings never count and multi-line imports do.

import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import * as ts from 'typescript';

// ---------------------------------------------------------------------------
// The rules

/** The parts of the house, by folder. `router` is any file of router/ outside the four subfolders. */
export type Area =
  | 'common' | 'router/mesh' | 'router/overlay' | 'router/host' | 'router/api' | 'router'
  | 'ipam' | 'dns' | 'cni' | 'cli' | 'scripts' | 'test' | 'other';

/** The areas whose imports are checked, and what each may import besides npm and node: packages. */
const ALLOWED: Partial<Record<Area, readonly Area[]>> = {
  // What every part uses and no part owns: it depends on nothing of ours.
  common: ['common'],
  // The library everything builds on (as weaveworks/mesh is for Weave Net).
  'router/mesh': ['common', 'router/mesh'],
  // The data plane implements the mesh's seam (router/mesh/data-plane.ts).
  'router/overlay': ['common', 'router/mesh', 'router/overlay'],
  // Host plumbing: no data plane, no API.
  'router/host': ['common', 'router/mesh', 'router/host'],
  // The API sits on top of the router's parts.
  'router/api': ['common', 'router/mesh', 'router/overlay', 'router/host', 'router/api'],
  router: ['common', 'router/mesh', 'router/overlay', 'router/host', 'router/api', 'router'],
  // Gossipers on the mesh: from router/ only the seam (MESH_SEAM_FILES); never each other.
  ipam: ['common', 'ipam'],
  dns: ['common', 'dns'],
  // The weave-net CNI plugin, a separate short-lived process: common/ only, so it starts fast.
  cni: ['common', 'cni'],
};

/** The only router/ files ipam/ and dns/ may import: the gossip seam and peer names. */
export const MESH_SEAM_FILES: readonly string[] = ['router/mesh/gossip', 'router/mesh/peer-name'];

/** Folders whose source files must stay short and open with a comment. */
export const SOURCE_ROOTS: readonly string[] = ['common', 'router', 'ipam', 'dns', 'cni', 'cli'];
/** Folders whose imports are checked (cli/ is the composition root and may import anything). */
export const CHECKED_ROOTS: readonly string[] = ['common', 'router', 'ipam', 'dns', 'cni'];
/** Past this many lines a file holds more than one concept: split it by prefix. */
export const MAX_SOURCE_LINES = 450;

const ROUTER_PARTS: readonly Area[] = ['router/mesh', 'router/overlay', 'router/host', 'router/api'];

/** The area of a repository-relative path (posix separators). */
export function areaOf(file: string): Area {
  const parts = file.split('/');
  const top = parts[0] ?? '';
  if (top === 'router') {
    const sub = `router/${parts[1] ?? ''}` as Area;
    return parts.length > 2 && ROUTER_PARTS.includes(sub) ? sub : 'router';
  }
  if (top === 'common' || top === 'ipam' || top === 'dns' || top === 'cni' || top === 'cli' || top === 'scripts' || top === 'test') return top;
  return 'other';
}

/**
 * Where an import specifier points, as a repository-relative path without
 * extension; null for a package (npm or node:). A path starting with `..`
 * leaves the repository.
 */
export function resolveImport(fromFile: string, specifier: string): string | null {
  if (!specifier.startsWith('.')) return null;
  const joined = path.posix.normalize(path.posix.join(path.posix.dirname(fromFile), specifier));
  return joined.replace(/\.(ts|js)$/, '');
}

/**
 * Why importing `target` (from resolveImport; null = a package) from
 * `fromFile` breaks the rules, or null when it is allowed.
 */
export function importViolation(fromFile: string, target: string | null): string | null {
  if (target === null) return null;
  if (target === '..' || target.startsWith('../')) return 'reaches outside the repository';
  const from = areaOf(fromFile);
  const allowed = ALLOWED[from];
  if (allowed === undefined) return null;
  const to = areaOf(target);
  if (allowed.includes(to)) return null;
  if ((from === 'ipam' || from === 'dns') && MESH_SEAM_FILES.includes(target)) return null;
  switch (from) {
    case 'common':
      return 'common/ imports nothing of ours outside common/';
    case 'ipam':
    case 'dns':
      if (to === 'ipam' || to === 'dns') return 'ipam/ and dns/ never import each other';
      if (to.startsWith('router')) {
        return `${from}/ may import from router/ only ${MESH_SEAM_FILES.map((f) => `${f}.ts`).join(' and ')} (the gossip seam)`;
      }
      return `${from}/ imports only common/, ${from}/ and the gossip seam`;
    case 'cni':
      return 'cni/ is a separate process that must start fast: it imports only common/ and cni/';
    default:
      if (to === 'ipam' || to === 'dns' || to === 'cli') return `router/ never imports ${to}/ (cli/daemon.ts wires them together)`;
      if (from === 'router/mesh' && to.startsWith('router')) {
        return `router/mesh is the library the rest builds on and must not import ${to}/ (the data plane implements router/mesh/data-plane.ts)`;
      }
      return `${from}/ may import only ${allowed.join('/, ')}/`;
  }
}

export interface ImportRef {
  specifier: string;
  line: number;
}

/** Every import of a source text: static, export-from, import = require, require() and import(). */
export function importsOf(source: string): ImportRef[] {
  const info = ts.preProcessFile(source, true, true);
  return info.importedFiles.map((f) => ({ specifier: f.fileName, line: source.slice(0, f.pos).split('\n').length }));
}

/** Line count as `wc -l` sees it (a final newline does not start another line). */
export function lineCount(source: string): number {
  if (source === '') return 0;
  const n = source.split('\n').length;
  return source.endsWith('\n') ? n - 1 : n;
}

/** Whether the first non-blank line (after a shebang) is a comment. */
export function opensWithComment(source: string): boolean {
  const lines = source.split('\n').filter((l) => l.trim() !== '');
  const first = lines[0]?.startsWith('#!') ? lines[1] : lines[0];
  const s = first?.trimStart() ?? '';
  return s.startsWith('//') || s.startsWith('/*');
}

/** Everything wrong with one source file; `file` is repository-relative. */
export function fileViolations(file: string, source: string): string[] {
  const out: string[] = [];
  if (CHECKED_ROOTS.includes(file.split('/')[0] ?? '')) {
    for (const imp of importsOf(source)) {
      const why = importViolation(file, resolveImport(file, imp.specifier));
      if (why !== null) out.push(`${file}:${imp.line} imports '${imp.specifier}': ${why}`);
    }
  }
  const isTest = file.endsWith('.test.ts');
  if (!isTest && SOURCE_ROOTS.includes(file.split('/')[0] ?? '')) {
    const lines = lineCount(source);
    if (lines > MAX_SOURCE_LINES) out.push(`${file}: ${lines} lines, over ${MAX_SOURCE_LINES}: split it by concept`);
    if (!opensWithComment(source)) out.push(`${file}: does not open with a comment saying what it owns`);
  }
  return out;
}

// ---------------------------------------------------------------------------
// The real tree

function repoRoot(): string {
  // Compiled to dist/test/unit; the sources sit where tsconfig.json is.
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'tsconfig.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no tsconfig.json above ${__dirname}`);
    dir = up;
  }
  return dir;
}

function sourceFiles(root: string, dir: string): string[] {
  const out: string[] = [];
  const abs = path.join(root, dir);
  if (!fs.existsSync(abs)) return out;
  for (const entry of fs.readdirSync(abs, { withFileTypes: true })) {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...sourceFiles(root, rel));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(rel);
  }
  return out.sort();
}

// ---------------------------------------------------------------------------
// Tests of the rules themselves

t.test('areas by folder', async (t) => {
  const table: Array<[string, Area]> = [
    ['common/clock.ts', 'common'],
    ['router/mesh/router.ts', 'router/mesh'],
    ['router/overlay/overlay.ts', 'router/overlay'],
    ['router/host/containers.ts', 'router/host'],
    ['router/api/http-api.ts', 'router/api'],
    ['router/loose.ts', 'router'],
    ['router/other/x.ts', 'router'],
    ['ipam/ring.ts', 'ipam'],
    ['dns/store.ts', 'dns'],
    ['cli/daemon.ts', 'cli'],
    ['cni/plugin.ts', 'cni'],
    ['test/unit/x.test.ts', 'test'],
    ['scripts/demo.ts', 'scripts'],
    ['native/x', 'other'],
  ];
  for (const [file, area] of table) t.equal(areaOf(file), area, file);
});

t.test('specifiers resolve against the importing file', async (t) => {
  t.equal(resolveImport('router/mesh/router.ts', './peers'), 'router/mesh/peers');
  t.equal(resolveImport('router/mesh/router.ts', '../../common/clock'), 'common/clock');
  t.equal(resolveImport('ipam/ipam.ts', '../router/mesh/gossip.js'), 'router/mesh/gossip');
  t.equal(resolveImport('common/x.ts', '../../shared/y'), '../shared/y');
  t.equal(resolveImport('common/x.ts', 'node:fs'), null);
  t.equal(resolveImport('dns/mdns.ts', 'multicast-dns'), null);
});

t.test('import rules: allowed and refused, one case per rule', async (t) => {
  // [from, specifier, allowed]
  const table: Array<[string, string, boolean]> = [
    ['common/codec.ts', './errors', true],
    ['common/codec.ts', 'node:fs', true],
    ['common/codec.ts', '../router/mesh/errors', false],
    ['common/codec.ts', '../ipam/cidr', false],
    ['common/codec.ts', '../../outside', false],
    ['router/mesh/router.ts', '../../common/clock', true],
    ['router/mesh/router.ts', './data-plane', true],
    ['router/mesh/router.ts', '../overlay/overlay', false],
    ['router/mesh/router.ts', '../host/containers', false],
    ['router/mesh/router.ts', '../api/http-api', false],
    ['router/mesh/router.ts', '../../ipam/ipam', false],
    ['router/mesh/router.ts', '../../test/sim/mesh', false],
    ['router/overlay/overlay.ts', '../mesh/data-plane', true],
    ['router/overlay/overlay.ts', '../host/host-bridge', false],
    ['router/overlay/overlay.ts', '../api/metrics', false],
    ['router/host/containers.ts', '../mesh/errors', true],
    ['router/host/containers.ts', '../overlay/tap-device', false],
    ['router/host/containers.ts', '../api/container-api', false],
    ['router/api/http-api.ts', '../overlay/overlay', true],
    ['router/api/http-api.ts', '../host/containers', true],
    ['router/api/http-api.ts', '../../dns/api-types', false],
    ['router/api/http-api.ts', '../../cli/render-status', false],
    ['router/host/expose.ts', '../../ipam/ipam', false],
    ['ipam/ipam.ts', '../common/clock', true],
    ['ipam/ipam.ts', '../router/mesh/gossip', true],
    ['ipam/messages.ts', '../router/mesh/peer-name', true],
    ['ipam/ipam.ts', '../router/mesh/errors', false],
    ['ipam/ipam.ts', '../router/mesh/router', false],
    ['ipam/http.ts', '../router/api/http-api', false],
    ['ipam/ipam.ts', '../dns/store', false],
    ['ipam/ipam.ts', '../cli/daemon', false],
    ['dns/service.ts', '../router/mesh/gossip', true],
    ['dns/daemon-glue.ts', '../router/host/containers', false],
    ['dns/daemon-glue.ts', '../router/api/http-api', false],
    ['dns/store.ts', '../ipam/cidr', false],
    ['cni/plugin.ts', '../common/cni-wire', true],
    ['cni/plugin.ts', './config', true],
    ['cni/plugin.ts', '../router/host/cni-endpoint', false],
    ['cni/plugin.ts', '../cli/api-client', false],
    ['router/host/cni-endpoint.ts', '../../cni/plugin', false],
    ['cli/daemon.ts', '../ipam/ipam', true],
    ['cli/daemon.ts', '../router/host/containers', true],
    ['test/unit/x.test.ts', '../../ipam/ipam', true],
    ['scripts/demo.ts', '../router/mesh/router', true],
  ];
  for (const [from, spec, allowed] of table) {
    const why = importViolation(from, resolveImport(from, spec));
    if (allowed) t.equal(why, null, `${from} -> ${spec} is allowed`);
    else t.type(why, 'string', `${from} -> ${spec} is refused`);
  }
});

t.test('the scanner finds every kind of import and nothing in comments or strings', async (t) => {
  const source = [
    '// Owns nothing. import { x } from \'./in-comment\';',
    'import { a } from \'./static\';',
    'import type { B } from \'./type-only\';',
    'import {',
    '  c,',
    '  d,',
    '} from \'./multi-line\';',
    'export * from \'./re-export\';',
    'export type { E } from \'./re-export-type\';',
    'import sodium = require(\'./import-equals\');',
    'const f = require(\'./require\');',
    'type G = typeof import(\'./type-import\');',
    'void import(\'./dynamic\');',
    'import \'./side-effect\';',
    'const s = "import h from \'./in-string\'";',
    '/* import i from \'./in-block-comment\'; */',
  ].join('\n');
  const found = importsOf(source);
  t.same(found.map((f) => f.specifier).sort(), [
    './dynamic', './import-equals', './multi-line', './re-export', './re-export-type', './require', './side-effect',
    './static', './type-import', './type-only',
  ]);
  t.equal(found.find((f) => f.specifier === './multi-line')?.line, 7, 'the line named is the specifier\'s');
});

t.test('file checks: size, opening comment, imports, with file and line named', async (t) => {
  const ok = '// Owns a thing.\nimport { x } from \'../common/clock\';\n';
  t.same(fileViolations('ipam/ok.ts', ok), []);
  t.same(fileViolations('cli/weave.ts', '#!/usr/bin/env node\n// The command.\n'), [], 'a shebang may come first');
  t.same(fileViolations('cli/anything.ts', '// cli may import anything.\nimport { y } from \'../dns/store\';\n'), []);

  const bad = 'import { x } from \'../dns/store\';\n';
  const found = fileViolations('ipam/bad.ts', bad);
  t.equal(found.length, 2);
  t.match(found[0], /^ipam\/bad\.ts:1 imports '\.\.\/dns\/store': ipam\/ and dns\/ never import each other/);
  t.match(found[1], /does not open with a comment/);

  const long = '// Long.\n' + 'x;\n'.repeat(MAX_SOURCE_LINES);
  t.equal(lineCount(long), MAX_SOURCE_LINES + 1);
  t.match(fileViolations('router/mesh/long.ts', long), [/451 lines, over 450/]);
  t.same(fileViolations('router/mesh/long.ts', '// Exactly at the limit.\n' + 'x;\n'.repeat(MAX_SOURCE_LINES - 1)), []);
  t.same(fileViolations('test/unit/long.test.ts', 'x;\n'.repeat(1000)), [], 'tests are not checked');
});

// ---------------------------------------------------------------------------
// The real tree

t.test('the real tree keeps the house rules', async (t) => {
  const root = repoRoot();
  const files = SOURCE_ROOTS.flatMap((dir) => sourceFiles(root, dir));
  t.ok(files.length > 50, `found ${files.length} source files under ${root}`);
  const violations = files.flatMap((f) => fileViolations(f, fs.readFileSync(path.join(root, f), 'utf8')));
  // One failure per violation, each naming the file (and line) to fix.
  for (const v of violations) t.fail(v);
  if (violations.length === 0) t.pass('no violations');
});
