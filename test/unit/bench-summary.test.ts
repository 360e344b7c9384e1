// scripts/bench-summary: the SUMMARY line format the bench sections print and
// bench.sh's final table reads: what parses, what is refused (without
// failing the table), which targets count as met, and that a repeated key
// keeps its place and takes the later value.

import t from 'tap';
import { collectSummary, parseSummaryLine, renderSummary, summaryLine, verdict, type SummaryFigure } from '../../scripts/bench-summary';

t.test('summaryLine writes what parseSummaryLine reads', async (t) => {
  const line = summaryLine('throughput.vs_wireguard_go', 4.936, '>=8', 'weave / wireguard-go  (1727 / 354 Mbit/s)');
  t.equal(line, 'SUMMARY throughput.vs_wireguard_go 4.94 >=8 weave / wireguard-go (1727 / 354 Mbit/s)');
  const f = parseSummaryLine(line) as SummaryFigure;
  t.same(f, { key: 'throughput.vs_wireguard_go', value: '4.94', target: { op: '>=', bound: 8, text: '>=8' }, label: 'weave / wireguard-go (1727 / 354 Mbit/s)' });
  t.equal(summaryLine('attach.daemon_ms', NaN, '<50', 'not run'), 'SUMMARY attach.daemon_ms - <50 not run', 'NaN is not measured');
  t.equal(summaryLine('x.y', 3, '-', 'no target', 0), 'SUMMARY x.y 3 - no target');
  t.throws(() => summaryLine('Bad Key', 1, '-', 'x'), /summary key/);
  t.throws(() => summaryLine('a.b', 1, '=8', 'x'), /summary target/);
});

t.test('parseSummaryLine: other lines are null, malformed SUMMARY lines are errors', async (t) => {
  t.equal(parseSummaryLine('round 1/3: weave 1700 Mbit/s'), null);
  t.equal(parseSummaryLine(''), null);
  for (const bad of ['SUMMARY', 'SUMMARY a.b', 'SUMMARY A.B 1 - x', 'SUMMARY a.b 1x - x', 'SUMMARY a.b 1 =>3 x', 'SUMMARY a.b 1 >=x x', 'SUMMARY a.b 1 ~ x']) {
    t.type(parseSummaryLine(bad), Error, JSON.stringify(bad));
  }
  const none = parseSummaryLine('SUMMARY dns.local_vs_dnsmasq - >=1.5 weave / dnsmasq') as SummaryFigure;
  t.equal(none.value, null, 'a dash is not measured');
  t.equal(verdict(none), '', 'and has no verdict');
  t.same((parseSummaryLine('SUMMARY a.b -0.5 <-0.25') as SummaryFigure).target, { op: '<', bound: -0.25, text: '<-0.25' }, 'negative numbers, empty label');
});

t.test('verdict compares with each operator, bounds included or not', async (t) => {
  const v = (value: string, target: string): string => verdict(parseSummaryLine(`SUMMARY a.b ${value} ${target} x`) as SummaryFigure);
  t.equal(v('8', '>=8'), 'yes');
  t.equal(v('7.99', '>=8'), 'NO');
  t.equal(v('8', '>8'), 'NO');
  t.equal(v('50', '<50'), 'NO');
  t.equal(v('49.9', '<50'), 'yes');
  t.equal(v('1', '<=1'), 'yes');
  t.equal(v('1.01', '<=1'), 'NO');
  t.equal(v('3', '-'), '', 'no target, no verdict');
  t.equal(v('0.4', '~0'), '', 'an about target is shown, not judged');
  t.same((parseSummaryLine('SUMMARY memory.slope 0.40 ~0 MB/min') as SummaryFigure).target, { op: '~', bound: 0, text: '~0' });
});

t.test('collectSummary keeps first-seen order, later values win, bad lines are listed', async (t) => {
  const text = [
    'noise',
    'SUMMARY throughput.a 1 >=2 first',
    'SUMMARY dns.b 3 - second',
    'SUMMARY broken line here',
    'SUMMARY throughput.a 2.5 >=2 first again',
  ].join('\n');
  const { figures, bad } = collectSummary(text);
  t.same(figures.map((f) => [f.key, f.value]), [['throughput.a', '2.5'], ['dns.b', '3']]);
  t.equal(bad.length, 1);
  t.match(bad[0], /SUMMARY broken line here/);
  const rendered = renderSummary(figures, bad);
  t.match(rendered, /throughput\s+first again\s+2\.5\s+>=2\s+yes/);
  t.match(rendered, /dns\s+second\s+3/);
  t.match(rendered, /unparsed: SUMMARY broken line here/);
  t.match(renderSummary([], []), /no section printed a SUMMARY line/);
});
