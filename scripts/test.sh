#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests talk to (dig) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dig >/dev/null 2>&1 || need_apt+=(dnsutils)
command -v knotd >/dev/null 2>&1 || need_apt+=(knot)   # a real upstream for forward zones
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} for the tests" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

cargo test --workspace --all-targets "$@"
