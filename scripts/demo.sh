#!/usr/bin/env bash
# The demo: fleetdns on its embedded default (memory registry, the three demo clusters of
# examples/demo as manifest folders) on 127.0.0.1:5353. Installs what the build needs
# (protoc, for the etcd client) when it is missing. Extra arguments go to `serve`
# (e.g. --listen 127.0.0.1:25353).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --build
exec cargo run --release -q -p fleetdns -- serve --config examples/demo/fleetdns.toml "$@"
