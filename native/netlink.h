/*
 * rtnetlink sockets for the host plumbing (netlink.c): opened in a network
 * namespace, requests sent and replies collected on the thread pool.
 */
#ifndef WEAVE_NETLINK_H
#define WEAVE_NETLINK_H

#include <node_api.h>

napi_value wn_netlink_open(napi_env env, napi_callback_info info);
napi_value wn_netlink_ns_fd(napi_env env, napi_callback_info info);
napi_value wn_netlink_transact(napi_env env, napi_callback_info info);
napi_value wn_netlink_close(napi_env env, napi_callback_info info);

#endif
