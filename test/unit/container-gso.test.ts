// The GSO size containers' veths get (router/host/container-link.ts) against
// what one version 3 sleeve message carries (router/overlay/sleeve-segments.ts):
// the largest TCP super-frame a container builds must leave whole, without
// the splitter (gso-split.ts), at every overlay MTU from 952 up with the
// segment stride cli/data-plane.ts derives, behind a VLAN tag too. And the
// kernel's own 65536 did not fit at the usual MTUs (why the cap exists). The
// far path (router/overlay/far-path.ts) fits it from overlay MTU 953 up.

import t from 'tap';
import { CONTAINER_GSO_MAX_BYTES } from '../../router/host/container-link';
import { AEAD_TAG_BYTES } from '../../router/overlay/frame-aead';
import {
  ETHERNET_HEADER_BYTES, INNER_HEADER_BYTES, MAX_SLEEVE_FRAME_BYTES, SLEEVE_OVERHEAD_BYTES, VNET_HDR_BYTES,
} from '../../router/overlay/sleeve-codec';
import { fitsSegmented, maxSegmentedBody, SEGMENT_HEADER_BYTES } from '../../router/overlay/sleeve-segments';
import { FAR_OVERHEAD_BYTES } from '../../router/overlay/far-session';

const IPV4_UDP_HEADER_BYTES = 28;
const VLAN_TAG_BYTES = 4;

/** The largest frame (vnet header first) one version 3 message takes, as overlay.ts computes it. */
function segmentedFrameMax(overlayMtu: number, underlayMtu: number): number {
  const segmentBytes = Math.min(underlayMtu, overlayMtu + SLEEVE_OVERHEAD_BYTES) - IPV4_UDP_HEADER_BYTES;
  const stride = Math.min(0xffff, segmentBytes - SEGMENT_HEADER_BYTES);
  return Math.min(MAX_SLEEVE_FRAME_BYTES, maxSegmentedBody(stride) - INNER_HEADER_BYTES - AEAD_TAG_BYTES);
}

/** A container's largest TCP super-frame as it reaches the TAP: the IP packet is at most gso_max_size. */
const largestFrame = (gsoMaxBytes: number, vlan: boolean): number =>
  VNET_HDR_BYTES + ETHERNET_HEADER_BYTES + (vlan ? VLAN_TAG_BYTES : 0) + gsoMaxBytes;

t.test('a container super-frame fits one version 3 message at every overlay MTU from 952', async (t) => {
  const misfits: string[] = [];
  for (const underlayMtu of [1280, 1450, 1500, 9000]) {
    for (let overlayMtu = 952; overlayMtu <= underlayMtu - SLEEVE_OVERHEAD_BYTES; overlayMtu++) {
      const limit = segmentedFrameMax(overlayMtu, underlayMtu);
      if (largestFrame(CONTAINER_GSO_MAX_BYTES, true) > limit) misfits.push(`${overlayMtu}/${underlayMtu}: limit ${limit}`);
    }
  }
  t.same(misfits, [], 'no overlay/underlay MTU pair splits');
});

t.test("the kernel's 65536 would split every full super-frame at the usual MTUs", async (t) => {
  // What TCP builds under gso_max_size 65536 at overlay MTU 1403 (underlay 1500): 48 segments of
  // MSS 1351 (timestamps on) behind 20 bytes of IPv4 and 32 of TCP: 64,900 bytes of IP packet.
  const ipBytes = 48 * 1351 + 20 + 32;
  const limit = segmentedFrameMax(1403, 1500);
  t.ok(largestFrame(ipBytes, false) > limit, `${largestFrame(ipBytes, false)} > ${limit}`);
  t.ok(largestFrame(CONTAINER_GSO_MAX_BYTES, false) <= limit, 'the cap fits there');
});

t.test('the far path (far-path.ts) carries it too, with its 32 bytes more, from overlay MTU 953 up', async (t) => {
  const misfits: string[] = [];
  for (const underlayMtu of [1280, 1450, 1500, 9000]) {
    for (let overlayMtu = 952; overlayMtu <= underlayMtu - SLEEVE_OVERHEAD_BYTES; overlayMtu++) {
      const stride = Math.min(0xffff, Math.min(underlayMtu, overlayMtu + SLEEVE_OVERHEAD_BYTES) - IPV4_UDP_HEADER_BYTES - SEGMENT_HEADER_BYTES);
      const farBody = INNER_HEADER_BYTES + FAR_OVERHEAD_BYTES + AEAD_TAG_BYTES + largestFrame(CONTAINER_GSO_MAX_BYTES, true);
      if (!fitsSegmented(farBody, stride)) misfits.push(`${overlayMtu}/${underlayMtu}`);
    }
  }
  t.same(misfits, ['952/1280', '952/1450', '952/1500', '952/9000'], 'only at 952 does it go hop by hop instead');
});
