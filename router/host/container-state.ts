// The record of attachments: what the ContainerManager keeps per container
// (Attachment), the list of them in memory (AttachmentRecord), saved whole to
// <datadir>/containers.json after every change and read back when the daemon
// restarts, and the StateStore behind it (the real file, or memory in tests).
// Also the two ways a record is shown: the public view handed to listeners and
// the API, and its description in messages.
//
// It must never trust the file: every field is checked on load, since the
// file may be hand-edited or truncated; a damaged entry is skipped, not the
// whole record, and a file it cannot use is set aside, not overwritten. It
// never writes half a record (common/state-files.ts: temporary file, rename,
// retried when the disk is full), and never looks at the host: whether a saved
// entry is still true after a restart is the manager's to decide.

import fs from 'node:fs';
import path from 'node:path';
import { copyAside, readStateFile, setAside } from '../../common/files';
import { stateFiles } from '../../common/state-files';
import type { StateFileKeeper } from '../../common/state-files';
import type { Logger } from '../../common/logger';
import { assertNever, errorMessage } from '../../common/errors';
import type { AttachCidr } from './attach-address';
import { ipOf, parseAttachAddress } from './attach-address';
import { RouterError } from '../mesh/errors';
import type { AttachedContainer } from './attached-container';
import { attachOptionsOf } from './attached-container';
import { CONTAINER_IFNAME } from './container-link';
import type { ContainerKind } from './container-ref';
import { isNetnsName, namespacePathOf } from './container-ref';
import { validateIfName } from './host-link';
import type { JoinedVia } from './docker-attach-spec';
import { JOINED_VIA } from './docker-attach-spec';

export const STATE_FILE = 'containers.json';
const STATE_VERSION = 1;
/** Far more than any host attaches (about 1 KiB per entry); a bigger file is not ours. */
const MAX_STATE_FILE_BYTES = 64 * 1024 * 1024;
const MAX_SAVED_CONTAINERS = 65_536;

/** What we keep per container: the public view plus how to find its namespace again. */
export interface Attachment {
  kind: ContainerKind;
  id: string;
  name: string;
  /** The reference the user gave, for messages. */
  ref: string;
  pid: number | null;
  netnsPath: string;
  nsId: string;
  hostIfname: string;
  mac: string;
  addresses: string[];
  /** 'stopped': a Docker container that died; its addresses stay reserved for its restart. */
  state: 'attached' | 'stopped';
  /** When a Docker container was seen to die (ms since the epoch): its addresses are kept for a grace period from then. */
  stoppedAtMs?: number;
  /** How it joined; absent means `weave attach` (records from before auto-attach). */
  via?: JoinedVia;
  dnsName?: string;
  withoutDns?: boolean;
  /** false: `weave attach --no-port-security`. */
  portSecurity?: false;
}

/** Where the attachment record lives; a fake keeps it in memory for tests. */
export interface StateStore {
  /** The saved text, null when there is none; throws when it cannot be read. */
  load(): string | null;
  /** Throws when the write failed (the file store keeps retrying it). */
  save(text: string): void;
  /** What was saved is not used (whole) or not all of it: keep the original aside and report why. */
  ignore(reason: string, whole: boolean): void;
}

/** The text stored for `attachments`. */
export function formatContainerState(attachments: readonly Attachment[]): string {
  return JSON.stringify({ version: STATE_VERSION, containers: attachments }, null, 2) + '\n';
}

/** The state file's outer shape; throws when it is not ours at all. */
function containerEntries(text: string): unknown[] {
  const o = JSON.parse(text) as { version?: unknown; containers?: unknown };
  if (typeof o !== 'object' || o === null || o.version !== STATE_VERSION || !Array.isArray(o.containers)) {
    throw new Error(`expected {"version": ${STATE_VERSION}, "containers": [...]}`);
  }
  if (o.containers.length > MAX_SAVED_CONTAINERS) throw new Error(`${o.containers.length} entries, more than the ${MAX_SAVED_CONTAINERS} we keep`);
  return o.containers as unknown[];
}

