// What a Docker container asks of auto-attach: the label `weave.attach`
// (empty: one address from IPAM; else the words `weave attach` takes:
// CIDR, ip:CIDR, net:CIDR, net:default) or Weave Net's WEAVE_CIDR
// environment variable (same words; `none` opts out), read from the
// container's inspect reply. Pure: no I/O.
//
// Labels and environment are written by whoever runs the container, so every
// value is hostile input: bounded, refused with a message that says what was
// expected, never thrown past the caller (a refusal is a value, shown in
// status and the log, and the container is left alone).

import { errorMessage } from '../../common/errors';
import { MAX_ADDRESSES_PER_REQUEST, parseAttachAddress, parseRouteCidr } from './attach-address';
import type { DockerContainer } from './docker-client';

export const ATTACH_LABEL = 'weave.attach';
export const WEAVE_CIDR_ENV = 'WEAVE_CIDR';
/** Far above a list of 64 addresses; a longer value is not a request. */
const MAX_VALUE_CHARS = 4096;

/** How a container joined: `weave attach`, a label, WEAVE_CIDR, or the Docker network plugin. */
export type JoinedVia = 'manual' | 'label' | 'env' | 'plugin' | 'cni';
export const JOINED_VIA: readonly JoinedVia[] = ['manual', 'label', 'env', 'plugin'];

export type AutoAttachRequest =
  /** Neither label nor WEAVE_CIDR (or WEAVE_CIDR=none): not ours to attach. */
  | { kind: 'none' }
  /** Attach with these address words (empty: IPAM's default subnet). */
  | { kind: 'attach'; via: 'label' | 'env'; addresses: string[] }
  /** Asked for, but the request cannot be honoured: `error` says why and what to write instead. */
  | { kind: 'refused'; via: 'label' | 'env'; error: string };

/**
 * The address words of a label or WEAVE_CIDR value, checked as `weave attach`
 * checks them. Throws an Error naming the bad word.
 */
export function parseAttachWords(value: string): string[] {
  if (value.length > MAX_VALUE_CHARS) throw new Error(`value is ${value.length} characters long, over ${MAX_VALUE_CHARS}`);
  if (/[\u0000-\u0008\u000e-\u001f\u007f]/.test(value)) throw new Error('value contains control characters');
  const words = value.split(/[\s,]+/).filter((w) => w !== '');
  if (words.length > MAX_ADDRESSES_PER_REQUEST) throw new Error(`${words.length} addresses, over the limit of ${MAX_ADDRESSES_PER_REQUEST}`);
  for (const w of words) {
    if (w === 'net:default') continue;
    try {
      if (w.startsWith('net:')) parseRouteCidr(w.slice(4));
      else parseAttachAddress(w.startsWith('ip:') ? w.slice(3) : w);
    } catch (err) {
      throw new Error(`${JSON.stringify(w.slice(0, 80))}: ${errorMessage(err)}`);
    }
  }
  return words;
}

/** What `c` asks for; the label wins over WEAVE_CIDR when both are set. */
export function autoAttachRequest(c: Pick<DockerContainer, 'labels' | 'weaveCidr' | 'networkMode'>): AutoAttachRequest {
  const label = c.labels?.[ATTACH_LABEL];
  let via: 'label' | 'env';
  let value: string;
  if (label !== undefined) {
    via = 'label';
    value = label;
  } else if (c.weaveCidr !== undefined) {
    via = 'env';
    value = c.weaveCidr;
  } else {
    return { kind: 'none' };
  }
  if (value.trim() === 'none') return { kind: 'none' };
  const what = via === 'label' ? `label ${ATTACH_LABEL}` : WEAVE_CIDR_ENV;
  const mode = c.networkMode ?? '';
  if (mode === 'host') {
    return { kind: 'refused', via, error: `${what}: the container runs with --network host and shares the host's namespace; nothing to attach` };
  }
  if (mode.startsWith('container:')) {
    return { kind: 'refused', via, error: `${what}: the container shares the namespace of ${mode.slice(0, 80)}; put the label on that container instead` };
  }
  try {
    return { kind: 'attach', via, addresses: parseAttachWords(value) };
  } catch (err) {
    return {
      kind: 'refused', via,
      error: `${what}: ${errorMessage(err)} (expected nothing, or CIDRs, ip:CIDR, net:CIDR or net:default separated by spaces)`,
    };
  }
}
