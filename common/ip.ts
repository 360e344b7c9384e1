// IPv6 text form shared by every module that prints addresses (data path,
// containers, IPAM, DNS), so they all agree on one canonical spelling.

/**
 * RFC 5952 §4: eight 16-bit groups in lower-case hex, the longest run of two or
 * more zero groups compressed to "::" (the first run when tied).
 */
export function formatIpv6Groups(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (gs: readonly number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}
