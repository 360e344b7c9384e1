// `weave setup-cni`: installs the weave-net plugin where CNI runtimes look
// for plugins, and a network config for a network named `weave`. The plugin
// file is a small shell shim naming node and dist/cni/weave-net.js by
// absolute path, resolved now: runtimes run plugins with a minimal PATH (or
// none), so nothing may be looked up at run time. The conflist names the
// router's API socket for the same reason.
//
// Files are replaced atomically (a runtime may exec the plugin while we
// write it), and nothing but those two files (and, with a lib directory,
// the copies of node and the plugin's files in it) is touched.

import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../common/files';

export const PLUGIN_NAME = 'weave-net';
export const NETWORK_NAME = 'weave';
export const CONFLIST_NAME = '10-weave.conflist';
export const DEFAULT_BIN_DIR = '/opt/cni/bin';
export const DEFAULT_CONF_DIR = '/etc/cni/net.d';
/** What we write in the conflist: every runtime of the last years reads it. */
export const CONFLIST_CNI_VERSION = '1.0.0';

export interface InstallOptions {
  binDir: string;
  confDir: string;
  /** The router's API socket, absolute. */
  socket: string;
  /** Absolute path of node; default the one running now. */
  nodePath?: string;
  /** Absolute path of weave-net.js; default the one next to this file. */
  pluginScript?: string;
  /**
   * Copy node and the plugin's own files here and name those in the shim:
   * for a router in a container (the DaemonSet), whose node and dist the
   * host cannot see. The directory must be the same path inside and out.
   */
  libDir?: string;
}

export interface InstallResult {
  plugin: string;
  conflist: string;
}

/** A word for sh, quoted so that nothing in it is special. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function shimText(nodePath: string, script: string): string {
  return [
    '#!/bin/sh',
    '# weave-net CNI plugin, written by `weave setup-cni`: node and the plugin by absolute path,',
    '# since runtimes run plugins without a useful PATH. Run weave setup-cni again after moving either.',
    `exec ${shellQuote(nodePath)} ${shellQuote(script)} "$@"`,
    '',
  ].join('\n');
}

export function conflistText(socket: string): string {
  const conf = {
    cniVersion: CONFLIST_CNI_VERSION,
    name: NETWORK_NAME,
    plugins: [{ type: PLUGIN_NAME, socket }],
  };
  return `${JSON.stringify(conf, null, 2)}\n`;
}

function absolute(p: string, what: string): string {
  if (!path.isAbsolute(p)) throw new Error(`${what} must be an absolute path, got ${JSON.stringify(p)}`);
  return path.normalize(p);
}

/**
 * Everything the plugin loads besides node's own modules: cni/ and two files
 * of common/ (test/unit/cni-plugin.test.ts checks that this is all).
 */
function pluginFiles(distRoot: string): string[] {
  const cniFiles = fs.readdirSync(path.join(distRoot, 'cni')).filter((f) => f.endsWith('.js') && f !== 'install.js').map((f) => `cni/${f}`);
  return [...cniFiles, 'common/cni-wire.js', 'common/errors.js'];
}

/** Copies node and the plugin's files into `libDir`; returns the node and script paths there. */
function copyToLibDir(libDir: string, nodePath: string, script: string): { nodePath: string; script: string } {
  const distRoot = path.resolve(path.dirname(script), '..');
  for (const rel of pluginFiles(distRoot)) {
    const to = path.join(libDir, 'dist', rel);
    fs.mkdirSync(path.dirname(to), { recursive: true, mode: 0o755 });
    fs.copyFileSync(path.join(distRoot, rel), `${to}.tmp`);
    fs.renameSync(`${to}.tmp`, to);
  }
  const node = path.join(libDir, 'node');
  fs.copyFileSync(nodePath, `${node}.tmp`);
  fs.chmodSync(`${node}.tmp`, 0o755);
  fs.renameSync(`${node}.tmp`, node);
  return { nodePath: node, script: path.join(libDir, 'dist', 'cni', 'weave-net.js') };
}

export function installCni(opts: InstallOptions): InstallResult {
  const binDir = path.resolve(opts.binDir);
  const confDir = path.resolve(opts.confDir);
  let nodePath = absolute(opts.nodePath ?? process.execPath, 'node');
  let script = absolute(opts.pluginScript ?? path.join(__dirname, 'weave-net.js'), 'the plugin script');
  const socket = absolute(opts.socket, 'the API socket');
  if (!fs.existsSync(script)) throw new Error(`${script} does not exist: build the project first (npm run build)`);
  if (opts.libDir !== undefined) ({ nodePath, script } = copyToLibDir(absolute(opts.libDir, '--lib-dir'), nodePath, script));
  fs.mkdirSync(binDir, { recursive: true, mode: 0o755 });
  fs.mkdirSync(confDir, { recursive: true, mode: 0o755 });
  const plugin = path.join(binDir, PLUGIN_NAME);
  const conflist = path.join(confDir, CONFLIST_NAME);
  writeFileAtomic(plugin, shimText(nodePath, script), { mode: 0o755 });
  // The mode asked for is filtered by the umask; a plugin the runtime cannot execute is useless.
  fs.chmodSync(plugin, 0o755);
  writeFileAtomic(conflist, conflistText(socket), { mode: 0o644 });
  return { plugin, conflist };
}
