// Pointing a container's resolver at our server, and putting it back. Adapter
// over files:
// - Docker (and pid:) containers: /proc/PID/root/etc/resolv.conf, written in
//   place. Docker bind-mounts that file, so a rename over it would fail with
//   EBUSY; writeFileSync truncates and writes the same inode.
// - netns:NAME containers: /etc/netns/NAME/resolv.conf, which `ip netns exec`
//   bind-mounts over /etc/resolv.conf (the directory is created if missing).
// What was there before is kept in <datadir>/dns-resolv.json, so a detach
// after a daemon restart still restores it. A restore happens only while the
// file still holds what we wrote: a file someone changed since is left alone.
//
// It must never write the host's own resolv.conf: a pid: container sharing the
// host's mount namespace sees the host's file at /proc/PID/root/etc/resolv.conf,
// so the target is compared (device and inode) with ours first.

import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../common/logger';
import { writeFileAtomic } from '../common/files';
import { MAX_RESOLV_CONF_BYTES } from './constants';
import { parseResolvConf, renderContainerResolvConf } from './resolv-conf';

export interface ResolvTarget {
  id: string;
  kind: 'docker' | 'netns' | 'pid';
  name: string;
  pid: number | null;
}

interface Backup {
  path: string;
  /** null: there was no file. */
  previous: string | null;
  written: string;
  /** A directory we created (netns), removed again when empty. */
  createdDir: string | null;
}

export interface ContainerResolvOptions {
  stateFile: string;
  nameserver: string;
  domain: string;
  procRoot?: string;
  netnsEtc?: string;
  hostResolvConf?: string;
}

export type PointResult = { kind: 'written'; path: string } | { kind: 'unchanged'; path: string } | { kind: 'skipped'; why: string };

const STATE_VERSION = 1;

export class ContainerResolvConf {
  private readonly backups = new Map<string, Backup>();
  private readonly procRoot: string;
  private readonly netnsEtc: string;
  private readonly hostResolvConf: string;

  constructor(private readonly logger: Logger, private readonly opts: ContainerResolvOptions) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.netnsEtc = opts.netnsEtc ?? '/etc/netns';
    this.hostResolvConf = opts.hostResolvConf ?? '/etc/resolv.conf';
    this.load();
  }

  has(id: string): boolean {
    return this.backups.has(id);
  }

  /** Containers whose resolver we point at us right now. */
  ids(): string[] {
    return [...this.backups.keys()];
  }

  pathFor(t: ResolvTarget): string | null {
    if (t.kind === 'netns') return path.join(this.netnsEtc, t.name, 'resolv.conf');
    if (t.pid === null) return null;
    return path.join(this.procRoot, String(t.pid), 'root', 'etc', 'resolv.conf');
  }

  /** Writes our resolv.conf into the container, keeping what was there. */
  point(t: ResolvTarget): PointResult {
    const file = this.pathFor(t);
    if (file === null) return { kind: 'skipped', why: 'no process to reach its files through' };
    if (t.kind !== 'netns' && sameFile(file, this.hostResolvConf)) {
      return { kind: 'skipped', why: "it shares the host's resolv.conf" };
    }
    let createdDir: string | null = null;
    if (t.kind === 'netns') {
      const dir = path.dirname(file);
      if (!fs.existsSync(dir)) {
        fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
        createdDir = dir;
      }
    } else if (!fs.existsSync(path.dirname(file))) {
      return { kind: 'skipped', why: 'its /etc is not reachable' };
    }
    const current = readSmall(file);
    if (current === null && fs.existsSync(file)) return { kind: 'skipped', why: `${file} is unreadable or too big to be a resolv.conf` };
    const old = this.backups.get(t.id);
    const previous = old !== undefined && old.path === file && current === old.written ? old.previous : current;
    const written = renderContainerResolvConf(this.opts.nameserver, this.opts.domain, previous === null ? null : parseResolvConf(previous));
    const backup: Backup = { path: file, previous, written, createdDir: old?.path === file ? old.createdDir ?? createdDir : createdDir };
    this.backups.set(t.id, backup);
    this.save();
    if (current === written) return { kind: 'unchanged', path: file };
    // In place (same inode): the file may be a bind mount.
    fs.writeFileSync(file, written, { mode: 0o644 });
    return { kind: 'written', path: file };
  }

  /** Puts back what was there before point(), if the file still holds ours. */
  restore(id: string): void {
    const b = this.backups.get(id);
    if (b === undefined) return;
    this.backups.delete(id);
    this.save();
    try {
      const current = readSmall(b.path);
      if (current !== b.written) {
        if (current !== null) this.logger.info('container resolv.conf changed since we wrote it; leaving it as it is', { file: b.path });
        return;
      }
      if (b.previous === null) fs.unlinkSync(b.path);
      else fs.writeFileSync(b.path, b.previous);
      if (b.createdDir !== null) {
        try {
          fs.rmdirSync(b.createdDir);
        } catch {
          // Not empty: something else lives there now.
        }
      }
    } catch (err) {
      this.logger.warn('cannot restore container resolv.conf', { file: b.path, error: (err as Error).message });
    }
  }

  /** The container is gone (died, destroyed): nothing to restore, forget the backup. */
  forget(id: string): void {
    if (this.backups.delete(id)) this.save();
  }

  private load(): void {
    let text: string;
    try {
      text = fs.readFileSync(this.opts.stateFile, 'utf8');
    } catch {
      return;
    }
    try {
      const o = JSON.parse(text) as { version?: unknown; backups?: unknown };
      if (o.version !== STATE_VERSION || typeof o.backups !== 'object' || o.backups === null) throw new Error(`expected version ${STATE_VERSION}`);
      for (const [id, raw] of Object.entries(o.backups as Record<string, unknown>)) {
        const b = raw as Record<string, unknown>;
        if (typeof b['path'] !== 'string' || typeof b['written'] !== 'string') continue;
        this.backups.set(id, {
          path: b['path'],
          previous: typeof b['previous'] === 'string' ? b['previous'] : null,
          written: b['written'],
          createdDir: typeof b['createdDir'] === 'string' ? b['createdDir'] : null,
        });
      }
    } catch (err) {
      this.logger.warn('ignoring unreadable resolv.conf backups', { file: this.opts.stateFile, error: (err as Error).message });
    }
  }

  private save(): void {
    try {
      fs.mkdirSync(path.dirname(this.opts.stateFile), { recursive: true });
      writeFileAtomic(this.opts.stateFile, JSON.stringify({ version: STATE_VERSION, backups: Object.fromEntries(this.backups) }, null, 2) + '\n');
    } catch (err) {
      this.logger.error('cannot save resolv.conf backups', { file: this.opts.stateFile, error: (err as Error).message });
    }
  }
}

function readSmall(file: string): string | null {
  try {
    const st = fs.statSync(file);
    if (st.size > MAX_RESOLV_CONF_BYTES) return null;
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function sameFile(a: string, b: string): boolean {
  try {
    const sa = fs.statSync(a);
    const sb = fs.statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}
