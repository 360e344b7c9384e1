// Pointing a container's resolver at our server, and putting it back. Adapter
// over the container's files, all through common/contained-files.ts (the
// addon's openat2 confined to the container's root, no symlinks, regular files
// only, with the rights of the container's user namespace):
// - Docker (and pid:) containers: etc/resolv.conf under /proc/PID/root,
//   written in place (Docker bind-mounts that file, so a rename over it would
//   fail with EBUSY). A process without a resolv.conf gets none.
// - netns:NAME containers: /etc/netns/NAME/resolv.conf, which `ip netns exec`
//   bind-mounts over /etc/resolv.conf (the directory is created if missing).
// What was there before is kept in <datadir>/dns-resolv.json, so a detach
// after a daemon restart still restores it. A restore happens only while the
// file still holds what we wrote: a file someone changed since is left alone.
//
// A resolv.conf that is a symlink, a FIFO, a device, too big, or out of reach
// with the container's own rights is left alone with a warning, and the
// container stays attached (refusals() lists them for status). It must never
// write the host's own resolv.conf: a pid: container sharing the host's mount
// namespace sees the host's file, so the target is compared (device and
// inode) with ours first.

import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../common/logger';
import { errorMessage } from '../common/errors';
import { readStateFile, setAside } from '../common/files';
import { stateFiles } from '../common/state-files';
import type { ContainedFile, ContainedFiles, FileRoot } from '../common/contained-files';
import { ContainedFileError, describeContained, nativeContainedFiles } from '../common/contained-files';
import { MAX_RESOLV_CONF_BYTES } from './constants';
import { parseResolvConf, renderContainerResolvConf } from './resolv-conf';

export interface ResolvTarget {
  id: string;
  kind: 'docker' | 'netns' | 'pid';
  name: string;
  pid: number | null;
}

/** Where a container's resolv.conf is: a namespace name under /etc/netns, or a process's root. */
type Place = { netns: string; pid: null } | { netns: null; pid: number };

interface Backup {
  place: Place;
  /** null: there was no file. */
  previous: string | null;
  written: string;
  /** We created /etc/netns/NAME, and remove it again when empty. */
  createdDir: boolean;
}

export interface ContainerResolvOptions {
  stateFile: string;
  nameserver: string;
  domain: string;
  procRoot?: string;
  netnsEtc?: string;
  hostResolvConf?: string;
}

export type PointResult =
  | { kind: 'written'; path: string }
  | { kind: 'unchanged'; path: string }
  /** Nothing to do here (no process, the host's own file, no resolv.conf); logged by the caller. */
  | { kind: 'skipped'; why: string }
  /** An odd or unreachable file, left alone; already logged as a warning. */
  | { kind: 'refused'; why: string };

const STATE_VERSION = 2;
/** A backup per container of at most a resolv.conf each; a bigger file is not ours. */
const MAX_STATE_FILE_BYTES = 64 * 1024 * 1024;
const RESOLV_REL = 'etc/resolv.conf';

/** One path component: what a netns name must be before it goes into a path. */
function isComponent(name: string): boolean {
  return name.length > 0 && Buffer.byteLength(name) <= 255 && !name.includes('/') && !name.includes('\0') && name !== '.' && name !== '..';
}

function isPid(pid: unknown): pid is number {
  return typeof pid === 'number' && Number.isSafeInteger(pid) && pid > 0;
}

export class ContainerResolvConf {
  private readonly backups = new Map<string, Backup>();
  private readonly refused = new Map<string, string>();
  private readonly procRoot: string;
  private readonly netnsEtc: string;
  private readonly hostResolvConf: string;

