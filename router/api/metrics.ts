// Prometheus text exposition (format 0.0.4) of one RouterStatus snapshot. Pure:
// the same snapshot that `weave status` renders, turned into gauges and
// counters, so the numbers can never disagree. Must never throw on odd
// counter names or values from the router; they are sanitised instead.

import type { ConnectionState, RouterStatus, TargetState } from '../mesh/status';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

// Listed explicitly so every state is exported, zero included: a series that
// appears only when non-zero breaks rate() and alerting on absence.
const CONNECTION_STATES: readonly ConnectionState[] = ['connecting', 'handshaking', 'established', 'failed'];
const TARGET_STATES: readonly TargetState[] = ['waiting', 'attempting', 'connected', 'failed', 'suspended'];

type Labels = [string, string][];

interface Sample {
  labels: Labels;
  value: number;
}

interface Family {
  name: string;
  type: 'gauge' | 'counter';
  help: string;
  samples: Sample[];
}

/** Escapes a label value as the exposition format requires. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** Turns arbitrary text into a valid metric or label name fragment. */
export function sanitiseMetricName(raw: string): string {
  let s = raw.replace(/[^a-zA-Z0-9_]/g, '_').replace(/_+/g, '_').replace(/^_+|_+$/g, '').toLowerCase();
  if (s === '') s = 'unnamed';
  if (/^[0-9]/.test(s)) s = '_' + s;
  return s;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/**
 * A counter key is `name` or `name{label="value",...}` (quotes optional), as
 * the router writes e.g. `rx_dropped{reason="auth"}`. Returns null when the
 * braces are malformed, in which case the whole key is used as a plain name.
 */
function parseCounterKey(key: string): { base: string; labels: Labels } | null {
  const open = key.indexOf('{');
  if (open < 0) return { base: key, labels: [] };
  if (!key.endsWith('}')) return null;
  const base = key.slice(0, open);
  const inner = key.slice(open + 1, -1).trim();
  const labels: Labels = [];
  if (inner === '') return { base, labels };
  const re = /\s*([^=,\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,"]*))\s*(,|$)/y;
  let pos = 0;
  while (pos < inner.length) {
    re.lastIndex = pos;
    const m = re.exec(inner);
    if (m === null) return null;
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '').trim();
    const name = sanitiseMetricName(m[1] ?? '');
    // A repeated label name would make the series invalid; the last one wins.
    const prev = labels.findIndex(([k]) => k === name);
    if (prev >= 0) labels.splice(prev, 1);
    labels.push([name, value]);
    pos = re.lastIndex;
    if (m[4] === '') break;
  }
  return { base, labels };
}

function counterFamilyName(base: string): string {
  let name = sanitiseMetricName(base);
  // After the prefix a leading digit is fine, so drop the '_' that guarded it.
  if (!name.startsWith('weave_')) name = 'weave_' + name.replace(/^_/, '');
  if (!name.endsWith('_total')) name += '_total';
  return name;
}

function counterFamilies(counters: Record<string, number>): Family[] {
  const byName = new Map<string, Family>();
  for (const key of Object.keys(counters).sort()) {
    const value = counters[key];
    if (typeof value !== 'number') continue;
    const parsed = parseCounterKey(key) ?? { base: key, labels: [] };
    const name = counterFamilyName(parsed.base);
    let fam = byName.get(name);
    if (fam === undefined) {
      fam = { name, type: 'counter', help: `Router counter ${parsed.base}.`, samples: [] };
      byName.set(name, fam);
    }
    // Two keys that sanitise to the same series (e.g. "a-b" and "a_b") are summed:
    // duplicate series would make the whole scrape invalid.
    const labelKey = JSON.stringify(parsed.labels);
    const same = fam.samples.find((s) => JSON.stringify(s.labels) === labelKey);
    if (same !== undefined) same.value += value;
    else fam.samples.push({ labels: parsed.labels, value });
  }
  return [...byName.values()];
}

function renderFamily(f: Family): string {
  let out = `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
  for (const s of f.samples) {
    const labels = s.labels.length === 0 ? '' : `{${s.labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`;
    out += `${f.name}${labels} ${formatValue(s.value)}\n`;
  }
  return out;
}

export function renderMetrics(status: RouterStatus): string {
  const fams: Family[] = [];
  const gauge = (name: string, help: string, samples: Sample[]): void => {
    fams.push({ name, type: 'gauge', help, samples });
  };

  gauge('weave_router_info', 'Constant 1, labelled with the router version and identity.', [
    { labels: [['version', status.version], ['name', status.name], ['nickname', status.nickname]], value: 1 },
  ]);
  gauge('weave_start_time_seconds', 'When this router started, seconds since the Unix epoch.', [
    { labels: [], value: status.startedMs / 1000 },
  ]);
  gauge(
    'weave_connections',
    'Connections of this router, by state.',
    CONNECTION_STATES.map((state) => ({
      labels: [['state', state]],
      value: status.connections.filter((c) => c.state === state).length,
    })),
  );
  gauge('weave_peers', 'Peers known in the mesh topology, this one included.', [{ labels: [], value: status.peers.length }]);
  gauge('weave_reachable_peers', 'Peers this router has a route to.', [
    { labels: [], value: status.peers.filter((p) => p.reachable).length },
  ]);
  gauge(
    'weave_targets',
    'Connection targets (addresses to connect to), by state.',
    TARGET_STATES.map((state) => ({
      labels: [['state', state]],
      value: status.targets.filter((t) => t.state === state).length,
    })),
  );
  gauge('weave_encryption_enabled', '1 when the mesh is encrypted (a password is set), 0 when traffic is plaintext.', [
    { labels: [], value: status.encryption ? 1 : 0 },
  ]);
  gauge(
    'weave_health_warning',
    'Active health warnings, 1 per warning code; absent means healthy.',
    status.health.map((h) => ({ labels: [['code', h.code], ['severity', h.severity]], value: 1 })),
  );

  const fixed = new Set(fams.map((f) => f.name));
  for (const f of counterFamilies(status.counters)) {
    // Fixed gauges never end in _total, so this only guards against a future rename.
    if (!fixed.has(f.name)) fams.push(f);
  }
  return fams.map(renderFamily).join('');
}
