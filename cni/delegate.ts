// Delegation to the IPAM plugin a network config names in its `ipam`
// section (host-local, dhcp, static...), per the spec: the binary of that
// name in CNI_PATH, run with our own environment (so the same CNI_COMMAND)
// and the same config on stdin; its result or its error on stdout.
//
// It must never run anything but a file named exactly `type` inside a
// CNI_PATH directory (config.ts refuses '/' and '..' in the type), never
// through a shell, and never wait forever.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CNI_ERR, PluginError } from './errors';

const DELEGATE_TIMEOUT_MS = 60_000;
const MAX_DELEGATE_OUTPUT_BYTES = 1024 * 1024;

export type DelegateRun = (type: string, env: Record<string, string | undefined>, stdin: Buffer) => Promise<Record<string, unknown> | null>;

export function findPlugin(type: string, dirs: readonly string[]): string {
  for (const dir of dirs) {
    const file = path.join(dir, type);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // Not in this directory.
    }
  }
  throw new PluginError(CNI_ERR.invalidConfig, `IPAM plugin ${type} not found in CNI_PATH (${dirs.join(':') || 'empty'})`);
}

/**
 * Runs the IPAM plugin; resolves with its parsed result (null when it printed
 * nothing, as DEL may), rejects with its own error code and message.
 */
export const runDelegate: DelegateRun = (type, env, stdin) => {
  const dirs = (env['CNI_PATH'] ?? '').split(':').filter((d) => d.startsWith('/'));
  const file = findPlugin(type, dirs);
  return new Promise((resolve, reject) => {
    const child = execFile(file, [], { env, timeout: DELEGATE_TIMEOUT_MS, maxBuffer: MAX_DELEGATE_OUTPUT_BYTES, encoding: 'utf8' }, (err, stdout) => {
      let parsed: Record<string, unknown> | null = null;
      if (stdout.trim() !== '') {
        try {
          const v = JSON.parse(stdout) as unknown;
          if (typeof v === 'object' && v !== null && !Array.isArray(v)) parsed = v as Record<string, unknown>;
        } catch {
          parsed = null;
        }
      }
      if (err !== null) {
        const code = parsed?.['code'];
        const msg = parsed?.['msg'];
        if (typeof code === 'number' && Number.isInteger(code) && code > 0 && typeof msg === 'string') {
          reject(new PluginError(code, `IPAM plugin ${type}: ${msg}`, typeof parsed?.['details'] === 'string' ? parsed['details'] : ''));
        } else {
          reject(new PluginError(CNI_ERR.ioFailure, `IPAM plugin ${type} failed: ${err.message.split('\n')[0] ?? ''}`));
        }
        return;
      }
      if (stdout.trim() !== '' && parsed === null) {
        reject(new PluginError(CNI_ERR.ioFailure, `IPAM plugin ${type} printed something that is not a JSON object`));
        return;
      }
      resolve(parsed);
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(stdin);
  });
};