  constructor(
    private readonly logger: Logger,
    private readonly opts: ContainerResolvOptions,
    private readonly files: ContainedFiles = nativeContainedFiles(),
  ) {
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

  /** Attached containers whose resolv.conf we left alone because it was odd or out of reach, and why. */
  refusals(): ReadonlyMap<string, string> {
    return this.refused;
  }

  /** Writes our resolv.conf into the container, keeping what was there. */
  point(t: ResolvTarget): PointResult {
    this.refused.delete(t.id);
    const place = placeOf(t);
    if (place === null) {
      return t.kind === 'netns'
        ? this.refuse(t, `the namespace name ${JSON.stringify(t.name)} cannot be a directory name`)
        : { kind: 'skipped', why: 'no process to reach its files through' };
    }
    const { root, rel } = this.locate(place);
    const file = describeContained(root, rel);
    let createdDir = false;
    if (place.netns !== null) {
      // /etc/netns is the host's own; the name is one checked component.
      const dir = path.join(this.netnsEtc, place.netns);
      if (!fs.existsSync(dir)) {
        fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
        createdDir = true;
      }
    }
    let found: ContainedFile | null;
    try {
      found = this.files.read(root, rel, MAX_RESOLV_CONF_BYTES);
    } catch (err) {
      if (!(err instanceof ContainedFileError && err.code === 'missing')) return this.refuse(t, errorMessage(err), createdDir ? place : null);
      found = null;
    }
    if (found === null && place.pid !== null) return { kind: 'skipped', why: `${file} does not exist` };
    if (found !== null && place.pid !== null && this.isHostFile(found)) return { kind: 'skipped', why: "it shares the host's resolv.conf" };
    const current = found === null ? null : found.data.toString('utf8');
    const old = this.backups.get(t.id);
    const keepOld = old !== undefined && samePlace(old.place, place) && current === old.written;
    const previous = keepOld ? old.previous : current;
    const written = renderContainerResolvConf(this.opts.nameserver, this.opts.domain, previous === null ? null : parseResolvConf(previous));
    // Saved before the write, so a crash right after it still knows what to put back.
    this.backups.set(t.id, { place, previous, written, createdDir: (keepOld && old.createdDir) || createdDir });
    this.save();
    if (current === written) return { kind: 'unchanged', path: file };
    try {
      this.files.write(root, rel, Buffer.from(written, 'utf8'), { maxBytes: MAX_RESOLV_CONF_BYTES, create: found === null });
    } catch (err) {
      if (old === undefined) this.backups.delete(t.id);
      else this.backups.set(t.id, old);
      this.save();
      return this.refuse(t, errorMessage(err), createdDir ? place : null);
    }
    return { kind: 'written', path: file };
  }

  /** Puts back what was there before point(), if the file still holds ours. */
  restore(id: string): void {
    this.refused.delete(id);
    const b = this.backups.get(id);
    if (b === undefined) return;
    this.backups.delete(id);
    this.save();
    const { root, rel } = this.locate(b.place);
    const file = describeContained(root, rel);
    try {
      const current = this.files.read(root, rel, MAX_RESOLV_CONF_BYTES).data.toString('utf8');
      if (current !== b.written) {
        this.logger.info('container resolv.conf changed since we wrote it; leaving it as it is', { file });
        return;
      }
      if (b.previous === null) this.files.unlink(root, rel);
      else this.files.write(root, rel, Buffer.from(b.previous, 'utf8'), { maxBytes: MAX_RESOLV_CONF_BYTES, create: false });
    } catch (err) {
      if (err instanceof ContainedFileError && err.code === 'missing') this.logger.info('container resolv.conf is gone; nothing to restore', { file });
      else this.logger.warn('container resolv.conf not restored', { file, reason: errorMessage(err) });
      return;
    } finally {
      if (b.createdDir) this.removeCreatedDir(b.place);
    }
  }

  /** The container is gone (died, destroyed): nothing to restore, forget the backup. */
  forget(id: string): void {
    this.refused.delete(id);
    if (this.backups.delete(id)) this.save();
  }

  private locate(place: Place): { root: FileRoot; rel: string } {
    if (place.netns !== null) return { root: { kind: 'dir', path: this.netnsEtc }, rel: `${place.netns}/resolv.conf` };
    return { root: { kind: 'process', procDir: path.join(this.procRoot, String(place.pid)) }, rel: RESOLV_REL };
  }

  private refuse(t: ResolvTarget, why: string, createdFor: Place | null = null): PointResult {
    if (createdFor !== null) this.removeCreatedDir(createdFor);
    this.logger.warn('container resolv.conf left alone; its resolver does not point at weave dns', { container: t.id, name: t.name, reason: why });
    this.refused.set(t.id, why);
    return { kind: 'refused', why };
  }

  private removeCreatedDir(place: Place): void {
    if (place.netns === null) return;
    try {
      fs.rmdirSync(path.join(this.netnsEtc, place.netns));
    } catch {
      // Not empty: something else lives there now.
    }
  }

  private isHostFile(f: ContainedFile): boolean {
    try {
      const st = fs.statSync(this.hostResolvConf, { bigint: true });
      return st.dev === f.dev && st.ino === f.ino;
    } catch {
      return false;
    }
  }

  private load(): void {
    let text: string | null;
    try {
      text = readStateFile(this.opts.stateFile, MAX_STATE_FILE_BYTES);
      if (text === null) return;
    } catch (err) {
      this.logger.warn('ignoring unreadable resolv.conf backups', { file: this.opts.stateFile, error: errorMessage(err) });
      stateFiles.ignored(this.opts.stateFile, errorMessage(err), setAside(this.opts.stateFile, Date.now()));
      return;
    }
    try {
      const o = JSON.parse(text) as { version?: unknown; backups?: unknown };
      if ((o.version !== STATE_VERSION && o.version !== 1) || typeof o.backups !== 'object' || o.backups === null) {
        throw new Error(`expected version ${STATE_VERSION}`);
      }
      for (const [id, raw] of Object.entries(o.backups as Record<string, unknown>)) {
        const b = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
        const place = o.version === 1 ? this.placeOfV1(b['path']) : parsePlace(b['netns'], b['pid']);
        if (place === null || typeof b['written'] !== 'string') {
          this.logger.warn('ignoring a resolv.conf backup that names no container file', { file: this.opts.stateFile, container: id });
          continue;
        }
        const createdDir = o.version === 1 ? typeof b['createdDir'] === 'string' : b['createdDir'] === true;
        this.backups.set(id, { place, previous: typeof b['previous'] === 'string' ? b['previous'] : null, written: b['written'], createdDir });
      }
    } catch (err) {
      // Kept aside, not overwritten by the next save: it holds what containers' resolv.conf said before us.
      this.logger.warn('ignoring unreadable resolv.conf backups', { file: this.opts.stateFile, error: errorMessage(err) });
      stateFiles.ignored(this.opts.stateFile, errorMessage(err), setAside(this.opts.stateFile, Date.now()));
    }
  }

  /** Version 1 kept the full path: /proc/PID/root/etc/resolv.conf or /etc/netns/NAME/resolv.conf. */
  private placeOfV1(p: unknown): Place | null {
    if (typeof p !== 'string') return null;
    const procRel = path.relative(this.procRoot, p).split('/');
    if (procRel.length === 4 && /^[1-9]\d*$/.test(procRel[0] ?? '') && procRel.slice(1).join('/') === `root/${RESOLV_REL}`) {
      return parsePlace(undefined, Number(procRel[0]));
    }
    const netnsRel = path.relative(this.netnsEtc, p).split('/');
    if (netnsRel.length === 2 && netnsRel[1] === 'resolv.conf') return parsePlace(netnsRel[0], undefined);
    return null;
  }

  private save(): void {
    const backups: Record<string, unknown> = {};
    for (const [id, b] of this.backups) {
      backups[id] = { ...(b.place.netns !== null ? { netns: b.place.netns } : { pid: b.place.pid }), previous: b.previous, written: b.written, createdDir: b.createdDir };
    }
    try {
      fs.mkdirSync(path.dirname(this.opts.stateFile), { recursive: true });
      // Retried until it lands when the disk refuses (common/state-files.ts).
      const failed = stateFiles.save(this.opts.stateFile, JSON.stringify({ version: STATE_VERSION, backups }, null, 2) + '\n');
      if (failed !== null) throw failed;
    } catch (err) {
      this.logger.error('cannot save resolv.conf backups', { file: this.opts.stateFile, error: errorMessage(err) });
    }
  }
}

function placeOf(t: ResolvTarget): Place | null {
  if (t.kind === 'netns') return parsePlace(t.name, undefined);
  return parsePlace(undefined, t.pid);
}

function parsePlace(netns: unknown, pid: unknown): Place | null {
  if (typeof netns === 'string') return isComponent(netns) ? { netns, pid: null } : null;
  return isPid(pid) ? { netns: null, pid } : null;
}

function samePlace(a: Place, b: Place): boolean {
  return a.netns === b.netns && a.pid === b.pid;
}
