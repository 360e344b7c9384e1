import t from 'tap';
import { escapeLabelValue, renderMetrics, sanitiseMetricName } from '../../router/api/metrics';
import { sampleStatus } from './sample-status';

function lines(text: string): string[] {
  return text.trimEnd().split('\n');
}

t.test('gauges for connections, peers, targets, encryption and health', async (t) => {
  const out = lines(renderMetrics(sampleStatus()));
  for (const expected of [
    '# HELP weave_connections Connections of this router, by state.',
    '# TYPE weave_connections gauge',
    'weave_connections{state="connecting"} 1',
    'weave_connections{state="handshaking"} 0',
    'weave_connections{state="established"} 1',
    'weave_connections{state="failed"} 1',
    '# TYPE weave_peers gauge',
    'weave_peers 3',
    'weave_reachable_peers 2',
    'weave_targets{state="connected"} 1',
    'weave_targets{state="failed"} 1',
    'weave_targets{state="waiting"} 0',
    'weave_targets{state="suspended"} 0',
    'weave_encryption_enabled 1',
    '# TYPE weave_health_warning gauge',
    'weave_health_warning{code="peer-unreachable",severity="warning"} 1',
    'weave_router_info{version="0.1.0",name="aa:00:00:00:00:01",nickname="host1"} 1',
    'weave_start_time_seconds 1700000000',
  ]) {
    t.ok(out.includes(expected), expected);
  }
  t.ok(lines(renderMetrics(sampleStatus({ encryption: false }))).includes('weave_encryption_enabled 0'));
});

t.test('counters: sane names, _total suffix, labels parsed, one HELP/TYPE per family', async (t) => {
  const text = renderMetrics(sampleStatus());
  const out = lines(text);
  t.ok(out.includes('# TYPE weave_rx_bytes_total counter'));
  t.ok(out.includes('weave_rx_bytes_total 1234'));
  t.ok(out.includes('weave_conn_failures_total 4'), 'dash becomes underscore');
  t.ok(out.includes('weave_rx_dropped_total{reason="auth"} 2'));
  t.ok(out.includes('weave_rx_dropped_total{reason="replay"} 1'));
  t.equal(out.filter((l) => l === '# TYPE weave_rx_dropped_total counter').length, 1);
});

t.test('every line is valid exposition syntax and every sample has a TYPE', async (t) => {
  const status = sampleStatus({
    counters: { 'weird name!': 1, '9lives': 2, 'a-b': 1, a_b: 2, 'x{bad': 3, 'y{k=v,k="w"}': 4, nan: Number.NaN },
    health: [{ code: 'quote"and\\slash', severity: 'error', text: 't' }],
    nickname: 'line\nbreak',
  });
  const out = lines(renderMetrics(status));
  const typed = new Set<string>();
  const seen = new Set<string>();
  for (const l of out) {
    if (l.startsWith('# HELP ')) continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (gauge|counter)$/.exec(l);
    if (type) {
      t.notOk(typed.has(type[1]!), `one TYPE for ${type[1]}`);
      typed.add(type[1]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\\n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\\n])*")*)\})? (-?[0-9.e+]+|NaN|[+-]Inf)$/.exec(l);
    t.ok(m, `valid sample line: ${l}`);
    if (!m) continue;
    t.ok(typed.has(m[1]!), `${m[1]} has a TYPE`);
    t.notOk(seen.has(m[1]! + (m[2] ?? '')), `no duplicate series ${l}`);
    seen.add(m[1]! + (m[2] ?? ''));
  }
  t.ok(out.includes('weave_a_b_total 3'), 'keys that sanitise alike are summed');
  t.ok(out.includes('weave_y_total{k="w"} 4'), 'a repeated label keeps the last value');
  t.ok(out.includes('weave_nan_total NaN'));
  t.ok(out.includes('weave_health_warning{code="quote\\"and\\\\slash",severity="error"} 1'));
});

t.test('helpers', async (t) => {
  t.equal(sanitiseMetricName('Rx Bytes/sec'), 'rx_bytes_sec');
  t.equal(sanitiseMetricName('1x'), '_1x');
  t.equal(sanitiseMetricName('!!!'), 'unnamed');
  t.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
});
