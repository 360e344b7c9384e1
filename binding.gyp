# Builds the data plane's N-API addon (native/*.c) into
# build/Release/weave_native.node. npm runs `node-gyp rebuild` on install
# because this file exists and package.json has no install script.
# Linux only: it speaks to /dev/net/tun, uses recvmmsg/sendmmsg, and opens
# container files with openat2 (kernel 5.6+), and speaks rtnetlink for the
# container links (native/netlink.c).
{
  "targets": [
    {
      "target_name": "weave_native",
      "sources": [
        "native/addon.c",
        "native/aead.c",
        "native/args.c",
        "native/bytes.c",
        "native/fs.c",
        "native/lane.c",
        "native/lane-far.c",
        "native/lane-receive.c",
        "native/lane-relay.c",
        "native/memory.c",
        "native/netlink.c",
        "native/nft.c",
        "native/tap.c",
        "native/udp.c"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "conditions": [
        ["OS!='linux'", {"type": "none", "sources!": ["native/addon.c", "native/aead.c", "native/args.c", "native/bytes.c", "native/fs.c", "native/lane.c", "native/lane-far.c", "native/lane-receive.c", "native/lane-relay.c", "native/memory.c", "native/netlink.c", "native/nft.c", "native/tap.c", "native/udp.c"]}]
      ]
    }
  ]
}
