// scripts/bench-measure's reading of fping's per-reply lines (the RTT under
// load): replies counted with their times, everything else (timeouts, ICMP
// errors, the summary) ignored.

import t from 'tap';
import { fpingTimes } from '../../scripts/bench-measure';

t.test('fping -c replies, and only replies', async (t) => {
  const out = [
    '10.32.1.2 : [0], 64 bytes, 2.46 ms (2.46 avg, 0% loss)',
    '10.32.1.2 : [1], 64 bytes, 0.571 ms (1.51 avg, 0% loss)',
    '10.32.1.2 : [2], timed out (1.51 avg, 33% loss)',
    'ICMP Host Unreachable from 10.32.1.1 for ICMP Echo sent to 10.32.1.2',
    '10.32.1.2 : [13], 84 bytes, 12 ms (5.01 avg, 25% loss)',
    '10.32.1.2 : xmt/rcv/%loss = 4/3/25%, min/avg/max = 0.571/5.01/12.0',
  ].join('\n');
  t.same(fpingTimes(out), [2.46, 0.571, 12], 'three replies, in order');
  t.same(fpingTimes(''), [], 'no output, no times');
  t.same(fpingTimes('PING 10.32.1.2 56(84) bytes of data.\n64 bytes from 10.32.1.2: icmp_seq=1 ttl=64 time=0.5 ms'), [], "iputils ping's lines are not fping's");
});