/** Decodes containers.json, checking every field: the file may be hand-edited or truncated. Throws on the first bad entry. */
export function parseContainerState(text: string): Attachment[] {
  return containerEntries(text).map(parseEntry);
}

/**
 * The same, keeping every good entry: one damaged entry must not cost the
 * others their restore. Throws only when the file as a whole is not ours.
 */
export function parseContainerStateLeniently(text: string): { attachments: Attachment[]; problems: string[] } {
  const attachments: Attachment[] = [];
  const problems: string[] = [];
  for (const [i, raw] of containerEntries(text).entries()) {
    try {
      attachments.push(parseEntry(raw));
    } catch (err) {
      problems.push(`entry ${i}: ${errorMessage(err)}`);
    }
  }
  return { attachments, problems };
}

function parseEntry(raw: unknown): Attachment {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('entry is not an object');
  const e = raw as Record<string, unknown>;
  const kind = e['kind'];
  const str = (k: string): string => {
    const v = e[k];
    if (typeof v !== 'string') throw new Error(`entry field ${k} is not a string`);
    return v;
  };
  if (kind !== 'docker' && kind !== 'netns' && kind !== 'pid') throw new Error(`entry kind ${JSON.stringify(kind)} is unknown`);
  const addresses = e['addresses'];
  if (!Array.isArray(addresses) || !addresses.every((c) => typeof c === 'string')) throw new Error('entry addresses is not a list of strings');
  for (const c of addresses as string[]) parseAttachAddress(c);
  const rawPid = e['pid'];
  const pid = typeof rawPid === 'number' && Number.isInteger(rawPid) && rawPid > 0 ? rawPid : null;
  const state = e['state'] === 'stopped' ? 'stopped' : 'attached';
  // The daemon enters this namespace (nsenter) and reads /etc/netns/NAME for
  // it: only the path the entry's own kind, name or pid implies is taken.
  const name = str('name');
  const netnsPath = str('netnsPath');
  const implied = kind === 'netns' ? (isNetnsName(name) && str('id') === `netns:${name}` ? namespacePathOf('netns', name) : null)
    : pid === null ? null : namespacePathOf(kind, pid);
  if (netnsPath !== implied) throw new Error(`entry ${JSON.stringify(str('id'))} has namespace path ${JSON.stringify(netnsPath)}, not its ${kind}'s`);
  return {
    kind,
    id: str('id'),
    name,
    ref: str('ref'),
    pid,
    netnsPath,
    nsId: str('nsId'),
    hostIfname: validateIfName(str('hostIfname'), 'veth name'),
    mac: str('mac'),
    addresses: addresses as string[],
    state,
    ...(state === 'stopped' && typeof e['stoppedAtMs'] === 'number' && Number.isSafeInteger(e['stoppedAtMs']) && e['stoppedAtMs'] > 0
      ? { stoppedAtMs: e['stoppedAtMs'] } : {}),
    ...(JOINED_VIA.includes(e['via'] as JoinedVia) && e['via'] !== 'manual' ? { via: e['via'] as JoinedVia } : {}),
    ...attachOptionsOf({
      ...(typeof e['dnsName'] === 'string' ? { dnsName: e['dnsName'] } : {}),
      ...(e['withoutDns'] === true ? { withoutDns: true } : {}),
      ...(e['portSecurity'] === false ? { portSecurity: false } : {}),
    }),
  };
}

/** What listeners and the API see of a record. */
export function publicView(a: Attachment): AttachedContainer {
  return {
    id: a.id,
    name: a.name,
    kind: a.kind,
    ifname: CONTAINER_IFNAME,
    mac: a.mac,
    addresses: [...a.addresses],
    hostIfname: a.hostIfname,
    pid: a.pid,
    joined: a.via ?? 'manual',
    ...attachOptionsOf(a),
  };
}

/**
 * The record's addresses a detach of `wanted` takes away: each named one (an
 * address not attached is a config error), then each one's twins (IPAM's
 * IPv6 twin of an IPv4 address, and back) that the record holds.
 */
