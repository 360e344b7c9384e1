// RFC 5952 canonical IPv6 text, the one spelling every module prints.

import t from 'tap';
import { formatIpv6Groups } from '../../common/ip';

t.test('RFC 5952 section 4 cases', async (t) => {
  const cases: [number[], string][] = [
    [[0, 0, 0, 0, 0, 0, 0, 0], '::'],
    [[0, 0, 0, 0, 0, 0, 0, 1], '::1'],
    [[0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], '2001:db8::1'],
    [[0x2001, 0xdb8, 0, 1, 1, 1, 1, 1], '2001:db8:0:1:1:1:1:1'], // a single zero group stays
    [[0x2001, 0, 0, 1, 0, 0, 0, 1], '2001:0:0:1::1'], // the longest run wins
    [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], '2001:db8::1:0:0:1'], // the first of equal runs
    [[0xfd00, 0x77, 1, 0, 0, 0, 0, 0], 'fd00:77:1::'],
    [[0xABCD, 0xEF01, 2, 3, 4, 5, 6, 7], 'abcd:ef01:2:3:4:5:6:7'],
  ];
  for (const [groups, text] of cases) t.equal(formatIpv6Groups(groups), text, text);
});
