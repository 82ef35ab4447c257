#!/usr/bin/env bash
# Installs, when missing, what the build and the tests need from Debian: protoc and the
# protobuf includes (etcd-client's build), dig, Knot (a real upstream for forward zones) and
# etcd (the etcd registry's tests and the fleet demo), chromium (the status page test),
# prometheus's promtool (the alert rules' checks and unit tests), BIND 9 and Knot (the sync's
# RFC 2136 peers) and unbound (a forwarding resolver for the mesh e2e test). `--build`: only
# what the build needs.
set -euo pipefail

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3) # bench/gen.py: the YAML fast path test
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
[ -e /usr/include/google/protobuf/descriptor.proto ] || need_apt+=(libprotobuf-dev)
if [ "${1:-}" != "--build" ]; then
  command -v dig >/dev/null 2>&1 || need_apt+=(dnsutils)
  command -v knotd >/dev/null 2>&1 || need_apt+=(knot)
  command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
  command -v named >/dev/null 2>&1 || need_apt+=(bind9) # the RFC 2136 sync's tests
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)     # the status page e2e test
  command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)   # deploy/monitoring rules
  command -v unbound >/dev/null 2>&1 || need_apt+=(unbound)       # the mesh e2e test
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
