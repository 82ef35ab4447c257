#!/usr/bin/env bash
# Runs the whole test suite. Installs what the build and the tests need (protoc, dig, Knot,
# etcd, BIND; scripts/deps.sh) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cargo test --workspace --all-targets "$@"