export function addressesToDetach(record: Attachment, wanted: readonly AttachCidr[], twinsOf: (cidr: string) => string[]): string[] {
  const removing: string[] = [];
  for (const w of wanted) {
    const have = record.addresses.find((c) => ipOf(c) === w.address);
    if (have === undefined) throw RouterError.config(`address ${w.address} is not attached to ${describeAttachment(record)}`);
    if (!removing.includes(have)) removing.push(have);
  }
  for (const c of [...removing]) {
    for (const twin of twinsOf(c)) {
      const have = record.addresses.find((a) => ipOf(a) === ipOf(twin));
      if (have !== undefined && !removing.includes(have)) removing.push(have);
    }
  }
  return removing;
}

/** A record as messages name it: `container web (0123456789ab)`, `netns:NAME`, `pid:PID (comm)`. */
export function describeAttachment(a: Attachment): string {
  switch (a.kind) {
    case 'docker':
      return `container ${a.name} (${a.id.slice(0, 12)})`;
    case 'netns':
      return `netns:${a.name}`;
    case 'pid':
      return `${a.id} (${a.name})`;
    default:
      return assertNever(a.kind);
  }
}

/**
 * <datadir>/containers.json through common/state-files.ts: read with a size
 * cap, set aside (not overwritten) when unusable, written atomically and
 * retried when the disk refuses.
 */
export class FileStateStore implements StateStore {
  constructor(readonly file: string, private readonly keeper: StateFileKeeper = stateFiles) {}

  load(): string | null {
    return readStateFile(this.file, MAX_STATE_FILE_BYTES);
  }

  save(text: string): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const err = this.keeper.save(this.file, text);
    if (err !== null) throw err;
  }

  ignore(reason: string, whole: boolean): void {
    const now = Date.now();
    this.keeper.ignored(this.file, reason, whole ? setAside(this.file, now) : copyAside(this.file, now));
  }
}

/** Keeps the record in memory (unit tests). */
export class MemoryStateStore implements StateStore {
  text: string | null = null;
  ignored: string[] = [];

  load(): string | null {
    return this.text;
  }

  save(text: string): void {
    this.text = text;
  }

  ignore(reason: string, whole: boolean): void {
    this.ignored.push(reason);
    if (whole) this.text = null;
  }
}

/**
 * The attachments in memory, saved whole to the StateStore after every
 * change. Callers mutate entries in place and then call save().
 */
export class AttachmentRecord {
  private readonly entries: Attachment[] = [];

  constructor(private readonly store: StateStore, private readonly logger: Logger) {}

  /** Every entry, stopped Docker containers included, in the order they were added. */
  all(): readonly Attachment[] {
    return this.entries;
  }

  add(a: Attachment): void {
    this.entries.push(a);
  }

  forget(a: Attachment): void {
    const i = this.entries.indexOf(a);
    if (i >= 0) this.entries.splice(i, 1);
  }

  /**
   * What a previous daemon saved; null when there is no record or none of it
   * can be used. Damaged entries are skipped and reported, the rest restored;
   * an unusable file is kept aside (the store's ignore), never just overwritten.
   */
  loadSaved(): Attachment[] | null {
    let text: string | null;
    try {
      text = this.store.load();
      if (text === null) return null;
      const { attachments, problems } = parseContainerStateLeniently(text);
      if (problems.length > 0) {
        this.logger.warn('ignoring damaged entries of the container record', { file: STATE_FILE, skipped: problems.length, first: problems[0] });
        this.store.ignore(`${problems.length} damaged entr${problems.length === 1 ? 'y' : 'ies'} skipped (${problems[0]})`, false);
      }
      return attachments;
    } catch (err) {
      this.logger.warn('ignoring unreadable container record', { file: STATE_FILE, error: errorMessage(err) });
      this.store.ignore(errorMessage(err), true);
      return null;
    }
  }

  save(): void {
    try {
      this.store.save(formatContainerState(this.entries));
    } catch (err) {
      // The kernel state is already right; the file store retries the write until it lands.
      this.logger.debug('container record not saved yet', { file: STATE_FILE, error: errorMessage(err) });
    }
  }
}
