// Host names and the weave domain: validation and normal form. A stored name
// is fully qualified, lower case, without the trailing dot ("web.weave.local").
// Labels are letters, digits, '-' and '_' (Docker names may contain '_' and
// '.'), 1-63 bytes each, 253 in all (RFC 1035 §2.3.4). Pure.

import { MAX_LABEL_BYTES, MAX_NAME_BYTES } from './constants';
import { DnsError } from './errors';

const LABEL_RE = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** True for a normal-form name: lower case, no trailing dot, valid labels. */
export function isNormalName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME_BYTES) return false;
  for (const label of name.split('.')) {
    if (label.length > MAX_LABEL_BYTES || !LABEL_RE.test(label)) return false;
  }
  return true;
}

/** Lower case, one trailing dot removed; the result may still be invalid (check with isNormalName). */
export function lowerName(text: string): string {
  const s = text.toLowerCase();
  return s.endsWith('.') ? s.slice(0, -1) : s;
}

/** --dns-domain: "weave.local", "Weave.Local." and ".weave.local" all become "weave.local". */
export function parseDomain(text: string, what = '--dns-domain'): string {
  const s = typeof text === 'string' ? text.trim().toLowerCase().replace(/^\.+/, '').replace(/\.+$/, '') : '';
  if (s === '' || !isNormalName(s)) {
    throw DnsError.config(`${what} must be a domain name such as weave.local (labels of letters, digits and '-'), got ${JSON.stringify(text)}`);
  }
  if (s.endsWith('in-addr.arpa') || s.endsWith('ip6.arpa')) throw DnsError.config(`${what} must not be a reverse-lookup zone, got ${JSON.stringify(text)}`);
  return s;
}

/** True when `name` is `domain` or below it. Both in normal form. */
export function inDomain(name: string, domain: string): boolean {
  return name === domain || name.endsWith(`.${domain}`);
}

/**
 * A name to register, in normal form: relative names ("web", "api.v2") go under
 * the domain, names already under it stay, and a trailing dot means "exactly
 * this", which must then be under the domain too (we answer for nothing else).
 */
export function qualifyName(text: string, domain: string, what = 'name'): string {
  if (typeof text !== 'string' || text.trim() === '') throw DnsError.config(`${what} must not be empty`);
  const raw = text.trim();
  const absolute = raw.endsWith('.');
  const lower = lowerName(raw);
  const name = absolute || inDomain(lower, domain) ? lower : `${lower}.${domain}`;
  if (!isNormalName(name)) {
    throw DnsError.config(
      `${what} ${JSON.stringify(text)} is not a valid host name: labels of letters, digits, '-' and '_', ` +
        `at most ${MAX_LABEL_BYTES} characters each and ${MAX_NAME_BYTES} in all`,
    );
  }
  if (!inDomain(name, domain) || name === domain) {
    throw DnsError.config(`${what} ${JSON.stringify(text)} is not under the weave domain ${domain}`);
  }
  return name;
}

/**
 * The name to register for a container's own name (Docker name, netns name),
 * or null when it cannot be one: such containers are attached without a name
 * rather than refused.
 */
export function containerHostName(containerName: string, domain: string): string | null {
  try {
    return qualifyName(containerName.replace(/\.+$/, ''), domain);
  } catch {
    return null;
  }
}
